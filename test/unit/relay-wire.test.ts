/** What the relay puts on the wire for batches (one signature per SendBatch answer, grouped Fetch events) and on the bus (wake-ups with entries). */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { generateKeyPair, signBytes, verifyBytes } from "../../services/common/crypto.js";
import { batchReceiptStatement, receiptStatement } from "../../services/common/receipts.js";
import { eventGroups, takeFollowing } from "../../services/relay/delivery.js";
import { WakeUpCodec } from "../../services/relay/wake-ups.js";
import { FetchEvent, QueuedMessage, QueuedMessages, type SendReceipt } from "../../generated/parley/v1/relay.js";
import { QueueKind } from "../../generated/parley/v1/common.js";
import { encodeEntry, encodeQueuedMessages, messageEvent, messagesEvent, readEntries } from "../../services/relay/queued-codec.js";

const receipt = (messageId: string, seq: number): SendReceipt => ({
  messageId,
  duplicate: false,
  acceptedAtMs: 1_700_000_000_000,
  queued: [{ queue: { target: { $case: "deviceId", value: "bob-dev" } }, seq }],
  relaySignature: undefined,
});

describe("batch receipts", () => {
  const relay = generateKeyPair();
  const receipts = [receipt("m1", 1), receipt("m2", 2), receipt("m3", 3)];
  const signature = signBytes(relay.privateKeyPem, batchReceiptStatement("alice-dev", receipts));
  const verifies = (sender: string, rs: SendReceipt[]) => verifyBytes(relay.publicKey, batchReceiptStatement(sender, rs), signature);

  it("states the sender, the count and a SHA-256 over each receipt's length-prefixed statement, in order", () => {
    const field = (v: string | Uint8Array) => {
      const bytes = typeof v === "string" ? Buffer.from(v) : Buffer.from(v);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(bytes.length);
      return Buffer.concat([len, bytes]);
    };
    const receiptBytes = (r: SendReceipt) =>
      Buffer.concat(["parley.v1.relay-receipt", "alice-dev", r.messageId, String(r.acceptedAtMs), `device:bob-dev:${r.queued[0]!.seq}`].map(field));
    const digest = createHash("sha256");
    for (const r of receipts) {
      assert.deepEqual(Buffer.from(receiptStatement("alice-dev", r)), receiptBytes(r));
      digest.update(receiptBytes(r));
    }
    const expected = Buffer.concat(["parley.v1.relay-batch-receipt", "alice-dev", "3", digest.digest()].map(field));
    assert.deepEqual(Buffer.from(batchReceiptStatement("alice-dev", receipts)), expected);
  });

  it("one signature proves every receipt of the answer", () => {
    assert.ok(verifies("alice-dev", receipts.map((r) => structuredClone(r))));
  });

  it("fails when any receipt is changed, dropped, added or reordered, or for another sender", () => {
    const changedSeq = receipts.map((r, i) => (i === 1 ? { ...r, queued: [{ ...r.queued[0]!, seq: 9 }] } : r));
    const changedQueue = receipts.map((r, i) => (i === 2 ? { ...r, queued: [{ queue: { target: { $case: "identityId" as const, value: "bob-dev" } }, seq: 3 }] } : r));
    const changedTime = receipts.map((r, i) => (i === 0 ? { ...r, acceptedAtMs: r.acceptedAtMs + 1 } : r));
    for (const [what, rs] of [
      ["a sequence", changedSeq],
      ["a queue kind", changedQueue],
      ["an acceptance time", changedTime],
      ["a dropped receipt", receipts.slice(1)],
      ["an added receipt", [...receipts, receipt("m4", 4)]],
      ["the order", [receipts[1]!, receipts[0]!, receipts[2]!]],
    ] as const) {
      assert.ok(!verifies("alice-dev", [...rs]), what);
    }
    assert.ok(!verifies("mallory-dev", receipts), "another sender");
  });

  it("a single receipt's signature does not pass for a batch of one, nor the other way round", () => {
    const single = signBytes(relay.privateKeyPem, receiptStatement("alice-dev", receipts[0]!));
    assert.ok(!verifyBytes(relay.publicKey, batchReceiptStatement("alice-dev", [receipts[0]!]), single));
    const batchOfOne = signBytes(relay.privateKeyPem, batchReceiptStatement("alice-dev", [receipts[0]!]));
    assert.ok(!verifyBytes(relay.publicKey, receiptStatement("alice-dev", receipts[0]!), batchOfOne));
  });
});

