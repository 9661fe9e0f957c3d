/**
 * Staging: what the collector stores and the exporter claims, writes and
 * clears (see migrations.ts for the life of a batch).
 *
 *   await store.stage(records);                       // duplicates ignored
 *   const batch = await store.openBatch(id, now);     // claims all staged events
 *   for (const room of await store.batchRooms(batch)) … store.conversation(batch, room) …
 *   await store.finishBatch(batch, endStates, totals, now);
 */
import type { ComplianceRecord } from "../common/compliance.js";
import { tx, type Pool } from "../common/db.js";

export interface StagedRecord {
  record: ComplianceRecord;
  /** Position in the JetStream stream: breaks ties between equal times. */
  streamSeq: number;
}

export interface Participant {
  userId: string;
  role: number;
}

/** What a conversation carries from one batch to the next. */
export interface ConversationState {
  participants: Participant[];
  room?: Record<string, unknown>;
}

export interface BatchTotals {
  conversations: number;
  records: number;
  files: number;
  bytes: number;
}

export interface StagingStatus {
  staged: number;
  oldestAtMs: number | null;
  lastExportAtMs: number | null;
  lastBatchId: string;
  unfinishedBatch: string | null;
}

export class StagingStore {
  constructor(readonly pool: Pool) {}

  /**
   * Stores records in one statement; ids already staged or already exported
   * are skipped (exactly-once into staging). Returns how many were new.
   */
  async stage(records: StagedRecord[]): Promise<number> {
    if (!records.length) return 0;
    const { rowCount } = await this.pool.query(
      `INSERT INTO staged_events (id, room_id, kind, at_ms, stream_seq, record)
       SELECT r.id, r.room_id, r.kind, r.at_ms, r.stream_seq, r.record
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::jsonb[])
              AS r (id, room_id, kind, at_ms, stream_seq, record)
        WHERE NOT EXISTS (SELECT 1 FROM exported_ids e WHERE e.id = r.id)
       ON CONFLICT (id) DO NOTHING`,
      [
        records.map((r) => r.record.id),
        records.map((r) => r.record.roomId),
        records.map((r) => r.record.kind),
        records.map((r) => r.record.atMs),
        records.map((r) => r.streamSeq),
        records.map((r) => JSON.stringify(r.record)),
      ],
    );
    return rowCount ?? 0;
  }

