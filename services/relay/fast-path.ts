/**
 * One-round-trip forms of the relay's hot writes, for a relay that does not
 * replicate (a replicating primary journals every change inside its
 * transaction, so it keeps RelayStore's general path).
 *
 * A send group runs as one call of relay_enqueue (migrations 30-32) in
 * autocommit: one round trip and one commit instead of BEGIN, four statements
 * and COMMIT, and the queue row locks are held for that one statement and
 * its commit only. It covers the common case: every message new, every party
 * present and active, every queue under its quota. Anything else is refused
 * by the function before anything commits, and the caller takes the general
 * path, which answers resends, unknown parties and full queues precisely.
 */
import type { Pool } from "../common/db.js";
import { OutOfRangeError } from "../common/errors.js";
import type { SendRequest } from "./store.js";
import { intArray, textArray } from "./pg-arrays.js";
import { compareQueues, KIND_CODE, KIND_NAME, QueueMap, type Limits, type QueueRef, type SendOutcome } from "./types.js";

/** relay_enqueue's refusals: not the common case, take the general path. */
const NOT_COMMON = new Set([
  "PR001", // a party unknown or suspended
  "PR002", // a queue would pass its quota
  "23505", // a message id used before (a resend), or claimed meanwhile by a concurrent group
  "40P01", // deadlock (the general path retries)
  "40001",
]);

/** Per-queue totals of a group, and then the next sequence to hand out. */
interface QueueTally {
  queue: QueueRef;
  count: number;
  bytes: number;
  next: number;
}

/**
 * The group in one statement, or undefined when it is not the common case
 * (nothing was written then). Outcomes come in request order.
 */
export async function enqueueAtOnce(pool: Pool, requests: SendRequest[], limits: Limits, nowMs: number): Promise<SendOutcome[][] | undefined> {
  // A message id twice in one group: the general path decides which is first.
  const idsBySender = new Map<string, Set<string>>();
  for (const r of requests) {
    let ids = idsBySender.get(r.sender.deviceId);
    if (!ids) idsBySender.set(r.sender.deviceId, (ids = new Set()));
    for (const m of r.messages) {
      if (ids.has(m.messageId)) return undefined;
      ids.add(m.messageId);
    }
  }

  const m = { sd: [] as string[], si: [] as string[], mid: [] as string[], ct: [] as string[], off: [] as number[], size: [] as number[] };
  const e = { msg: [] as number[], kind: [] as number[], queue: [] as string[], rord: [] as number[], ord: [] as number[] };
  const perQueue = new QueueMap<QueueTally>();
  const payloads: Uint8Array[] = [];
  let offset = 0;
  for (const { sender, messages } of requests) {
    for (const msg of messages) {
      const index = m.sd.push(sender.deviceId); // 1-based, as SQL arrays
      m.si.push(sender.identityId);
      m.mid.push(msg.messageId);
      m.ct.push(msg.contentType);
      m.off.push(offset);
      m.size.push(msg.payload.length);
      payloads.push(msg.payload);
      offset += msg.payload.length;
      for (let r = 0; r < msg.recipients.length; r++) {
        const q = msg.recipients[r]!;
        let tally = perQueue.get(q);
        if (!tally) perQueue.set(q, (tally = { queue: q, count: 0, bytes: 0, next: 0 }));
        tally.count++;
        tally.bytes += msg.payload.length;
        e.msg.push(index);
        e.kind.push(KIND_CODE[q.kind]);
        e.queue.push(q.id);
        e.rord.push(r);
        e.ord.push(tally.count);
      }
    }
  }
  // In compareQueues order, as RelayStore locks them: every sender locks queue rows in one order.
  const bumps = perQueue.values().sort((a, b) => compareQueues(a.queue, b.queue));
  let rows: Array<{ kind: number; id: string; last_seq: number }>;
  try {
    ({ rows } = await pool.query<{ kind: number; id: string; last_seq: number }>({
      // Named: each connection parses and plans it once.
      name: "relay_enqueue",
      text: "SELECT * FROM relay_enqueue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
      values: [
        textArray(m.sd), textArray(m.si), textArray(m.mid), textArray(m.ct), intArray(m.off), intArray(m.size), Buffer.concat(payloads, offset), // a Buffer travels in binary
        intArray(e.msg), intArray(e.kind), textArray(e.queue), intArray(e.rord), intArray(e.ord),
        intArray(bumps.map((b) => KIND_CODE[b.queue.kind])), textArray(bumps.map((b) => b.queue.id)), intArray(bumps.map((b) => b.count)), intArray(bumps.map((b) => b.bytes)),
        nowMs, limits.maxQueueMessages, limits.maxQueueBytes,
      ],
    }));
  } catch (err) {
    if (NOT_COMMON.has((err as { code?: string }).code ?? "")) return undefined;
    throw err;
  }
  // Sequences as the function assigned them: per queue, in message order.
  for (const r of rows) {
    const tally = perQueue.get({ kind: KIND_NAME[r.kind]!, id: r.id })!;
    tally.next = r.last_seq - tally.count + 1;
  }
  return requests.map(({ messages }) =>
    messages.map((msg) => ({
      messageId: msg.messageId,
      duplicate: false,
      acceptedAtMs: nowMs,
      queued: msg.recipients.map((q) => ({ queue: q, seq: perQueue.get(q)!.next++ })),
    })),
  );
}

/**
 * A cumulative ack (RelayStore.ack's steps) in one statement: the number of
 * entries it deleted, or undefined after a deadlock (the caller retries).
 */
export async function ackAtOnce(pool: Pool, deviceId: string, identityId: string, deviceSeq: number, identitySeq: number): Promise<number | undefined> {
  try {
    const { rows } = await pool.query<{ deleted: number }>({
      name: "relay_ack",
      text: "SELECT relay_ack($1, $2, $3, $4) AS deleted",
      values: [deviceId, identityId, deviceSeq, identitySeq],
    });
    return rows[0]!.deleted;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "PR003") throw new OutOfRangeError((err as Error).message);
    if (code === "40P01" || code === "40001") return undefined;
    throw err;
  }
}