describe("batched Fetch events", () => {
  const entry = (seq: number, payloadBytes: number) => ({ seq, payloadBytes });
  const seqs = (groups: Array<Array<{ seq: number }>>) => groups.map((g) => g.map((e) => e.seq));

  it("puts small messages of one read in one event, in order", () => {
    assert.deepEqual(seqs(eventGroups([1, 2, 3, 4].map((s) => entry(s, 1024)))), [[1, 2, 3, 4]]);
    assert.deepEqual(eventGroups([]), []);
  });

  it("starts a new event before 256 KiB of payload, and gives a larger message an event of its own", () => {
    const KiB = 1024;
    const groups = eventGroups([entry(1, 100 * KiB), entry(2, 100 * KiB), entry(3, 100 * KiB), entry(4, 600 * KiB), entry(5, 1)]);
    assert.deepEqual(seqs(groups), [[1, 2], [3], [4], [5]]);
  });
});

describe("wake-ups that carry the entries", () => {
  const key = generateKeyPair();
  const codec = new WakeUpCodec("relay-1", key.privateKeyPem);
  const sender = { deviceId: "alice-dev", identityId: "alice" };
  const bob = { kind: "device" as const, id: "bob-dev" };
  const team = { kind: "identity" as const, id: "team" };
  const message = (messageId: string, text: string) => ({ messageId, recipients: [bob, team], payload: Buffer.from(text), contentType: "text/plain" });
  const outcome = (messageId: string, bobSeq: number, teamSeq: number, duplicate = false) => ({
    messageId,
    duplicate,
    acceptedAtMs: 1000,
    queued: [
      { queue: bob, seq: bobSeq },
      { queue: team, seq: teamSeq },
    ],
  });

  it("publishes one wake-up per queue for all requests of a commit, entries in order; duplicates add nothing", () => {
    const carol = { deviceId: "carol-dev", identityId: "carol" };
    const wakes = codec.wakeUps([
      { sender, messages: [message("m1", "one"), message("m2", "two"), message("m3", "three")], outcomes: [outcome("m1", 5, 9), outcome("m2", 6, 10, true), outcome("m3", 7, 11)] },
      { sender: carol, messages: [message("c1", "four")], outcomes: [outcome("c1", 8, 12)] },
    ]);
    assert.equal(wakes.length, 2);
    const bobs = codec.pushedEntries(wakes.find((w) => w.subject.includes(".wake.device."))!.data)!.map((e) => QueuedMessage.decode(e.bytes));
    assert.deepEqual(bobs.map((m) => [m.seq, m.messageId, Buffer.from(m.payload).toString(), m.senderDeviceId, m.enqueuedAtMs]), [
      [5, "m1", "one", "alice-dev", 1000],
      [7, "m3", "three", "alice-dev", 1000],
      [8, "c1", "four", "carol-dev", 1000],
    ]);
    const teams = codec.pushedEntries(wakes.find((w) => w.subject.includes(".wake.identity."))!.data)!;
    assert.deepEqual(teams.map((m) => m.seq), [9, 11, 12]);
  });

  it("sends a plain wake-up past 256 KiB for one queue", () => {
    const big = { ...message("m1", ""), payload: new Uint8Array(200 * 1024) };
    const wakes = codec.wakeUps([{ sender, messages: [big, { ...big, messageId: "m2" }], outcomes: [outcome("m1", 1, 1), outcome("m2", 2, 2)] }]);
    assert.ok(wakes.every((w) => w.data.length === 0));
  });

  it("takes a body sealed by another relay key, a changed body or garbage as a plain wake-up", () => {
    const [wake] = codec.wakeUps([{ sender, messages: [{ ...message("m1", "one"), recipients: [bob] }], outcomes: [{ ...outcome("m1", 1, 1), queued: [{ queue: bob, seq: 1 }] }] }]);
    assert.equal(codec.pushedEntries(wake!.data)?.length, 1);
    assert.equal(new WakeUpCodec("relay-1", generateKeyPair().privateKeyPem).pushedEntries(wake!.data), undefined);
    const changed = Buffer.from(wake!.data);
    changed[changed.length - 1] ^= 1;
    assert.equal(codec.pushedEntries(changed), undefined);
    assert.equal(codec.pushedEntries(Buffer.from("hello")), undefined);
    assert.equal(codec.pushedEntries(new Uint8Array()), undefined);
  });
});

