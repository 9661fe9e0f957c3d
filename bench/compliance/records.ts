/**
 * The compliance benchmark's workload and its baselines: compliance records
 * as the channel service writes them (ComplianceLog.record: a
 * `message.posted` envelope around a ChatMessage), published to a stream of
 * the benchmark's own; the same messages consumed and acked with no
 * database; the same rows INSERTed into a staging table with no JetStream.
 *
 *   const records = makeRecords({ count: 100_000, rooms: 1000, textBytes: 200 });
 *   const pub = await publishRecords(bus, stream, records);
 *   const raw = await consumeAndAck(bus, stream.name, 500);
 */
import { randomBytes } from "node:crypto";
import type { ChatMessage } from "../../generated/parley/v1/chat.js";
import type { NatsBus } from "../../services/common/bus/nats.js";
import type { ComplianceRecord, ComplianceStream } from "../../services/common/compliance.js";
import type { Pool } from "../../services/common/db.js";
import { StagingStore } from "../../services/compliance/store.js";
import { nowMs } from "../support/stats.js";

export interface BenchRecord {
  record: ComplianceRecord;
  /** The envelope as it goes on the stream (and, re-serialised, into staging). */
  json: string;
}

const WORDS = "the launch plan for next quarter needs review before friday please check numbers with finance and legal, then we ship; thanks all".split(" ");

/** About `bytes` of chat text, different for every message. */
function text(i: number, bytes: number): string {
  let s = `#${i}:`;
  for (let w = i; s.length < bytes; w = (w * 7 + 3) % WORDS.length) s += ` ${WORDS[w]}`;
  return s.slice(0, bytes);
}

/** `count` message.posted records spread round-robin over `rooms` rooms, 20 authors per room. */
export function makeRecords(o: { count: number; rooms: number; textBytes: number; prefix?: string; startMs?: number }): BenchRecord[] {
  const prefix = o.prefix ?? `bench-${randomBytes(3).toString("hex")}`;
  const start = o.startMs ?? Date.now();
  const out: BenchRecord[] = [];
  for (let i = 0; i < o.count; i++) {
    const r = i % o.rooms;
    const roomId = `${prefix}-room-${String(r).padStart(4, "0")}`;
    const seq = Math.floor(i / o.rooms) + 1;
    const author = `${prefix}-user-${r}-${i % 20}`;
    const at = start + i;
    const message: ChatMessage = {
      roomId, seq, eventSeq: seq, messageId: randomBytes(8).toString("hex"), author, text: text(i, o.textBytes),
      replyTo: 0, mentions: [], attachments: [], createdAtMs: at, editedAtMs: 0, deleted: false,
    };
    const record: ComplianceRecord = { v: 1, id: `msg:${roomId}:${seq}`, source: "bench-channel", kind: "message.posted", roomId, actor: author, atMs: at, message };
    out.push({ record, json: JSON.stringify(record) });
  }
  return out;
}

/** Publishes with `window` publishes awaiting their PubAck at once; returns the wall time. */
export async function publishRecords(bus: NatsBus, stream: ComplianceStream, records: BenchRecord[], window = 256, onAck?: (i: number) => void): Promise<{ seconds: number; perSec: number }> {
  const enc = new TextEncoder();
  const t0 = nowMs();
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(window, records.length) }, async () => {
    while (next < records.length) {
      const i = next++;
      const r = records[i]!;
      await bus.publishDurable(stream.subject(r.record.kind), enc.encode(r.json), { msgId: r.record.id });
      onAck?.(i);
    }
  }));
  const seconds = (nowMs() - t0) / 1000;
  return { seconds, perSec: records.length / seconds };
}

/**
 * Baseline: a durable consumer of its own on the same stream, through the
 * same NatsBus.consume() the collector uses (same max unacked), acking each
 * message on arrival; no decoding, no database.
 */
export async function consumeAndAck(bus: NatsBus, stream: string, expected: number, maxAckPending: number): Promise<{ seconds: number; perSec: number }> {
  const durable = `bench-raw-${randomBytes(4).toString("hex")}`;
  let n = 0;
  let t0 = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  const consumer = await bus.consume({ stream, durable, ackWaitMs: 60_000, maxAckPending }, (m) => {
    if (n === 0) t0 = nowMs();
    m.ack();
    if (++n === expected) done();
  });
  const started = nowMs();
  await bounded(all, 600_000, () => `raw consume: ${n}/${expected} acked`);
  const seconds = (nowMs() - (t0 || started)) / 1000;
  await bus.flush();
  await consumer.stop();
  await bus.deleteConsumer(stream, durable);
  return { seconds, perSec: expected / seconds };
}

/**
 * Baselines: the same rows into a staging table (the service's own schema,
 * indexes included), one batch after the other as the collector commits
 * them. `raw` is a plain INSERT … SELECT FROM unnest; `service` is the
 * collector's own statement (StagingStore.stage: dedup against exported
 * ids, ON CONFLICT DO NOTHING), called in this process.
 */
export async function insertBatches(pool: Pool, records: BenchRecord[], batch: number, how: "raw" | "service"): Promise<{ seconds: number; perSec: number }> {
  const store = new StagingStore(pool);
  await pool.query("TRUNCATE staged_events");
  const t0 = nowMs();
  for (let i = 0; i < records.length; i += batch) {
    const part = records.slice(i, i + batch);
    if (how === "service") {
      await store.stage(part.map((r, k) => ({ record: r.record, streamSeq: i + k + 1 })));
    } else {
      await pool.query(
        `INSERT INTO staged_events (id, room_id, kind, at_ms, stream_seq, record)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::jsonb[])`,
        [part.map((r) => r.record.id), part.map((r) => r.record.roomId), part.map((r) => r.record.kind), part.map((r) => r.record.atMs), part.map((_, k) => i + k + 1), part.map((r) => r.json)],
      );
    }
  }
  const seconds = (nowMs() - t0) / 1000;
  await pool.query("TRUNCATE staged_events");
  return { seconds, perSec: records.length / seconds };
}

/** Resolves with p, or rejects with what() after ms. */
export function bounded<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms)))]).finally(() => clearTimeout(t));
}
