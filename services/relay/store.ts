/**
 * The relay's SQL. Every method is one transaction (or one statement); the
 * service layer above does validation, signatures and wake-ups.
 */
import { tx, type Pool, type PoolClient } from "../common/db.js";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, OutOfRangeError, ResourceExhaustedError } from "../common/errors.js";
import {
  KIND_CODE,
  KIND_NAME,
  type Limits,
  type OutgoingMessage,
  type QueueFigures,
  type QueueRef,
  type RelayTotals,
  type SendOutcome,
  type Sender,
  type StoredEntry,
} from "./types.js";

export interface DeviceRecord {
  id: string;
  identityId: string;
  publicKey: Uint8Array;
  suspended: boolean;
}

export interface IdentityRecord {
  id: string;
  publicKey: Uint8Array;
  devices: DeviceRecord[];
}

export interface PurgeCount {
  messages: number;
  bytes: number;
  /** Queues that lost entries (their streams need no wake-up, but stats change). */
  queues: QueueRef[];
}

const queueKey = (q: QueueRef) => `${q.kind}:${q.id}`;

export class RelayStore {
  constructor(private readonly pool: Pool) {}

  async registerIdentity(id: string, publicKey: Uint8Array, nowMs: number): Promise<boolean> {
    const { rows } = await this.pool.query<{ public_key: Buffer; inserted: boolean }>(
      `WITH ins AS (
         INSERT INTO identities (id, public_key, created_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO NOTHING RETURNING public_key)
       SELECT public_key, true AS inserted FROM ins
       UNION ALL SELECT public_key, false FROM identities WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
      [id, publicKey, nowMs],
    );
    const row = rows[0]!;
    if (!row.inserted && !Buffer.from(publicKey).equals(row.public_key)) {
      throw new AlreadyExistsError(`identity '${id}' is already registered with another key`);
    }
    return row.inserted;
  }

  async registerDevice(id: string, identityId: string, publicKey: Uint8Array, nowMs: number): Promise<boolean> {
    const { rows } = await this.pool.query<{ identity_id: string; public_key: Buffer; inserted: boolean }>(
      `WITH ins AS (
         INSERT INTO devices (id, identity_id, public_key, created_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING RETURNING identity_id, public_key)
       SELECT identity_id, public_key, true AS inserted FROM ins
       UNION ALL SELECT identity_id, public_key, false FROM devices WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
      [id, identityId, publicKey, nowMs],
    );
    const row = rows[0]!;
    if (!row.inserted && (row.identity_id !== identityId || !Buffer.from(publicKey).equals(row.public_key))) {
      throw new AlreadyExistsError(`device '${id}' is already registered with another identity or key`);
    }
    return row.inserted;
  }

  async getIdentity(id: string): Promise<IdentityRecord | undefined> {
    const { rows } = await this.pool.query<{ public_key: Buffer; devices: Array<{ id: string; public_key: string; suspended: boolean }> | null }>(
      `SELECT i.public_key,
              (SELECT json_agg(json_build_object('id', d.id, 'public_key', encode(d.public_key, 'base64'), 'suspended', d.suspended) ORDER BY d.id)
                 FROM devices d WHERE d.identity_id = i.id) AS devices
         FROM identities i WHERE i.id = $1`,
      [id],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      id,
      publicKey: new Uint8Array(row.public_key),
      devices: (row.devices ?? []).map((d) => ({ id: d.id, identityId: id, publicKey: new Uint8Array(Buffer.from(d.public_key, "base64")), suspended: d.suspended })),
    };
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const { rows } = await this.pool.query<{ identity_id: string; public_key: Buffer; suspended: boolean }>(
      "SELECT identity_id, public_key, suspended FROM devices WHERE id = $1",
      [id],
    );
    const r = rows[0];
    return r && { id, identityId: r.identity_id, publicKey: new Uint8Array(r.public_key), suspended: r.suspended };
  }

  /** Records a challenge as answered; false if it was answered before. */
  async useChallenge(nonce: Uint8Array, expiresAtMs: number): Promise<boolean> {
    const { rowCount } = await this.pool.query("INSERT INTO used_challenges (nonce, expires_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING", [nonce, expiresAtMs]);
    return rowCount === 1;
  }

  /**
   * Queues a batch in one transaction: all messages or none. Messages whose
   * id this sender used before are not queued again; their first outcome is
   * returned with duplicate=true.
   */
  async send(sender: Sender, messages: OutgoingMessage[], limits: Limits, nowMs: number): Promise<SendOutcome[]> {
    return tx(this.pool, async (c) => {
      const ids = messages.map((m) => m.messageId);
      const fresh = await c.query<{ message_id: string }>(
        `INSERT INTO sent_messages (sender_device, message_id, accepted_at_ms)
         SELECT $1, id, $3 FROM unnest($2::text[]) AS id
         ON CONFLICT DO NOTHING RETURNING message_id`,
        [sender.deviceId, ids, nowMs],
      );
      const isFresh = new Set(fresh.rows.map((r) => r.message_id));
      const previous = await this.previousOutcomes(c, sender.deviceId, ids.filter((id) => !isFresh.has(id)));
      const toQueue = messages.filter((m) => isFresh.has(m.messageId));

      await this.checkParties(c, sender, toQueue);

      // Bump each touched queue once, in a fixed order so concurrent senders
      // lock queue rows in the same order and cannot deadlock each other.
      const perQueue = new Map<string, { queue: QueueRef; count: number; bytes: number }>();
      for (const m of toQueue) {
        for (const q of m.recipients) {
          const agg = perQueue.get(queueKey(q)) ?? { queue: q, count: 0, bytes: 0 };
          agg.count++;
          agg.bytes += m.payload.length;
          perQueue.set(queueKey(q), agg);
        }
      }
      const bumps = [...perQueue.values()].sort((a, b) => (queueKey(a.queue) < queueKey(b.queue) ? -1 : 1));
      const nextSeq = new Map<string, number>();
      if (bumps.length) {
        const { rows } = await c.query<{ kind: number; id: string; last_seq: number; depth: number; bytes: number }>(
          `INSERT INTO queues AS q (kind, id, last_seq, depth, bytes)
           SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[], $3::bigint[], $4::bigint[])
           ON CONFLICT (kind, id) DO UPDATE SET last_seq = q.last_seq + EXCLUDED.last_seq,
             depth = q.depth + EXCLUDED.depth, bytes = q.bytes + EXCLUDED.bytes
           RETURNING kind, id, last_seq, depth, bytes`,
          [bumps.map((b) => KIND_CODE[b.queue.kind]), bumps.map((b) => b.queue.id), bumps.map((b) => b.count), bumps.map((b) => b.bytes)],
        );
        for (const r of rows) {
          const queue = { kind: KIND_NAME[r.kind]!, id: r.id };
          if (r.depth > limits.maxQueueMessages || r.bytes > limits.maxQueueBytes) {
            throw new ResourceExhaustedError(
              `the ${queue.kind} queue '${queue.id}' is full (quota ${limits.maxQueueMessages} messages / ${limits.maxQueueBytes} bytes)`,
            );
          }
          const added = perQueue.get(queueKey(queue))!.count;
          nextSeq.set(queueKey(queue), r.last_seq - added + 1);
        }
      }

      const cols = { kind: [] as number[], queue: [] as string[], seq: [] as number[], mid: [] as string[], payload: [] as Buffer[], ctype: [] as string[], size: [] as number[] };
      const outcomes = new Map<string, SendOutcome>(previous.map((p) => [p.messageId, p]));
      for (const m of toQueue) {
        const queued = m.recipients.map((q) => {
          const seq = nextSeq.get(queueKey(q))!;
          nextSeq.set(queueKey(q), seq + 1);
          cols.kind.push(KIND_CODE[q.kind]);
          cols.queue.push(q.id);
          cols.seq.push(seq);
          cols.mid.push(m.messageId);
          cols.payload.push(Buffer.from(m.payload));
          cols.ctype.push(m.contentType);
          cols.size.push(m.payload.length);
          return { queue: q, seq };
        });
        outcomes.set(m.messageId, { messageId: m.messageId, duplicate: false, acceptedAtMs: nowMs, queued });
      }
      if (cols.seq.length) {
        await c.query(
          `INSERT INTO entries (kind, queue_id, seq, message_id, sender_device, sender_identity, content_type, payload, size, enqueued_at_ms)
           SELECT k, q, s, mid, $8, $9, ct, p, sz, $10
             FROM unnest($1::smallint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bytea[], $7::int[]) AS t(k, q, s, mid, ct, p, sz)`,
          [cols.kind, cols.queue, cols.seq, cols.mid, cols.ctype, cols.payload, cols.size, sender.deviceId, sender.identityId, nowMs],
        );
        await c.query(
          `UPDATE sent_messages s SET queued = v.queued FROM unnest($2::text[], $3::jsonb[]) AS v(id, queued)
            WHERE s.sender_device = $1 AND s.message_id = v.id`,
          [sender.deviceId, toQueue.map((m) => m.messageId), toQueue.map((m) => JSON.stringify(outcomes.get(m.messageId)!.queued))],
        );
      }
      return messages.map((m) => outcomes.get(m.messageId)!);
    });
  }

  private async previousOutcomes(c: PoolClient, senderDevice: string, ids: string[]): Promise<SendOutcome[]> {
    if (!ids.length) return [];
    const { rows } = await c.query<{ message_id: string; accepted_at_ms: number; queued: SendOutcome["queued"] | null }>(
      "SELECT message_id, accepted_at_ms, queued FROM sent_messages WHERE sender_device = $1 AND message_id = ANY($2)",
      [senderDevice, ids],
    );
    return rows.map((r) => ({ messageId: r.message_id, duplicate: true, acceptedAtMs: r.accepted_at_ms, queued: r.queued ?? [] }));
  }

  /** The sender must be active; every recipient must exist; devices must not be suspended. */
  private async checkParties(c: PoolClient, sender: Sender, messages: OutgoingMessage[]): Promise<void> {
    const deviceIds = new Set([sender.deviceId]);
    const identityIds = new Set<string>();
    for (const m of messages) for (const q of m.recipients) (q.kind === "device" ? deviceIds : identityIds).add(q.id);
    const { rows } = await c.query<{ kind: string; id: string; suspended: boolean }>(
      `SELECT 'device' AS kind, id, suspended FROM devices WHERE id = ANY($1)
       UNION ALL SELECT 'identity', id, false FROM identities WHERE id = ANY($2)`,
      [[...deviceIds], [...identityIds]],
    );
    const found = new Map(rows.map((r) => [`${r.kind}:${r.id}`, r]));
    if (found.get(`device:${sender.deviceId}`)?.suspended) throw new FailedPreconditionError(`device '${sender.deviceId}' is suspended`);
    for (const id of deviceIds) {
      const r = found.get(`device:${id}`);
      if (!r) throw new NotFoundError(`unknown device '${id}'`);
      if (r.suspended && id !== sender.deviceId) throw new FailedPreconditionError(`device '${id}' is suspended: nothing is queued for it`);
    }
    for (const id of identityIds) if (!found.has(`identity:${id}`)) throw new NotFoundError(`unknown identity '${id}'`);
  }

  async readEntries(queue: QueueRef, afterSeq: number, limit: number): Promise<StoredEntry[]> {
    const { rows } = await this.pool.query<{
      seq: number; message_id: string; sender_device: string; sender_identity: string; content_type: string; payload: Buffer; enqueued_at_ms: number;
    }>(
      `SELECT seq, message_id, sender_device, sender_identity, content_type, payload, enqueued_at_ms
         FROM entries WHERE kind = $1 AND queue_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
      [KIND_CODE[queue.kind], queue.id, afterSeq, limit],
    );
    return rows.map((r) => ({
      kind: queue.kind,
      queueId: queue.id,
      seq: r.seq,
      messageId: r.message_id,
      senderDevice: r.sender_device,
      senderIdentity: r.sender_identity,
      contentType: r.content_type,
      payload: new Uint8Array(r.payload),
      enqueuedAtMs: r.enqueued_at_ms,
    }));
  }

  async identityCursor(identityId: string, deviceId: string): Promise<number> {
    const { rows } = await this.pool.query<{ acked_seq: number }>(
      "SELECT acked_seq FROM identity_cursors WHERE identity_id = $1 AND device_id = $2",
      [identityId, deviceId],
    );
    return rows[0]?.acked_seq ?? 0;
  }

  /**
   * Cumulative ack. Device-queue entries up to deviceSeq are deleted. For the
   * identity queue the device's cursor moves, and entries every active
   * device of the identity has acked are deleted.
   */
  async ack(deviceId: string, identityId: string, deviceSeq: number, identitySeq: number): Promise<number> {
    return tx(this.pool, async (c) => {
      let deleted = 0;
      if (deviceSeq > 0) {
        await this.checkAckInRange(c, { kind: "device", id: deviceId }, deviceSeq);
        deleted += await this.deleteUpTo(c, { kind: "device", id: deviceId }, deviceSeq);
      }
      if (identitySeq > 0) {
        await this.checkAckInRange(c, { kind: "identity", id: identityId }, identitySeq);
        await c.query(
          `INSERT INTO identity_cursors (identity_id, device_id, acked_seq) VALUES ($1, $2, $3)
           ON CONFLICT (identity_id, device_id) DO UPDATE SET acked_seq = GREATEST(identity_cursors.acked_seq, EXCLUDED.acked_seq)`,
          [identityId, deviceId, identitySeq],
        );
        const { rows } = await c.query<{ upto: number | null }>(
          `SELECT min(COALESCE(ic.acked_seq, 0)) AS upto FROM devices d
             LEFT JOIN identity_cursors ic ON ic.identity_id = d.identity_id AND ic.device_id = d.id
            WHERE d.identity_id = $1 AND NOT d.suspended`,
          [identityId],
        );
        const upto = rows[0]?.upto ?? 0;
        if (upto > 0) deleted += await this.deleteUpTo(c, { kind: "identity", id: identityId }, upto);
      }
      return deleted;
    });
  }

  private async checkAckInRange(c: PoolClient, queue: QueueRef, seq: number): Promise<void> {
    const { rows } = await c.query<{ last_seq: number }>("SELECT last_seq FROM queues WHERE kind = $1 AND id = $2", [KIND_CODE[queue.kind], queue.id]);
    const last = rows[0]?.last_seq ?? 0;
    if (seq > last) throw new OutOfRangeError(`ack ${seq} is past the last sequence ${last} of the ${queue.kind} queue`);
  }

  private async deleteUpTo(c: PoolClient, queue: QueueRef, seq: number): Promise<number> {
    const { rows } = await c.query<{ n: number }>(
      `WITH d AS (DELETE FROM entries WHERE kind = $1 AND queue_id = $2 AND seq <= $3 RETURNING size)
       UPDATE queues SET depth = depth - (SELECT count(*) FROM d), bytes = bytes - (SELECT COALESCE(sum(size), 0) FROM d)
        WHERE kind = $1 AND id = $2 RETURNING (SELECT count(*) FROM d)::int AS n`,
      [KIND_CODE[queue.kind], queue.id, seq],
    );
    return rows[0]?.n ?? 0;
  }

  /** Deletes entries enqueued before cutoffMs, in chunks; counts them as purged. */
  async purgeOlderThan(cutoffMs: number, chunk = 5000): Promise<PurgeCount> {
    const total: PurgeCount = { messages: 0, bytes: 0, queues: [] };
    const seen = new Set<string>();
    for (;;) {
      const part = await tx(this.pool, (c) =>
        this.deleteAndCount(c, "SELECT kind, queue_id, seq FROM entries WHERE enqueued_at_ms < $1 ORDER BY enqueued_at_ms LIMIT $2", [cutoffMs, chunk]),
      );
      total.messages += part.messages;
      total.bytes += part.bytes;
      for (const q of part.queues) if (!seen.has(queueKey(q))) seen.add(queueKey(q)) && total.queues.push(q);
      if (part.messages < chunk) return total;
    }
  }

  async purgeQueue(queue: QueueRef): Promise<PurgeCount> {
    return tx(this.pool, (c) => this.deleteAndCount(c, "SELECT kind, queue_id, seq FROM entries WHERE kind = $1 AND queue_id = $2", [KIND_CODE[queue.kind], queue.id]));
  }

  /** Deletes the entries `select` names, fixes queue counters and the purge totals. */
  private async deleteAndCount(c: PoolClient, select: string, params: unknown[]): Promise<PurgeCount> {
    const { rows } = await c.query<{ kind: number; queue_id: string; n: number; b: number }>(
      `WITH victims AS (${select}),
            d AS (DELETE FROM entries e USING victims v
                   WHERE e.kind = v.kind AND e.queue_id = v.queue_id AND e.seq = v.seq RETURNING e.kind, e.queue_id, e.size),
            g AS (SELECT kind, queue_id, count(*)::bigint AS n, sum(size)::bigint AS b FROM d GROUP BY kind, queue_id),
            u AS (UPDATE queues q SET depth = q.depth - g.n, bytes = q.bytes - g.b FROM g WHERE q.kind = g.kind AND q.id = g.queue_id)
       SELECT kind, queue_id, n, b FROM g ORDER BY kind, queue_id`,
      params,
    );
    const messages = rows.reduce((s, r) => s + r.n, 0);
    const bytes = rows.reduce((s, r) => s + r.b, 0);
    if (messages) await c.query("UPDATE purge_counters SET messages = messages + $1, bytes = bytes + $2", [messages, bytes]);
    return { messages, bytes, queues: rows.map((r) => ({ kind: KIND_NAME[r.kind]!, id: r.queue_id })) };
  }

  /** Forgets idempotency records and answered challenges past their time. */
  async forgetExpired(nowMs: number, sentBeforeMs: number): Promise<void> {
    await this.pool.query("DELETE FROM used_challenges WHERE expires_at_ms < $1", [nowMs]);
    await this.pool.query("DELETE FROM sent_messages WHERE accepted_at_ms < $1", [sentBeforeMs]);
  }

  async setSuspended(deviceId: string, suspended: boolean): Promise<DeviceRecord> {
    const { rows } = await this.pool.query<{ identity_id: string; public_key: Buffer }>(
      "UPDATE devices SET suspended = $2 WHERE id = $1 RETURNING identity_id, public_key",
      [deviceId, suspended],
    );
    const r = rows[0];
    if (!r) throw new NotFoundError(`unknown device '${deviceId}'`);
    return { id: deviceId, identityId: r.identity_id, publicKey: new Uint8Array(r.public_key), suspended };
  }

  async totals(nowMs: number): Promise<RelayTotals> {
    const { rows } = await this.pool.query<{
      queues: number; depth: number; bytes: number; oldest: number | null; identities: number; devices: number; suspended: number; purged_messages: number; purged_bytes: number;
    }>(
      `SELECT (SELECT count(*) FROM queues WHERE depth > 0) AS queues,
              (SELECT COALESCE(sum(depth), 0) FROM queues)::bigint AS depth,
              (SELECT COALESCE(sum(bytes), 0) FROM queues)::bigint AS bytes,
              (SELECT min(enqueued_at_ms) FROM entries) AS oldest,
              (SELECT count(*) FROM identities) AS identities,
              (SELECT count(*) FROM devices) AS devices,
              (SELECT count(*) FROM devices WHERE suspended) AS suspended,
              p.messages AS purged_messages, p.bytes AS purged_bytes
         FROM purge_counters p`,
    );
    const r = rows[0]!;
    return {
      queues: r.queues,
      depth: r.depth,
      bytes: r.bytes,
      oldestAgeSeconds: r.oldest === null ? 0 : Math.max(0, (nowMs - r.oldest) / 1000),
      identities: r.identities,
      devices: r.devices,
      suspendedDevices: r.suspended,
      purgedMessages: r.purged_messages,
      purgedBytes: r.purged_bytes,
    };
  }

  /** The fullest queues, or those holding the oldest messages. */
  async topQueues(limit: number, order: "depth" | "oldest", nowMs: number): Promise<QueueFigures[]> {
    const { rows } = await this.pool.query<{ kind: number; id: string; depth: number; bytes: number; oldest: number | null }>(
      `SELECT q.kind, q.id, q.depth, q.bytes,
              (SELECT e.enqueued_at_ms FROM entries e WHERE e.kind = q.kind AND e.queue_id = q.id ORDER BY e.seq LIMIT 1) AS oldest
         FROM queues q WHERE q.depth > 0
        ORDER BY ${order === "depth" ? "q.depth DESC, oldest ASC" : "oldest ASC, q.depth DESC"}, q.kind, q.id
        LIMIT $1`,
      [limit],
    );
    return rows.map((r) => ({
      queue: { kind: KIND_NAME[r.kind]!, id: r.id },
      depth: r.depth,
      bytes: r.bytes,
      oldestAgeSeconds: r.oldest === null ? 0 : Math.max(0, (nowMs - r.oldest) / 1000),
    }));
  }
}