describe("sending pushed entries in order", () => {
  const pushed = (...seqs: number[]) => seqs.map((seq) => ({ seq }));
  const seqsOf = (ms: Array<{ seq: number }>) => ms.map((m) => m.seq);

  it("takes the run that follows what was sent, sorting wake-ups that came out of commit order", () => {
    const c = { after: 4, pushed: pushed(7, 5, 6) };
    assert.deepEqual(seqsOf(takeFollowing(c)), [5, 6, 7]);
    assert.deepEqual(c.pushed, []);
  });

  it("drops what was sent already and stops at a gap, keeping what lies past it", () => {
    const c = { after: 4, pushed: pushed(3, 4, 5, 6, 8, 9) };
    assert.deepEqual(seqsOf(takeFollowing(c)), [5, 6]);
    assert.deepEqual(seqsOf(c.pushed), [8, 9]);
    const gap = { after: 6, pushed: pushed(8, 9) };
    assert.deepEqual(takeFollowing(gap), []);
    assert.deepEqual(seqsOf(gap.pushed), [8, 9], "kept until a read from Postgres fills the gap");
  });
});

describe("queued message encoding", () => {
  const message = (over: Partial<QueuedMessage>): QueuedMessage => ({
    queue: QueueKind.QUEUE_KIND_DEVICE,
    seq: 1,
    messageId: "m-1",
    senderDeviceId: "alice-dev",
    senderIdentityId: "alice",
    payload: Buffer.from("hello"),
    contentType: "text/plain",
    enqueuedAtMs: 1_700_000_000_000,
    ...over,
  });
  const cases: QueuedMessage[][] = [
    [],
    [message({})],
    // Zero and empty fields are left out, as the generated encoder does.
    [message({ queue: 0, seq: 0, messageId: "", senderDeviceId: "", senderIdentityId: "", payload: new Uint8Array(), contentType: "", enqueuedAtMs: 0 })],
    // Sequences past 2^32 and 2^53 - 1, non-ASCII ids, payloads whose lengths need 2 and 3 varint bytes.
    [message({ queue: QueueKind.QUEUE_KIND_IDENTITY, seq: 2 ** 32 + 5, messageId: "naïve-✓", payload: Buffer.alloc(300, 7) }), message({ seq: Number.MAX_SAFE_INTEGER, payload: Buffer.alloc(20_000, 9) })],
  ];

  it("writes the bytes the generated encoder writes, for a wake-up body and for Fetch events", () => {
    for (const messages of cases) {
      const body = encodeQueuedMessages(messages);
      assert.deepEqual(body, Buffer.from(QueuedMessages.encode({ messages }).finish()));
      const entries = messages.map(encodeEntry);
      assert.deepEqual(messagesEvent(entries), Buffer.from(FetchEvent.encode({ event: { $case: "messages", value: { messages } } }).finish()));
      assert.deepEqual(FetchEvent.decode(messagesEvent(entries)).event, { $case: "messages", value: { messages } });
      messages.forEach((m, i) => assert.deepEqual(messageEvent(entries[i]!), Buffer.from(FetchEvent.encode({ event: { $case: "message", value: m } }).finish())));
      // A wake-up body read back: each entry's own bytes, and what delivery needs from it.
      const read = readEntries(body)!;
      assert.deepEqual(read.map((e) => Buffer.from(e.bytes)), messages.map((m) => Buffer.from(QueuedMessage.encode(m).finish())));
      assert.deepEqual(read.map(({ seq, enqueuedAtMs, payloadBytes }) => ({ seq, enqueuedAtMs, payloadBytes })), messages.map((m) => ({ seq: m.seq, enqueuedAtMs: m.enqueuedAtMs, payloadBytes: m.payload.length })));
    }
  });

  it("reads no entries from a body that is not QueuedMessages", () => {
    const body = encodeQueuedMessages(cases[3]!);
    assert.equal(readEntries(body.subarray(0, body.length - 1)), undefined, "cut short");
    assert.equal(readEntries(Buffer.concat([body, Buffer.from([0x12, 0x00])])), undefined, "another field");
    assert.equal(readEntries(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), undefined, "a length past 2^53");
    assert.equal(readEntries(Buffer.from([0x0a, 0x02, 0x0d, 0x00])), undefined, "a fixed32 field (wire type 5)");
    assert.deepEqual(readEntries(new Uint8Array()), []);
  });

  it("leaves free bytes in front when asked, and falls back to the generated encoder for values it does not handle", () => {
    const messages = cases[1]!;
    const framed = encodeQueuedMessages(messages, 32);
    assert.deepEqual(framed.subarray(32), Buffer.from(QueuedMessages.encode({ messages }).finish()));
    const negative = [message({ enqueuedAtMs: -1 })];
    assert.deepEqual(encodeQueuedMessages(negative, 4).subarray(4), Buffer.from(QueuedMessages.encode({ messages: negative }).finish()));
  });
});