  /**
   * Runs fn holding the export lock (a session advisory lock), so that of
   * several compliance instances on one staging database one exports at a
   * time; undefined when another holds it.
   */
  async withExportLock<T>(fn: () => Promise<T>): Promise<T | undefined> {
    const c = await this.pool.connect();
    try {
      const { rows } = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext('parley-compliance-export')) AS ok");
      if (!rows[0]?.ok) return undefined;
      try {
        return await fn();
      } finally {
        await c.query("SELECT pg_advisory_unlock(hashtext('parley-compliance-export'))").catch(() => undefined);
      }
    } finally {
      c.release();
    }
  }

  /** The batch an interrupted export left half-written, if any. */
  async unfinishedBatch(): Promise<string | null> {
    const { rows } = await this.pool.query<{ id: string }>("SELECT id FROM batches WHERE state = 'writing' ORDER BY started_at_ms LIMIT 1");
    return rows[0]?.id ?? null;
  }

  /** Claims every unclaimed staged event for a new batch; null when there are none. */
  async openBatch(id: string, nowMs: number): Promise<string | null> {
    return tx(this.pool, async (c) => {
      const { rowCount } = await c.query("UPDATE staged_events SET batch_id = $1 WHERE batch_id IS NULL", [id]);
      if (!rowCount) return null;
      await c.query("INSERT INTO batches (id, state, started_at_ms) VALUES ($1, 'writing', $2)", [id, nowMs]);
      return id;
    });
  }

  async batchRooms(batchId: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ room_id: string }>("SELECT DISTINCT room_id FROM staged_events WHERE batch_id = $1 ORDER BY room_id", [batchId]);
    return rows.map((r) => r.room_id);
  }

  /** A room's events in the batch, in time order, and its state before them. */
  async conversation(batchId: string, roomId: string): Promise<{ records: StagedRecord[]; before: ConversationState }> {
    const [events, people, room] = await Promise.all([
      this.pool.query<{ record: ComplianceRecord; stream_seq: string }>(
        "SELECT record, stream_seq FROM staged_events WHERE batch_id = $1 AND room_id = $2 ORDER BY at_ms, stream_seq",
        [batchId, roomId],
      ),
      this.pool.query<{ user_id: string; role: number }>("SELECT user_id, role FROM participants WHERE room_id = $1 ORDER BY user_id", [roomId]),
      this.pool.query<{ room: Record<string, unknown> }>("SELECT room FROM rooms WHERE room_id = $1", [roomId]),
    ]);
    return {
      records: events.rows.map((r) => ({ record: r.record, streamSeq: Number(r.stream_seq) })),
      before: { participants: people.rows.map((p) => ({ userId: p.user_id, role: p.role })), room: room.rows[0]?.room },
    };
  }

  /**
   * The batch's files are durable: forget its events (remembering their ids),
   * carry each conversation's end state forward, and mark the batch done.
   */
  async finishBatch(batchId: string, endStates: Map<string, ConversationState>, totals: BatchTotals, nowMs: number): Promise<void> {
    await tx(this.pool, async (c) => {
      await c.query(
        `WITH gone AS (DELETE FROM staged_events WHERE batch_id = $1 RETURNING id)
         INSERT INTO exported_ids (id, exported_at_ms) SELECT id, $2 FROM gone ON CONFLICT (id) DO NOTHING`,
        [batchId, nowMs],
      );
      const rooms = [...endStates.keys()];
      await c.query("DELETE FROM participants WHERE room_id = ANY($1::text[])", [rooms]);
      const people = [...endStates].flatMap(([room, s]) => s.participants.map((p) => [room, p.userId, p.role] as const));
      await c.query(
        "INSERT INTO participants (room_id, user_id, role) SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[])",
        [people.map((p) => p[0]), people.map((p) => p[1]), people.map((p) => p[2])],
      );
      const withRoom = [...endStates].filter(([, s]) => s.room);
      await c.query(
        `INSERT INTO rooms (room_id, room) SELECT * FROM unnest($1::text[], $2::jsonb[])
         ON CONFLICT (room_id) DO UPDATE SET room = EXCLUDED.room`,
        [withRoom.map(([r]) => r), withRoom.map(([, s]) => JSON.stringify(s.room))],
      );
      await c.query(
        "UPDATE batches SET state = 'done', finished_at_ms = $2, conversations = $3, records = $4, files = $5, bytes = $6 WHERE id = $1",
        [batchId, nowMs, totals.conversations, totals.records, totals.files, totals.bytes],
      );
    });
  }

  /** Drops remembered ids older than the dedup window. */
  async forgetExportedBefore(cutoffMs: number): Promise<number> {
    const { rowCount } = await this.pool.query("DELETE FROM exported_ids WHERE exported_at_ms < $1", [cutoffMs]);
    return rowCount ?? 0;
  }

  async status(): Promise<StagingStatus> {
    const [staged, last, open] = await Promise.all([
      this.pool.query<{ n: string; oldest: string | null }>("SELECT count(*) AS n, min(at_ms) AS oldest FROM staged_events"),
      this.pool.query<{ id: string; finished_at_ms: string }>("SELECT id, finished_at_ms FROM batches WHERE state = 'done' ORDER BY finished_at_ms DESC LIMIT 1"),
      this.unfinishedBatch(),
    ]);
    const s = staged.rows[0]!;
    return {
      staged: Number(s.n),
      oldestAtMs: s.oldest === null ? null : Number(s.oldest),
      lastExportAtMs: last.rows[0] ? Number(last.rows[0].finished_at_ms) : null,
      lastBatchId: last.rows[0]?.id ?? "",
      unfinishedBatch: open,
    };
  }
}
