/**
 * Whole-database copies and queue checksums: what a rebuild copies from a
 * peer when the change stream no longer reaches back far enough, and what it
 * compares afterwards.
 *
 *   for await (const chunk of exportSnapshot(pool)) send(chunk);      // on the peer
 *   await importSnapshot(pool, chunks);                                // on the relay being rebuilt
 *   const diff = compareChecksums(await queueChecksums(pool), peerChecksums);
 */
import { createHash } from "node:crypto";
import type { Pool, PoolClient } from "../../common/db.js";

/** Tables in load order (references first). purge_counters and replication_state are single rows. */
const TABLES = [
  "identities", "devices", "queues", "entries", "identity_cursors", "sent_messages", "used_challenges",
  "ws_workspaces", "ws_members", "ws_endpoints", "ws_figures", "purge_counters",
] as const;
const ROWS_PER_CHUNK = 500;

export interface SnapshotChunk {
  table: string;
  rows: string[];
  streamSeq: number;
  changeSeq: number;
  epoch: number;
  primary: string;
}

/** Reads every table in one REPEATABLE READ transaction, so the copy matches its replication position. */
export async function* exportSnapshot(pool: Pool): AsyncGenerator<SnapshotChunk> {
  const c = await pool.connect();
  try {
    await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const pos = (await c.query<{ stream_seq: number; change_seq: number; epoch: number; primary_replica: string }>("SELECT * FROM replication_state")).rows[0]!;
    const base = { streamSeq: 0, changeSeq: 0, epoch: 0, primary: "" };
    for (const table of TABLES) {
      await c.query(`DECLARE snap CURSOR FOR SELECT row_to_json(t)::text AS j FROM ${table} t`);
      for (;;) {
        const { rows } = await c.query<{ j: string }>(`FETCH ${ROWS_PER_CHUNK} FROM snap`);
        if (rows.length) yield { ...base, table, rows: rows.map((r) => r.j) };
        if (rows.length < ROWS_PER_CHUNK) break;
      }
      await c.query("CLOSE snap");
    }
    yield { table: "", rows: [], streamSeq: pos.stream_seq, changeSeq: pos.change_seq, epoch: pos.epoch, primary: pos.primary_replica };
    await c.query("COMMIT");
  } catch (err) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/** Empties every relay table and the replication position (a rebuild from scratch). */
export async function clearRelayTables(c: PoolClient): Promise<void> {
  await c.query(`TRUNCATE ${TABLES.filter((t) => t !== "purge_counters").join(", ")}`);
  await c.query("UPDATE purge_counters SET messages = 0, bytes = 0");
  await c.query("UPDATE replication_state SET change_seq = 0, stream_seq = 0, epoch = 0, primary_replica = '', last_commit_ms = 0");
}

/** Replaces the relay's tables with a snapshot, in one transaction; returns the entries copied. */
export async function importSnapshot(pool: Pool, chunks: AsyncIterable<SnapshotChunk>): Promise<number> {
  const c = await pool.connect();
  try {
    await c.query("BEGIN");
    await clearRelayTables(c);
    let entries = 0;
    let complete = false;
    for await (const chunk of chunks) {
      if (!chunk.table) {
        await c.query("UPDATE replication_state SET change_seq = $1, stream_seq = $2, epoch = $3, primary_replica = $4", [
          chunk.changeSeq, chunk.streamSeq, chunk.epoch, chunk.primary,
        ]);
        complete = true;
        continue;
      }
      if (!(TABLES as readonly string[]).includes(chunk.table)) throw new Error(`snapshot names an unknown table '${chunk.table}'`);
      if (chunk.table === "purge_counters") {
        const r = JSON.parse(chunk.rows[0]!) as { messages: number; bytes: number };
        await c.query("UPDATE purge_counters SET messages = $1, bytes = $2", [r.messages, r.bytes]);
        continue;
      }
      await c.query(`INSERT INTO ${chunk.table} SELECT * FROM json_populate_recordset(null::${chunk.table}, $1::json)`, [`[${chunk.rows.join(",")}]`]);
      if (chunk.table === "entries") entries += chunk.rows.length;
    }
    if (!complete) throw new Error("the snapshot ended before its final position record");
    await c.query("COMMIT");
    return entries;
  } catch (err) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export interface QueueChecksum {
  kind: number;
  id: string;
  lastSeq: number;
  depth: number;
  bytes: number;
  /** sha256 over every entry's seq, message id, sender, enqueue time and payload hash, in seq order. */
  checksum: Buffer;
  /** Entries actually stored (equals depth on a sound database). */
  entries: number;
}

export interface Checksums {
  streamSeq: number;
  changeSeq: number;
  queues: QueueChecksum[];
}

/** Every queue's counters and content checksum, consistent with the replication position. */
export async function queueChecksums(pool: Pool): Promise<Checksums> {
  const c = await pool.connect();
  try {
    await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const pos = (await c.query<{ stream_seq: number; change_seq: number }>("SELECT stream_seq, change_seq FROM replication_state")).rows[0]!;
    const { rows } = await c.query<{ kind: number; id: string; last_seq: number; depth: number; bytes: number; n: number; digest: string | null }>(
      `SELECT q.kind, q.id, q.last_seq, q.depth, q.bytes, COALESCE(e.n, 0)::bigint AS n, e.digest
         FROM queues q
         LEFT JOIN (SELECT kind, queue_id, count(*) AS n,
                           string_agg(seq || ':' || message_id || ':' || sender_device || ':' || enqueued_at_ms || ':' || encode(sha256(payload), 'hex'), ',' ORDER BY seq) AS digest
                      FROM entries GROUP BY kind, queue_id) e ON e.kind = q.kind AND e.queue_id = q.id
        ORDER BY q.kind, q.id`,
    );
    await c.query("COMMIT");
    return {
      streamSeq: pos.stream_seq,
      changeSeq: pos.change_seq,
      queues: rows.map((r) => ({
        kind: r.kind, id: r.id, lastSeq: r.last_seq, depth: r.depth, bytes: r.bytes, entries: r.n,
        checksum: createHash("sha256").update(r.digest ?? "").digest(),
      })),
    };
  } catch (err) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

export interface Mismatch {
  kind: number;
  id: string;
  problem: string;
}

/** Differences between two relays' queues (or, with one argument, a relay's counters against its own entries). */
export function compareChecksums(local: Checksums, source?: Checksums): Mismatch[] {
  const out: Mismatch[] = [];
  for (const q of local.queues) {
    if (q.entries !== q.depth) out.push({ kind: q.kind, id: q.id, problem: `depth says ${q.depth} but ${q.entries} entries are stored` });
  }
  if (!source) return out;
  const key = (q: { kind: number; id: string }) => `${q.kind}:${q.id}`;
  const mine = new Map(local.queues.map((q) => [key(q), q]));
  for (const theirs of source.queues) {
    const q = mine.get(key(theirs));
    mine.delete(key(theirs));
    if (!q) {
      if (theirs.depth > 0 || theirs.lastSeq > 0) out.push({ kind: theirs.kind, id: theirs.id, problem: `missing here (source has ${theirs.depth} messages, last seq ${theirs.lastSeq})` });
      continue;
    }
    const diffs: string[] = [];
    if (q.lastSeq !== theirs.lastSeq) diffs.push(`last seq ${q.lastSeq} vs ${theirs.lastSeq}`);
    if (q.depth !== theirs.depth) diffs.push(`depth ${q.depth} vs ${theirs.depth}`);
    if (q.bytes !== theirs.bytes) diffs.push(`bytes ${q.bytes} vs ${theirs.bytes}`);
    if (!q.checksum.equals(theirs.checksum)) diffs.push("content checksum differs");
    if (diffs.length) out.push({ kind: q.kind, id: q.id, problem: `${diffs.join(", ")} (here vs source)` });
  }
  for (const q of mine.values()) if (q.depth > 0) out.push({ kind: q.kind, id: q.id, problem: `not on the source (${q.depth} messages here)` });
  return out;
}
