/** The SDK's hand-written codecs (client/wire.ts) write and read exactly what the generated code does. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeFetchEvent, encodeSendBatchRequest, encodeSendRequest, toInboxMessage } from "../../client/wire.js";
import { FetchEvent, QueuedMessage, SendBatchRequest, SendRequest } from "../../generated/parley/v1/relay.js";

const requests: SendRequest[] = [
  { messageId: "m-1", recipients: [{ target: { $case: "deviceId", value: "bob-phone" } }], payload: Buffer.alloc(1024, 7), contentType: "" },
  { messageId: "", recipients: [], payload: new Uint8Array(), contentType: "" },
  {
    messageId: "ünï-cødé-✓",
    recipients: [{ target: { $case: "identityId", value: "bob" } }, { target: { $case: "deviceId", value: "" } }, { target: undefined }],
    payload: Buffer.alloc(200_000, 1),
    contentType: "text/plain; charset=\"utf-8\"",
  },
];

const queued = (over: Partial<QueuedMessage> = {}): QueuedMessage => ({
  queue: 1,
  seq: 42,
  messageId: "m-1",
  senderDeviceId: "alice-laptop",
  senderIdentityId: "alice",
  payload: Buffer.from("hello"),
  contentType: "text/plain",
  enqueuedAtMs: 1_765_000_000_000,
  ...over,
});

const events: Array<[string, FetchEvent]> = [
  ["one message", { event: { $case: "message", value: queued() } }],
  ["backlog complete", { event: { $case: "backlogComplete", value: {} } }],
  ["a batch, identity queue, unicode, empty fields", { event: { $case: "messages", value: { messages: [queued({ queue: 2, seq: 2 ** 40, messageId: "✓ü" }), queued({ payload: new Uint8Array(), contentType: "", senderIdentityId: "" }), queued({ seq: 0, enqueuedAtMs: 0 })] } } }],
  ["an empty batch", { event: { $case: "messages", value: { messages: [] } } }],
  ["no event", { event: undefined }],
  ["a negative enqueue time (read by the generated decoder)", { event: { $case: "message", value: queued({ enqueuedAtMs: -5 }) } }],
];

describe("client wire codecs", () => {
  it("encodes SendRequest and SendBatchRequest byte for byte as the generated encoder", () => {
    for (const r of requests) assert.deepEqual(encodeSendRequest(r), Buffer.from(SendRequest.encode(r).finish()));
    assert.deepEqual(encodeSendBatchRequest({ messages: requests }), Buffer.from(SendBatchRequest.encode({ messages: requests }).finish()));
    assert.deepEqual(encodeSendBatchRequest({ messages: [] }), Buffer.alloc(0));
  });

  for (const [what, e] of events) {
    it(`decodes a FetchEvent as the generated decoder does: ${what}`, () => {
      const bytes = Buffer.from(FetchEvent.encode(e).finish());
      const want = FetchEvent.decode(bytes).event;
      const got = decodeFetchEvent(bytes);
      if (want?.$case === "backlogComplete") assert.deepEqual(got, { kind: "backlogComplete" });
      else if (want?.$case === "message") assert.deepEqual(got, { kind: "messages", messages: [toInboxMessage(want.value)] });
      else if (want?.$case === "messages") assert.deepEqual(got, { kind: "messages", messages: want.value.messages.map(toInboxMessage) });
      else assert.deepEqual(got, { kind: "none" });
    });
  }

  it("skips fields it does not know, as the generated decoder does", () => {
    const base = Buffer.from(QueuedMessage.encode(queued()).finish());
    // field 15 (varint 300) and field 16 (length-delimited "xy") appended to the message
    const extended = Buffer.concat([base, Buffer.from([0x78, 0xac, 0x02, 0x82, 0x01, 0x02, 0x78, 0x79])]);
    const event = Buffer.concat([Buffer.from([0x0a, extended.length]), extended]);
    assert.deepEqual(decodeFetchEvent(event), { kind: "messages", messages: [toInboxMessage(FetchEvent.decode(event).event!.value as QueuedMessage)] });
  });

  it("refuses a cut-short event as the generated decoder does", () => {
    const bytes = Buffer.from(FetchEvent.encode(events[0]![1]).finish());
    assert.throws(() => decodeFetchEvent(bytes.subarray(0, bytes.length - 3)));
    assert.throws(() => FetchEvent.decode(bytes.subarray(0, bytes.length - 3)));
  });
});
