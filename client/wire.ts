/**
 * The SDK's own encoding of what it sends most (SendRequest, SendBatchRequest)
 * and decoding of what it receives most (FetchEvent), byte-for-byte what the
 * generated code writes and reads (test/unit/client-wire.test.ts).
 *
 * The generated encoder grows its buffer by copying and copies each nested
 * message once more, and the serializer copies the result into a Buffer; the
 * generated decoder builds every short string one character at a time and an
 * object per message that the inbox then copies into an InboxMessage. In
 * bench/relay those were a third of what the load generator allocated.
 * Here: one Buffer of the exact size per request, and InboxMessages read
 * straight from the event (strings sliced natively).
 */
import { FetchEvent, type QueuedMessage, type SendBatchRequest, type SendRequest } from "../generated/parley/v1/relay.js";
import { varintSize, writeVarint } from "../services/common/varint.js";
import type { InboxMessage } from "./relay.js";

// ---------------------------------------------------------------- encoding

const stringField = (len: number) => (len ? 1 + varintSize(len) + len : 0);

/** The encoded size of a SendRequest (without its own tag and length). */
function sendRequestSize(m: SendRequest): number {
  let size = stringField(Buffer.byteLength(m.messageId)) + stringField(m.payload.length) + stringField(Buffer.byteLength(m.contentType));
  for (const r of m.recipients) size += 1 + varintSize(addressSize(r.target)) + addressSize(r.target);
  return size;
}

type Target = SendRequest["recipients"][number]["target"];

const addressSize = (t: Target) => (t ? 1 + varintSize(Buffer.byteLength(t.value)) + Buffer.byteLength(t.value) : 0);

/** A string field; an empty one is left out unless it is a oneof member (always written). */
function writeString(buf: Buffer, pos: number, tag: number, s: string, always = false): number {
  if (!s && !always) return pos;
  buf[pos++] = tag;
  const len = Buffer.byteLength(s);
  pos = writeVarint(buf, pos, len);
  return pos + buf.write(s, pos, len, "utf8");
}

function writeSendRequest(buf: Buffer, pos: number, m: SendRequest): number {
  pos = writeString(buf, pos, 0x0a, m.messageId);
  for (const r of m.recipients) {
    buf[pos++] = 0x12;
    pos = writeVarint(buf, pos, addressSize(r.target));
    if (r.target) pos = writeString(buf, pos, r.target.$case === "deviceId" ? 0x0a : 0x12, r.target.value, true);
  }
  if (m.payload.length) {
    buf[pos++] = 0x1a;
    pos = writeVarint(buf, pos, m.payload.length);
    buf.set(m.payload, pos);
    pos += m.payload.length;
  }
  return writeString(buf, pos, 0x22, m.contentType);
}

/** SendRequest.encode(m), in one Buffer of the exact size. */
export function encodeSendRequest(m: SendRequest): Buffer {
  const buf = Buffer.allocUnsafe(sendRequestSize(m));
  writeSendRequest(buf, 0, m);
  return buf;
}

/** SendBatchRequest.encode(b), in one Buffer of the exact size. */
export function encodeSendBatchRequest(b: SendBatchRequest): Buffer {
  const sizes = b.messages.map(sendRequestSize);
  let total = 0;
  for (const s of sizes) total += 1 + varintSize(s) + s;
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  b.messages.forEach((m, i) => {
    buf[pos++] = 0x0a;
    pos = writeVarint(buf, pos, sizes[i]!);
    pos = writeSendRequest(buf, pos, m);
  });
  return buf;
}

// ---------------------------------------------------------------- decoding

/** A FetchEvent as the inbox takes it. */
export type InboxEvent = { kind: "messages"; messages: InboxMessage[] } | { kind: "backlogComplete" } | { kind: "none" };

class Malformed extends Error {}

/** A protobuf reader over one Buffer; throws Malformed on anything this codec does not read exactly. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8 && this.pos < this.end; i++) {
      const b = this.buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 0x80;
    }
    throw new Malformed(); // past the end, or beyond 2^53: the generated decoder's business
  }

  /** The end of a length-delimited field starting here. */
  delimited(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > this.end) throw new Malformed();
    return end;
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.pos = this.delimited();
    else if (wireType === 5) this.pos += 4;
    else throw new Malformed();
    if (this.pos > this.end) throw new Malformed();
  }
}

function readQueuedMessage(r: Reader, end: number): InboxMessage {
  const m: InboxMessage = { queue: "device", seq: 0, messageId: "", senderDeviceId: "", senderIdentityId: "", payload: new Uint8Array(), contentType: "", enqueuedAtMs: 0 };
  while (r.pos < end) {
    const tag = r.varint();
    switch (tag) {
      case 0x08:
        m.queue = r.varint() === 2 ? "identity" : "device";
        break;
      case 0x10:
        m.seq = r.varint();
        break;
      case 0x40:
        m.enqueuedAtMs = r.varint();
        break;
      case 0x1a:
      case 0x22:
      case 0x2a:
      case 0x32:
      case 0x3a: {
        const stop = r.delimited();
        if (tag === 0x32) m.payload = r.buf.subarray(r.pos, stop);
        else {
          const s = r.buf.toString("utf8", r.pos, stop);
          if (tag === 0x1a) m.messageId = s;
          else if (tag === 0x22) m.senderDeviceId = s;
          else if (tag === 0x2a) m.senderIdentityId = s;
          else m.contentType = s;
        }
        r.pos = stop;
        break;
      }
      default:
        // Another field, or a known one with another wire type.
        if ((tag >>> 3) <= 8) throw new Malformed();
        r.skip(tag & 7);
    }
    if (r.pos > end) throw new Malformed();
  }
  return m;
}

function readEvent(buf: Buffer): InboxEvent {
  const r = new Reader(buf, 0, buf.length);
  let event: InboxEvent = { kind: "none" };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 0x0a) {
      const end = r.delimited();
      event = { kind: "messages", messages: [readQueuedMessage(r, end)] };
    } else if (tag === 0x12) {
      r.pos = r.delimited();
      event = { kind: "backlogComplete" };
    } else if (tag === 0x1a) {
      const end = r.delimited();
      const messages: InboxMessage[] = [];
      while (r.pos < end) {
        if (r.varint() !== 0x0a) throw new Malformed();
        const stop = r.delimited();
        if (stop > end) throw new Malformed();
        messages.push(readQueuedMessage(r, stop));
      }
      event = { kind: "messages", messages };
    } else {
      if ((tag >>> 3) <= 3) throw new Malformed();
      r.skip(tag & 7);
    }
  }
  return event;
}

/** A FetchEvent for the inbox; what this reader does not take apart goes through the generated decoder. */
export function decodeFetchEvent(bytes: Buffer): InboxEvent {
  try {
    return readEvent(bytes);
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
  }
  const e = FetchEvent.decode(bytes).event;
  if (e?.$case === "backlogComplete") return { kind: "backlogComplete" };
  if (e?.$case === "message") return { kind: "messages", messages: [toInboxMessage(e.value)] };
  if (e?.$case === "messages") return { kind: "messages", messages: e.value.messages.map(toInboxMessage) };
  return { kind: "none" };
}

export function toInboxMessage(m: QueuedMessage): InboxMessage {
  return {
    queue: m.queue === 2 ? "identity" : "device",
    seq: m.seq,
    messageId: m.messageId,
    senderDeviceId: m.senderDeviceId,
    senderIdentityId: m.senderIdentityId,
    payload: m.payload,
    contentType: m.contentType,
    enqueuedAtMs: m.enqueuedAtMs,
  };
}
