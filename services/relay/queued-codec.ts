/**
 * Protobuf encoding of queued messages into one buffer of the exact size.
 * The generated encoder grows its buffer by copying and copies once more for
 * each nested message; for wake-up bodies and Fetch events, which are mostly
 * payload bytes, that was most of their cost (bench/relay profiles). The
 * bytes are the same as the generated encoder's (unit test).
 */
import { FetchEvent, QueuedMessages, type QueuedMessage } from "../../generated/parley/v1/relay.js";

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
const TAG_EVENT_MESSAGES = 0x1a;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[pos++] = n;
  return pos;
}

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

/** QueuedMessages, plus `reserve` bytes left free at the front. */
function encodeList(messages: QueuedMessage[], reserve: (bodySize: number) => number): { buf: Buffer; start: number; bodySize: number } | undefined {
  const sized: Sized[] = [];
  let bodySize = 0;
  for (const m of messages) {
    const s = measure(m);
    if (!s) return undefined;
    sized.push(s);
    bodySize += 1 + varintSize(s.size) + s.size;
  }
  const start = reserve(bodySize);
  const buf = Buffer.allocUnsafe(start + bodySize);
  let pos = start;
  for (const s of sized) {
    buf[pos++] = TAG_LIST_ITEM;
    pos = writeVarint(buf, pos, s.size);
    pos = writeMessage(buf, pos, s);
  }
  return { buf, start, bodySize };
}

/** QueuedMessages.encode({ messages }) after `front` free bytes (for a header the caller writes), in one allocation. */
export function encodeQueuedMessages(messages: QueuedMessage[], front = 0): Buffer {
  const out = encodeList(messages, () => front);
  if (out) return out.buf;
  const body = QueuedMessages.encode({ messages }).finish();
  const buf = Buffer.alloc(front + body.length);
  buf.set(body, front);
  return buf;
}

/** FetchEvent.encode({ event: { $case: "messages", ... } }), in one allocation: what a Fetch stream writes. */
export function encodeMessagesEvent(messages: QueuedMessage[]): Buffer {
  const out = encodeList(messages, (bodySize) => 1 + varintSize(bodySize));
  if (!out) return Buffer.from(FetchEvent.encode({ event: { $case: "messages", value: { messages } } }).finish());
  out.buf[0] = TAG_EVENT_MESSAGES;
  writeVarint(out.buf, 1, out.bodySize);
  return out.buf;
}
