/** Checks on client input; each failure names the field and the rule. */
import { InvalidArgumentError } from "../common/errors.js";
import type { Address } from "../../generated/parley/v1/common.js";
import type { SendRequest } from "../../generated/parley/v1/relay.js";
import type { Limits, OutgoingMessage, QueueRef } from "./types.js";

const ID = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const MESSAGE_ID = /^[\x21-\x7e]{1,128}$/;
const CONTENT_TYPE = /^[\x20-\x7e]{0,128}$/;

export function checkId(field: string, value: string): string {
  if (!ID.test(value)) throw new InvalidArgumentError(`${field} '${value.slice(0, 140)}' is not a valid id (1–128 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit)`);
  return value;
}

export function checkBytes(field: string, value: Uint8Array, min: number, max = min): Uint8Array {
  if (value.length < min || value.length > max) {
    throw new InvalidArgumentError(`${field} must be ${min === max ? `${min}` : `${min}–${max}`} bytes, got ${value.length}`);
  }
  return value;
}

export function toQueueRef(field: string, a: Address | undefined): QueueRef {
  switch (a?.target?.$case) {
    case "deviceId":
      return { kind: "device", id: checkId(`${field}.device_id`, a.target.value) };
    case "identityId":
      return { kind: "identity", id: checkId(`${field}.identity_id`, a.target.value) };
    default:
      throw new InvalidArgumentError(`${field} must name a device_id or an identity_id`);
  }
}

/** A message's field name for error messages: "message" alone, "messages[i]" in a batch (built only on failure). */
const messageField = (index: number | undefined) => (index === undefined ? "message" : `messages[${index}]`);

export function toOutgoing(req: SendRequest, limits: Limits, index?: number): OutgoingMessage {
  if (!MESSAGE_ID.test(req.messageId)) throw new InvalidArgumentError(`${messageField(index)}.message_id must be 1–128 printable ASCII characters without spaces`);
  if (!CONTENT_TYPE.test(req.contentType)) throw new InvalidArgumentError(`${messageField(index)}.content_type must be at most 128 printable ASCII characters`);
  if (req.payload.length > limits.maxMessageBytes) {
    throw new InvalidArgumentError(`${messageField(index)} payload is ${req.payload.length} bytes; this relay accepts at most ${limits.maxMessageBytes}`);
  }
  const n = req.recipients.length;
  if (!n) throw new InvalidArgumentError(`${messageField(index)} has no recipients`);
  if (n > limits.maxRecipients) {
    throw new InvalidArgumentError(`${messageField(index)} has ${n} recipients; at most ${limits.maxRecipients} are allowed`);
  }
  const recipients: QueueRef[] = [];
  // Repeats are dropped: a short list is searched, a long one (up to maxRecipients) hashed.
  const seen = n > 8 ? new Set<string>() : undefined;
  for (let i = 0; i < n; i++) {
    const q = recipient(req.recipients[i], index, i);
    if (seen) {
      const key = `${q.kind}:${q.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
    } else if (recipients.some((r) => r.kind === q.kind && r.id === q.id)) {
      continue;
    }
    recipients.push(q);
  }
  return { messageId: req.messageId, recipients, payload: req.payload, contentType: req.contentType };
}

/** toQueueRef for recipients[i], naming the field only when it is refused. */
function recipient(a: Address | undefined, index: number | undefined, i: number): QueueRef {
  const t = a?.target;
  if (t && (t.$case === "deviceId" || t.$case === "identityId") && ID.test(t.value)) return { kind: t.$case === "deviceId" ? "device" : "identity", id: t.value };
  return toQueueRef(`${messageField(index)}.recipients[${i}]`, a);
}

export function toOutgoingBatch(reqs: SendRequest[], limits: Limits): OutgoingMessage[] {
  if (!reqs.length) throw new InvalidArgumentError("the batch is empty");
  if (reqs.length > limits.maxBatchMessages) throw new InvalidArgumentError(`the batch has ${reqs.length} messages; at most ${limits.maxBatchMessages} are allowed`);
  const ids = new Set<string>();
  return reqs.map((r, i) => {
    const m = toOutgoing(r, limits, i);
    if (ids.has(m.messageId)) throw new InvalidArgumentError(`messages[${i}].message_id '${m.messageId}' appears twice in the batch`);
    ids.add(m.messageId);
    return m;
  });
}
