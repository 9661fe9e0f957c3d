/** Pure parts of relay replication: queue comparison and the journaled statement parameters. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeParams, encodeParams } from "../../services/relay/replication/journaling-pool.js";
import { compareChecksums, type Checksums, type QueueChecksum } from "../../services/relay/replication/snapshot.js";

const queue = (id: string, over: Partial<QueueChecksum> = {}): QueueChecksum => ({
  kind: 1, id, lastSeq: 5, depth: 2, bytes: 20, entries: 2, checksum: Buffer.from(id), ...over,
});
const sums = (...queues: QueueChecksum[]): Checksums => ({ streamSeq: 7, changeSeq: 6, queues });

describe("compareChecksums", () => {
  it("finds nothing between identical relays", () => {
    assert.deepEqual(compareChecksums(sums(queue("a"), queue("b")), sums(queue("a"), queue("b"))), []);
  });

  it("names each differing, missing and extra queue with what differs", () => {
    const local = sums(queue("a", { depth: 1, entries: 1, checksum: Buffer.from("x") }), queue("extra"), queue("empty-extra", { depth: 0, entries: 0 }));
    const source = sums(queue("a"), queue("missing"));
    assert.deepEqual(compareChecksums(local, source), [
      { kind: 1, id: "a", problem: "depth 1 vs 2, content checksum differs (here vs source)" },
      { kind: 1, id: "missing", problem: "missing here (source has 2 messages, last seq 5)" },
      { kind: 1, id: "extra", problem: "not on the source (2 messages here)" },
    ]);
  });

  it("without a source, checks each queue's counter against its stored entries", () => {
    assert.deepEqual(compareChecksums(sums(queue("a", { entries: 3 }))), [{ kind: 1, id: "a", problem: "depth says 2 but 3 entries are stored" }]);
  });
});

describe("journaled statement parameters", () => {
  it("round-trip bytes (also inside arrays) through JSON", () => {
    const params = ["ws", 42, null, true, Buffer.from([1, 2, 255]), [Buffer.from("k"), "x"], [1, 2]];
    const decoded = decodeParams(JSON.parse(JSON.stringify(encodeParams(params))) as unknown[]);
    assert.deepEqual(decoded, params);
  });
});
