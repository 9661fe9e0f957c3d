/**
 * Protobuf encoding of queued messages into buffers of the exact size, and
 * entries that travel encoded from a wake-up body to a Fetch event.
 *
 * The generated encoder grows its buffer by copying and copies once more for
 * each nested message; for wake-up bodies and Fetch events, which are mostly
 * payload bytes, that was most of their cost (bench/relay profiles). The
 * bytes are the same as the generated encoder's (unit test).
 *
 * A stream sends the entries a wake-up carries as they came: a wake-up body
 * (QueuedMessages) is a run of encoded QueuedMessage, and so is the body of
 * a FetchEvent.messages. Only the fields delivery needs are read from them
 * (EncodedEntry); nothing is decoded into objects or encoded again.
 */
import { QueuedMessage, QueuedMessages } from "../../generated/parley/v1/relay.js";
import { varintSize, writeVarint } from "../common/varint.js";

const TAG_QUEUE = 0x08;
const TAG_SEQ = 0x10;
const TAG_MESSAGE_ID = 0x1a;
const TAG_SENDER_DEVICE = 0x22;
const TAG_SENDER_IDENTITY = 0x2a;
const TAG_PAYLOAD = 0x32;
const TAG_CONTENT_TYPE = 0x3a;
const TAG_ENQUEUED_AT = 0x40;
/** QueuedMessages.messages, and FetchEvent.messages. */
const TAG_LIST_ITEM = 0x0a;
const TAG_EVENT_MESSAGE = 0x0a;
const TAG_EVENT_MESSAGES = 0x1a;

/** Only what the fast path encodes exactly as the generated code does: non-negative safe integers. */
const plain = (n: number) => Number.isSafeInteger(n) && n >= 0;

interface Sized {
  m: QueuedMessage;
  size: number;
  strings: [number, number, number, number];
}

function measure(m: QueuedMessage): Sized | undefined {
  if (!plain(m.queue) || !plain(m.seq) || !plain(m.enqueuedAtMs)) return undefined;
  const strings: Sized["strings"] = [Buffer.byteLength(m.messageId), Buffer.byteLength(m.senderDeviceId), Buffer.byteLength(m.senderIdentityId), Buffer.byteLength(m.contentType)];
  const field = (len: number) => (len ? 1 + varintSize(len) + len : 0);
  const size =
    (m.queue ? 1 + varintSize(m.queue) : 0) +
    (m.seq ? 1 + varintSize(m.seq) : 0) +
    field(strings[0]) +
    field(strings[1]) +
    field(strings[2]) +
    field(m.payload.length) +
    field(strings[3]) +
    (m.enqueuedAtMs ? 1 + varintSize(m.enqueuedAtMs) : 0);
  return { m, size, strings };
}

function writeMessage(buf: Buffer, pos: number, { m, strings }: Sized): number {
  const str = (tag: number, s: string, len: number) => {
    if (!len) return;
    buf[pos++] = tag;
    pos = writeVarint(buf, pos, len);
    pos += buf.write(s, pos, len, "utf8");
  };
  if (m.queue) {
    buf[pos++] = TAG_QUEUE;
    pos = writeVarint(buf, pos, m.queue);
  }
  if (m.seq) {
    buf[pos++] = TAG_SEQ;
    pos = writeVarint(buf, pos, m.seq);
  }
  str(TAG_MESSAGE_ID, m.messageId, strings[0]);
  str(TAG_SENDER_DEVICE, m.senderDeviceId, strings[1]);
  str(TAG_SENDER_IDENTITY, m.senderIdentityId, strings[2]);
  if (m.payload.length) {
    buf[pos++] = TAG_PAYLOAD;
    pos = writeVarint(buf, pos, m.payload.length);
    buf.set(m.payload, pos);
    pos += m.payload.length;
  }
  str(TAG_CONTENT_TYPE, m.contentType, strings[3]);
  if (m.enqueuedAtMs) {
    buf[pos++] = TAG_ENQUEUED_AT;
    pos = writeVarint(buf, pos, m.enqueuedAtMs);
  }
  return pos;
}

/** QueuedMessages after `front` free bytes; undefined when a message has values only the generated encoder handles. */
function encodeList(messages: QueuedMessage[], front: number): Buffer | undefined {
  const sized: Sized[] = [];
  let bodySize = 0;
  for (const m of messages) {
    const s = measure(m);
    if (!s) return undefined;
    sized.push(s);
    bodySize += 1 + varintSize(s.size) + s.size;
  }
  const buf = Buffer.allocUnsafe(front + bodySize);
  let pos = front;
  for (const s of sized) {
    buf[pos++] = TAG_LIST_ITEM;
    pos = writeVarint(buf, pos, s.size);
    pos = writeMessage(buf, pos, s);
  }
  return buf;
}

