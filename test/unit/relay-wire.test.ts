/** What the relay puts on the wire for batches: one signature per SendBatch answer, grouped Fetch events. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { generateKeyPair, signBytes, verifyBytes } from "../../services/common/crypto.js";
import { batchReceiptStatement, receiptStatement } from "../../services/common/receipts.js";
import { eventGroups } from "../../services/relay/delivery.js";
import type { StoredEntry } from "../../services/relay/types.js";
import type { SendReceipt } from "../../generated/parley/v1/relay.js";

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
  const entry = (seq: number, bytes: number): StoredEntry => ({
    kind: "device",
    queueId: "bob-dev",
    seq,
    messageId: `m${seq}`,
    senderDevice: "alice-dev",
    senderIdentity: "alice",
    contentType: "",
    payload: new Uint8Array(bytes),
    enqueuedAtMs: 0,
  });
  const seqs = (groups: StoredEntry[][]) => groups.map((g) => g.map((e) => e.seq));

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
