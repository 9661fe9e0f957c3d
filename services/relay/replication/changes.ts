/**
 * What a committed relay transaction changed, in a form a secondary can
 * apply to its own database. Queue counters travel as absolute values (the
 * primary held the queue rows locked when it read them), and inserts/deletes
 * are keyed, so applying a change twice leaves the same state as once.
 *
 *   journal.record(c, [{ t: "suspend", deviceId: "d1", suspended: true }]);
 *   await applyChanges(client, ops);   // on the secondary, in one transaction
 */
import type { PoolClient } from "../../common/db.js";
import { decodeParams } from "./journaling-pool.js";

/** [kind code, queue id, last_seq, depth, bytes] after the change. */
export type QueueState = [number, string, number, number, number];

export interface SentRecord {
  messageId: string;
  queued: unknown;
}

export interface EntryRecord {
  kind: number;
  queueId: string;
  seq: number;
  messageId: string;
  contentType: string;
  /** Index into the change's payloads: a message to many queues ships its payload once. */
  payload: number;
  size: number;
}

/** A writing statement recorded by a journaling pool (stores outside this folder, e.g. the workspace directory). */
export interface StatementRecord {
  sql: string;
  params: unknown[];
}

export type ChangeOp =
  | { t: "identity"; id: string; publicKey: string; createdAtMs: number }
  | { t: "device"; id: string; identityId: string; publicKey: string; createdAtMs: number }
  | { t: "challenge"; nonce: string; expiresAtMs: number }
  | {
      t: "send";
      senderDevice: string;
      senderIdentity: string;
      acceptedAtMs: number;
      sent: SentRecord[];
      payloads: string[];
      entries: EntryRecord[];
      queues: QueueState[];
    }
  | { t: "cursor"; identityId: string; deviceId: string; ackedSeq: number }
  | { t: "deleteUpTo"; kind: number; queueId: string; seq: number; queue: QueueState | null }
  | { t: "purge"; kind: number[]; queueId: string[]; seq: number[]; queues: QueueState[]; counters: [number, number] }
  | { t: "suspend"; deviceId: string; suspended: boolean }
  | { t: "forget"; challengesBeforeMs: number; sentBeforeMs: number }
  | { t: "stmts"; list: StatementRecord[] };

const b64 = (s: string) => Buffer.from(s, "base64");

async function setQueues(c: PoolClient, queues: QueueState[]): Promise<void> {
  if (!queues.length) return;
  await c.query(
    `INSERT INTO queues AS q (kind, id, last_seq, depth, bytes)
     SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
     ON CONFLICT (kind, id) DO UPDATE SET last_seq = EXCLUDED.last_seq, depth = EXCLUDED.depth, bytes = EXCLUDED.bytes`,
    [queues.map((q) => q[0]), queues.map((q) => q[1]), queues.map((q) => q[2]), queues.map((q) => q[3]), queues.map((q) => q[4])],
  );
}

/** Applies one change's operations inside the caller's transaction. */
export async function applyChanges(c: PoolClient, ops: ChangeOp[]): Promise<void> {
  for (const op of ops) {
    switch (op.t) {
      case "identity":
        await c.query("INSERT INTO identities (id, public_key, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [op.id, b64(op.publicKey), op.createdAtMs]);
        break;
      case "device":
        await c.query("INSERT INTO devices (id, identity_id, public_key, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", [
          op.id, op.identityId, b64(op.publicKey), op.createdAtMs,
        ]);
        break;
      case "challenge":
        await c.query("INSERT INTO used_challenges (nonce, expires_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING", [b64(op.nonce), op.expiresAtMs]);
        break;
      case "send": {
        await c.query(
          `INSERT INTO sent_messages (sender_device, message_id, accepted_at_ms, queued)
           SELECT $1, id, $2, q FROM unnest($3::text[], $4::jsonb[]) AS t(id, q) ON CONFLICT DO NOTHING`,
          [op.senderDevice, op.acceptedAtMs, op.sent.map((s) => s.messageId), op.sent.map((s) => JSON.stringify(s.queued))],
        );
        const payloads = op.payloads.map(b64);
        const e = op.entries;
        if (e.length) {
          await c.query(
            `INSERT INTO entries (kind, queue_id, seq, message_id, sender_device, sender_identity, content_type, payload, size, enqueued_at_ms)
             SELECT k, q, s, mid, $8, $9, ct, p, sz, $10
               FROM unnest($1::smallint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bytea[], $7::int[]) AS t(k, q, s, mid, ct, p, sz)
             ON CONFLICT DO NOTHING`,
            [
              e.map((x) => x.kind), e.map((x) => x.queueId), e.map((x) => x.seq), e.map((x) => x.messageId), e.map((x) => x.contentType),
              e.map((x) => payloads[x.payload]!), e.map((x) => x.size), op.senderDevice, op.senderIdentity, op.acceptedAtMs,
            ],
          );
        }
        await setQueues(c, op.queues);
        break;
      }
      case "cursor":
        await c.query(
          `INSERT INTO identity_cursors (identity_id, device_id, acked_seq) VALUES ($1, $2, $3)
           ON CONFLICT (identity_id, device_id) DO UPDATE SET acked_seq = GREATEST(identity_cursors.acked_seq, EXCLUDED.acked_seq)`,
          [op.identityId, op.deviceId, op.ackedSeq],
        );
        break;
      case "deleteUpTo":
        await c.query("DELETE FROM entries WHERE kind = $1 AND queue_id = $2 AND seq <= $3", [op.kind, op.queueId, op.seq]);
        if (op.queue) await setQueues(c, [op.queue]);
        break;
      case "purge":
        await c.query(
          `DELETE FROM entries e USING unnest($1::smallint[], $2::text[], $3::bigint[]) AS v(k, q, s)
            WHERE e.kind = v.k AND e.queue_id = v.q AND e.seq = v.s`,
          [op.kind, op.queueId, op.seq],
        );
        await setQueues(c, op.queues);
        await c.query("UPDATE purge_counters SET messages = $1, bytes = $2", op.counters);
        break;
      case "suspend":
        await c.query("UPDATE devices SET suspended = $2 WHERE id = $1", [op.deviceId, op.suspended]);
        break;
      case "stmts":
        for (const st of op.list) await c.query(st.sql, decodeParams(st.params));
        break;
      case "forget":
        await c.query("DELETE FROM used_challenges WHERE expires_at_ms < $1", [op.challengesBeforeMs]);
        await c.query("DELETE FROM sent_messages WHERE accepted_at_ms < $1", [op.sentBeforeMs]);
        break;
    }
  }
}

/** Where a store's transactions report their changes (the primary's replicator). */
export interface Journal {
  /** Called last in the transaction; throws to roll it back (e.g. fenced, stream unreachable). */
  record(c: PoolClient, ops: ChangeOp[]): Promise<void>;
}