/** QueuedMessages.encode({ messages }) after `front` free bytes (for a header the caller writes), in one allocation. */
export function encodeQueuedMessages(messages: QueuedMessage[], front = 0): Buffer {
  const out = encodeList(messages, front);
  if (out) return out;
  const body = QueuedMessages.encode({ messages }).finish();
  const buf = Buffer.alloc(front + body.length);
  buf.set(body, front);
  return buf;
}

/** A queued message as it travels: its encoding, and what delivery reads from it. */
export interface EncodedEntry {
  seq: number;
  enqueuedAtMs: number;
  payloadBytes: number;
  /** QueuedMessage.encode() of it. */
  bytes: Uint8Array;
}

/** A message read from Postgres, encoded once. */
export function encodeEntry(m: QueuedMessage): EncodedEntry {
  const sized = measure(m);
  let bytes: Uint8Array;
  if (sized) {
    const buf = Buffer.allocUnsafe(sized.size);
    writeMessage(buf, 0, sized);
    bytes = buf;
  } else {
    bytes = QueuedMessage.encode(m).finish();
  }
  return { seq: m.seq, enqueuedAtMs: m.enqueuedAtMs, payloadBytes: m.payload.length, bytes };
}

// Where the last readVarint stopped: a module cursor instead of a returned
// pair, so reading a wake-up allocates nothing per field.
let readEnd = 0;

/** The varint at pos (readEnd is then the position after it); -1 past end or beyond 2^53. */
function readVarint(buf: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = pos; i < end && i < pos + 8; i++) {
    const b = buf[i]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      readEnd = i + 1;
      return value;
    }
    scale *= 0x80;
  }
  return -1;
}

/** The entries of an encoded QueuedMessages (a wake-up body); undefined when it is not one. */
export function readEntries(body: Uint8Array): EncodedEntry[] | undefined {
  const entries: EncodedEntry[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] !== TAG_LIST_ITEM) return undefined;
    const size = readVarint(body, pos + 1, body.length);
    const start = readEnd;
    if (size < 0 || start + size > body.length) return undefined;
    const entry = readEntry(body.subarray(start, start + size));
    if (!entry) return undefined;
    entries.push(entry);
    pos = start + size;
  }
  return entries;
}

function readEntry(bytes: Uint8Array): EncodedEntry | undefined {
  let seq = 0;
  let enqueuedAtMs = 0;
  let payloadBytes = 0;
  let pos = 0;
  while (pos < bytes.length) {
    const tag = readVarint(bytes, pos, bytes.length);
    if (tag < 0) return undefined;
    const value = readVarint(bytes, readEnd, bytes.length);
    if (value < 0) return undefined;
    const wireType = tag & 7;
    if (wireType === 0) {
      if (tag === TAG_SEQ) seq = value;
      else if (tag === TAG_ENQUEUED_AT) enqueuedAtMs = value;
      pos = readEnd;
    } else if (wireType === 2) {
      if (readEnd + value > bytes.length) return undefined;
      if (tag === TAG_PAYLOAD) payloadBytes = value;
      pos = readEnd + value;
    } else {
      return undefined;
    }
  }
  return { seq, enqueuedAtMs, payloadBytes, bytes };
}

/** FetchEvent { messages } of the entries, in one allocation: what a Fetch stream writes to a batched client. */
export function messagesEvent(entries: EncodedEntry[]): Buffer {
  let bodySize = 0;
  for (const e of entries) bodySize += 1 + varintSize(e.bytes.length) + e.bytes.length;
  const buf = Buffer.allocUnsafe(1 + varintSize(bodySize) + bodySize);
  buf[0] = TAG_EVENT_MESSAGES;
  let pos = writeVarint(buf, 1, bodySize);
  for (const e of entries) {
    buf[pos++] = TAG_LIST_ITEM;
    pos = writeVarint(buf, pos, e.bytes.length);
    buf.set(e.bytes, pos);
    pos += e.bytes.length;
  }
  return buf;
}

/** FetchEvent { message } of one entry: for a client that reads one message per event. */
export function messageEvent(e: EncodedEntry): Buffer {
  const buf = Buffer.allocUnsafe(1 + varintSize(e.bytes.length) + e.bytes.length);
  buf[0] = TAG_EVENT_MESSAGE;
  buf.set(e.bytes, writeVarint(buf, 1, e.bytes.length));
  return buf;
}
