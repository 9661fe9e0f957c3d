/**
 * The relay's SQL. Every method is one transaction (or one statement); the
 * service layer above does validation, signatures and wake-ups.
 */
import { tx, type Pool, type PoolClient } from "../common/db.js";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, OutOfRangeError, ResourceExhaustedError } from "../common/errors.js";
import {
  compareQueues,
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
import type { ChangeOp, Journal, QueueState } from "./replication/changes.js";
import { ackAtOnce, enqueueAtOnce } from "./fast-path.js";

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

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

export class RelayStore {
  /** With a journal (a replicating primary), every write reports its changes inside its transaction. */
  constructor(private readonly pool: Pool, private readonly journal?: Journal) {}

  /**
   * One write transaction. `ops` collects what it changed; the journal sees
   * them last, before COMMIT, and can still veto the commit.
   */
  private write<T>(fn: (c: PoolClient, ops: ChangeOp[]) => Promise<T>): Promise<T> {
    return tx(this.pool, async (c) => {
      const ops: ChangeOp[] = [];
      const result = await fn(c, ops);
      if (this.journal && ops.length) await this.journal.record(c, ops);
      return result;
    });
  }

  async registerIdentity(id: string, publicKey: Uint8Array, nowMs: number): Promise<boolean> {
    if (this.journal) {
      return this.write(async (c, ops) => {
        const created = await this.insertIdentity(c, id, publicKey, nowMs);
        if (created) ops.push({ t: "identity", id, publicKey: b64(publicKey), createdAtMs: nowMs });
        return created;
      });
    }
    return this.insertIdentity(this.pool, id, publicKey, nowMs);
  }

  private async insertIdentity(db: Pool | PoolClient, id: string, publicKey: Uint8Array, nowMs: number): Promise<boolean> {
    const { rows } = await db.query<{ public_key: Buffer; inserted: boolean }>(
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
    if (this.journal) {
      return this.write(async (c, ops) => {
        const created = await this.insertDevice(c, id, identityId, publicKey, nowMs);
        if (created) ops.push({ t: "device", id, identityId, publicKey: b64(publicKey), createdAtMs: nowMs });
        return created;
      });
    }
    return this.insertDevice(this.pool, id, identityId, publicKey, nowMs);
  }

  private async insertDevice(db: Pool | PoolClient, id: string, identityId: string, publicKey: Uint8Array, nowMs: number): Promise<boolean> {
    const { rows } = await db.query<{ identity_id: string; public_key: Buffer; inserted: boolean }>(
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
    const insert = "INSERT INTO used_challenges (nonce, expires_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    if (!this.journal) return (await this.pool.query(insert, [nonce, expiresAtMs])).rowCount === 1;
    // Replicated, so that a promoted secondary refuses a replayed answer too.
    return this.write(async (c, ops) => {
      const used = (await c.query(insert, [nonce, expiresAtMs])).rowCount === 1;
      if (used) ops.push({ t: "challenge", nonce: b64(nonce), expiresAtMs });
      return used;
    });
  }

  /**
   * Queues a batch in one transaction: all messages or none. Messages whose
   * id this sender used before are not queued again; their first outcome is
   * returned with duplicate=true.
   */
  async send(sender: Sender, messages: OutgoingMessage[], limits: Limits, nowMs: number): Promise<SendOutcome[]> {
    const [result] = await this.sendMany([{ sender, messages }], limits, nowMs);
    if (result instanceof Error) throw result;
    return result!;
  }

  /**
   * Several senders' requests in one transaction (group commit): one commit,
   * each queue row locked once for all of them, and a constant number of
   * statements. A request that fails (unknown recipient, suspended device,
   * full queue) gets its error; the others are committed.
   */
  async sendMany(requests: SendRequest[], limits: Limits, nowMs: number): Promise<Array<SendOutcome[] | Error>> {
    // The common case in one round trip (not when journaling: see fast-path.ts).
    if (!this.journal) {
      const done = await enqueueAtOnce(this.pool, requests, limits, nowMs);
      if (done) return done;
    }
    try {
      return await this.write((c, ops) => this.enqueue(c, ops, requests, limits, nowMs));
    } catch (err) {
      if (!(err instanceof QuotaReached)) throw err;
      if (requests.length === 1) throw err.refusal(limits);
    }
    // A queue would pass its quota: find out which requests, one at a time.
    return this.write(async (c, ops) => {
      await this.lockQueues(c, requests);
      const results: Array<SendOutcome[] | Error> = [];
      for (const request of requests) {
        await c.query("SAVEPOINT parley_send");
        try {
          results.push((await this.enqueue(c, ops, [request], limits, nowMs))[0]!);
          await c.query("RELEASE SAVEPOINT parley_send");
        } catch (err) {
          if (!(err instanceof QuotaReached)) throw err;
          await c.query("ROLLBACK TO SAVEPOINT parley_send");
          results.push(err.refusal(limits));
        }
      }
      return results;
    });
  }

  /** Locks every existing queue row the requests touch, in one fixed order, so concurrent groups cannot deadlock. */
  private async lockQueues(c: PoolClient, requests: SendRequest[]): Promise<void> {
    const touched = new Map<string, QueueRef>();
    for (const r of requests) for (const m of r.messages) for (const q of m.recipients) touched.set(queueKey(q), q);
    const sorted = [...touched.values()].sort(compareQueues);
    await c.query(
      `SELECT 1 FROM queues q JOIN unnest($1::smallint[], $2::text[]) AS t(k, i) ON q.kind = t.k AND q.id = t.i
        ORDER BY q.kind, q.id FOR UPDATE OF q`,
      [sorted.map((q) => KIND_CODE[q.kind]), sorted.map((q) => q.id)],
    );
  }

  /**
   * The requests in a constant number of statements: claim the message ids,
   * check the parties of the new messages, then one statement bumps the
   * queues, stores the entries and the receipts. Throws QuotaReached (the
   * caller rolls back) when a queue would pass its quota.
   */
  private async enqueue(c: PoolClient, ops: ChangeOp[], requests: SendRequest[], limits: Limits, nowMs: number): Promise<Array<SendOutcome[] | Error>> {
    const key = (sender: string, mid: string) => `${sender}\u0000${mid}`;
    const claimRows = requests.flatMap((r) => r.messages.map((m) => [r.sender.deviceId, m.messageId] as const));
    const { rows: claimed } = await c.query<{ sender_device: string; message_id: string }>(
      `INSERT INTO sent_messages (sender_device, message_id, accepted_at_ms)
       SELECT sd, mid, $3 FROM unnest($1::text[], $2::text[]) AS t(sd, mid)
       ON CONFLICT DO NOTHING RETURNING sender_device, message_id`,
      [claimRows.map((r) => r[0]), claimRows.map((r) => r[1]), nowMs],
    );
    const fresh = new Set(claimed.map((r) => key(r.sender_device, r.message_id)));
    // The first request of the group with an id queues it; later ones with the
    // same id, and ids accepted before this group, are duplicates.
    const toQueue = requests.map((r) => r.messages.filter((m) => fresh.delete(key(r.sender.deviceId, m.messageId))));

    // Only new messages need their parties: a resend gets its first receipt.
    const results: Array<SendOutcome[] | Error | undefined> = requests.map(() => undefined);
    const found = await this.findParties(c, requests.map((r) => r.sender.deviceId), toQueue.flat());
    const failedKeys = new Map<string, Error>();
    requests.forEach((r, i) => {
      const problem = partyProblem(found, r.sender, toQueue[i]!);
      if (!problem) return;
      results[i] = problem;
      for (const m of toQueue[i]!) failedKeys.set(key(r.sender.deviceId, m.messageId), problem);
      toQueue[i] = [];
    });
    if (failedKeys.size) {
      const released = [...failedKeys.keys()].map((k) => k.split("\u0000") as [string, string]);
      await c.query(
        `DELETE FROM sent_messages s USING unnest($1::text[], $2::text[]) AS t(sd, mid) WHERE s.sender_device = t.sd AND s.message_id = t.mid`,
        [released.map((k) => k[0]), released.map((k) => k[1])],
      );
    }

    const earlier = requests.flatMap((r, i) =>
      results[i] ? [] : r.messages.filter((m) => !toQueue[i]!.includes(m)).map((m) => [r.sender.deviceId, m.messageId] as const),
    );
    const previous = new Map<string, SendOutcome>();
    if (earlier.length) {
      const { rows } = await c.query<{ sender_device: string; message_id: string; accepted_at_ms: number; queued: SendOutcome["queued"] | null; receipt: string | null }>(
        `SELECT s.sender_device, s.message_id, s.accepted_at_ms, s.queued, s.receipt FROM sent_messages s
           JOIN unnest($1::text[], $2::text[]) AS t(sd, mid) ON s.sender_device = t.sd AND s.message_id = t.mid`,
        [earlier.map((e) => e[0]), earlier.map((e) => e[1])],
      );
      for (const r of rows) {
        const queued = r.queued ?? (r.receipt === null ? [] : parseReceiptText(r.receipt));
        previous.set(key(r.sender_device, r.message_id), { messageId: r.message_id, duplicate: true, acceptedAtMs: r.accepted_at_ms, queued });
      }
    }

    const perQueue = new Map<string, { queue: QueueRef; count: number; bytes: number }>();
    for (const m of toQueue.flat()) {
      for (const q of m.recipients) {
        const agg = perQueue.get(queueKey(q)) ?? { queue: q, count: 0, bytes: 0 };
        agg.count++;
        agg.bytes += m.payload.length;
        perQueue.set(queueKey(q), agg);
      }
    }
    const queueStates: QueueState[] = [];
    const nextSeq = new Map<string, number>();
    if (perQueue.size) {
      // Bumping the queues takes their row locks, in a fixed order so
      // concurrent senders cannot deadlock; one statement also stores the
      // entries and the receipts, so the locks are held only until COMMIT.
      const bumps = [...perQueue.values()].sort((a, b) => compareQueues(a.queue, b.queue));
      const ordinal = new Map<string, number>();
      const cols = { kind: [] as number[], queue: [] as string[], ord: [] as number[], cnt: [] as number[], rord: [] as number[], mid: [] as string[], payload: [] as Buffer[], ctype: [] as string[], size: [] as number[], sd: [] as string[], si: [] as string[] };
      requests.forEach(({ sender }, i) => {
        for (const m of toQueue[i]!) {
          m.recipients.forEach((q, r) => {
            const ord = (ordinal.get(queueKey(q)) ?? 0) + 1;
            ordinal.set(queueKey(q), ord);
            cols.kind.push(KIND_CODE[q.kind]);
            cols.queue.push(q.id);
            cols.ord.push(ord);
            cols.cnt.push(perQueue.get(queueKey(q))!.count);
            cols.rord.push(r);
            cols.mid.push(m.messageId);
            cols.payload.push(Buffer.from(m.payload));
            cols.ctype.push(m.contentType);
            cols.size.push(m.payload.length);
            cols.sd.push(sender.deviceId);
            cols.si.push(sender.identityId);
          });
        }
      });
      const { rows } = await c.query<{ kind: number; id: string; last_seq: number; depth: number; bytes: number }>(
        `WITH bumped AS (
           INSERT INTO queues AS q (kind, id, last_seq, depth, bytes)
           SELECT * FROM unnest($1::smallint[], $2::text[], $3::bigint[], $3::bigint[], $4::bigint[])
           ON CONFLICT (kind, id) DO UPDATE SET last_seq = q.last_seq + EXCLUDED.last_seq,
             depth = q.depth + EXCLUDED.depth, bytes = q.bytes + EXCLUDED.bytes
           RETURNING kind, id, last_seq, depth, bytes),
         input AS (
           SELECT * FROM unnest($5::smallint[], $6::text[], $7::int[], $8::int[], $9::int[], $10::text[], $11::text[], $12::bytea[], $13::int[], $14::text[], $15::text[])
             AS t(k, q, ord, cnt, rord, mid, ct, p, sz, sd, si)),
         ins AS (
           INSERT INTO entries (kind, queue_id, seq, message_id, sender_device, sender_identity, content_type, payload, size, enqueued_at_ms)
           SELECT i.k, i.q, b.last_seq - i.cnt + i.ord, i.mid, i.sd, i.si, i.ct, i.p, i.sz, $16
             FROM input i JOIN bumped b ON b.kind = i.k AND b.id = i.q
           RETURNING kind, queue_id, seq, message_id, sender_device),
         receipts AS (
           UPDATE sent_messages s SET queued = v.queued
             FROM (SELECT x.sender_device, x.message_id,
                          jsonb_agg(jsonb_build_object('queue', jsonb_build_object('kind', CASE x.kind WHEN 1 THEN 'device' ELSE 'identity' END, 'id', x.queue_id), 'seq', x.seq) ORDER BY i.rord) AS queued
                     FROM ins x JOIN input i ON i.sd = x.sender_device AND i.mid = x.message_id AND i.k = x.kind AND i.q = x.queue_id
                    GROUP BY x.sender_device, x.message_id) v
            WHERE s.sender_device = v.sender_device AND s.message_id = v.message_id)
         SELECT kind, id, last_seq, depth, bytes FROM bumped`,
        [
          bumps.map((b) => KIND_CODE[b.queue.kind]), bumps.map((b) => b.queue.id), bumps.map((b) => b.count), bumps.map((b) => b.bytes),
          cols.kind, cols.queue, cols.ord, cols.cnt, cols.rord, cols.mid, cols.ctype, cols.payload, cols.size, cols.sd, cols.si, nowMs,
        ],
      );
      for (const r of rows) {
        const queue = { kind: KIND_NAME[r.kind]!, id: r.id };
        if (r.depth > limits.maxQueueMessages || r.bytes > limits.maxQueueBytes) throw new QuotaReached(queue);
        queueStates.push([r.kind, r.id, r.last_seq, r.depth, r.bytes]);
        nextSeq.set(queueKey(queue), r.last_seq - perQueue.get(queueKey(queue))!.count + 1);
      }
    }

    const firstOutcome = new Map<string, SendOutcome>();
    requests.forEach(({ sender }, i) => {
      const outcomes = new Map<string, SendOutcome>();
      for (const m of toQueue[i]!) {
        const queued = m.recipients.map((q) => {
          const seq = nextSeq.get(queueKey(q))!;
          nextSeq.set(queueKey(q), seq + 1);
          return { queue: q, seq };
        });
        const o = { messageId: m.messageId, duplicate: false, acceptedAtMs: nowMs, queued };
        outcomes.set(m.messageId, o);
        firstOutcome.set(key(sender.deviceId, m.messageId), o);
      }
      if (this.journal && outcomes.size) ops.push(sendChange(sender, toQueue[i]!, outcomes, queueStates, nowMs));
    });
    return requests.map(({ sender, messages }, i) => {
      if (results[i]) return results[i]!;
      const mine = new Set(toQueue[i]);
      const outcomes: SendOutcome[] = [];
      for (const m of messages) {
        const k = key(sender.deviceId, m.messageId);
        const first = firstOutcome.get(k);
        if (mine.has(m)) outcomes.push(first!);
        else if (first) outcomes.push({ ...first, duplicate: true });
        else if (previous.has(k)) outcomes.push(previous.get(k)!);
        else return failedKeys.get(k)!; // its first request in this group was refused
      }
      return outcomes;
    });
  }

  /** The devices (with their suspension) and identities among senders and recipients that exist. */
  private async findParties(c: PoolClient, senderDevices: string[], messages: OutgoingMessage[]): Promise<Parties> {
    const deviceIds = new Set(senderDevices);
    const identityIds = new Set<string>();
    for (const m of messages) for (const q of m.recipients) (q.kind === "device" ? deviceIds : identityIds).add(q.id);
    const { rows } = await c.query<{ kind: string; id: string; suspended: boolean }>(
      `SELECT 'device' AS kind, id, suspended FROM devices WHERE id = ANY($1)
       UNION ALL SELECT 'identity', id, false FROM identities WHERE id = ANY($2)`,
      [[...deviceIds], [...identityIds]],
    );
    return new Map(rows.map((r) => [`${r.kind}:${r.id}`, r.suspended]));
  }

  async readEntries(queue: QueueRef, afterSeq: number, limit: number): Promise<StoredEntry[]> {
    const { rows } = await this.pool.query<{
      seq: number; message_id: string; sender_device: string; sender_identity: string; content_type: string; payload: Buffer; enqueued_at_ms: number;
    }>({
      // Named: every wake-up of every stream runs it; parsed and planned once per connection.
      name: "relay_read_entries",
      text: `SELECT seq, message_id, sender_device, sender_identity, content_type, payload, enqueued_at_ms
               FROM entries WHERE kind = $1 AND queue_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
      values: [KIND_CODE[queue.kind], queue.id, afterSeq, limit],
    });
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
    if (!this.journal) {
      const deleted = await ackAtOnce(this.pool, deviceId, identityId, deviceSeq, identitySeq);
      if (deleted !== undefined) return deleted;
    }
    return this.write(async (c, ops) => {
      let deleted = 0;
      if (deviceSeq > 0) {
        await this.checkAckInRange(c, { kind: "device", id: deviceId }, deviceSeq);
        deleted += await this.deleteUpTo(c, { kind: "device", id: deviceId }, deviceSeq, ops);
      }
      if (identitySeq > 0) {
        await this.checkAckInRange(c, { kind: "identity", id: identityId }, identitySeq);
        await c.query(
          `INSERT INTO identity_cursors (identity_id, device_id, acked_seq) VALUES ($1, $2, $3)
           ON CONFLICT (identity_id, device_id) DO UPDATE SET acked_seq = GREATEST(identity_cursors.acked_seq, EXCLUDED.acked_seq)`,
          [identityId, deviceId, identitySeq],
        );
        ops.push({ t: "cursor", identityId, deviceId, ackedSeq: identitySeq });
        const { rows } = await c.query<{ upto: number | null }>(
          `SELECT min(COALESCE(ic.acked_seq, 0)) AS upto FROM devices d
             LEFT JOIN identity_cursors ic ON ic.identity_id = d.identity_id AND ic.device_id = d.id
            WHERE d.identity_id = $1 AND NOT d.suspended`,
          [identityId],
        );
        const upto = rows[0]?.upto ?? 0;
        if (upto > 0) deleted += await this.deleteUpTo(c, { kind: "identity", id: identityId }, upto, ops);
      }
      return deleted;
    });
  }

  private async checkAckInRange(c: PoolClient, queue: QueueRef, seq: number): Promise<void> {
    const { rows } = await c.query<{ last_seq: number }>("SELECT last_seq FROM queues WHERE kind = $1 AND id = $2", [KIND_CODE[queue.kind], queue.id]);
    const last = rows[0]?.last_seq ?? 0;
    if (seq > last) throw new OutOfRangeError(`ack ${seq} is past the last sequence ${last} of the ${queue.kind} queue`);
  }

  private async deleteUpTo(c: PoolClient, queue: QueueRef, seq: number, ops: ChangeOp[]): Promise<number> {
    const { rows } = await c.query<{ n: number; last_seq: number; depth: number; bytes: number }>(
      `WITH d AS (DELETE FROM entries WHERE kind = $1 AND queue_id = $2 AND seq <= $3 RETURNING size)
       UPDATE queues SET depth = depth - (SELECT count(*) FROM d), bytes = bytes - (SELECT COALESCE(sum(size), 0) FROM d)
        WHERE kind = $1 AND id = $2 RETURNING (SELECT count(*) FROM d)::int AS n, last_seq, depth, bytes`,
      [KIND_CODE[queue.kind], queue.id, seq],
    );
    const r = rows[0];
    if (r?.n) ops.push({ t: "deleteUpTo", kind: KIND_CODE[queue.kind], queueId: queue.id, seq, queue: [KIND_CODE[queue.kind], queue.id, r.last_seq, r.depth, r.bytes] });
    return r?.n ?? 0;
  }

  /** Deletes entries enqueued before cutoffMs, in chunks; counts them as purged. */
  async purgeOlderThan(cutoffMs: number, chunk = 5000): Promise<PurgeCount> {
    const total: PurgeCount = { messages: 0, bytes: 0, queues: [] };
    const seen = new Set<string>();
    for (;;) {
      const part = await this.write((c, ops) =>
        this.deleteAndCount(c, ops, "SELECT kind, queue_id, seq FROM entries WHERE enqueued_at_ms < $1 ORDER BY enqueued_at_ms LIMIT $2", [cutoffMs, chunk]),
      );
      total.messages += part.messages;
      total.bytes += part.bytes;
      for (const q of part.queues) if (!seen.has(queueKey(q))) seen.add(queueKey(q)) && total.queues.push(q);
      if (part.messages < chunk) return total;
    }
  }

  async purgeQueue(queue: QueueRef): Promise<PurgeCount> {
    return this.write((c, ops) => this.deleteAndCount(c, ops, "SELECT kind, queue_id, seq FROM entries WHERE kind = $1 AND queue_id = $2", [KIND_CODE[queue.kind], queue.id]));
  }

  /** Deletes the entries `select` names, fixes queue counters and the purge totals. */
  private async deleteAndCount(c: PoolClient, ops: ChangeOp[], select: string, params: unknown[]): Promise<PurgeCount> {
    const { rows } = await c.query<{ kind: number; queue_id: string; n: number; b: number; seqs: number[]; last_seq: number; depth: number; bytes: number }>(
      `WITH victims AS (${select}),
            d AS (DELETE FROM entries e USING victims v
                   WHERE e.kind = v.kind AND e.queue_id = v.queue_id AND e.seq = v.seq RETURNING e.kind, e.queue_id, e.seq, e.size),
            g AS (SELECT kind, queue_id, count(*)::bigint AS n, sum(size)::bigint AS b, array_agg(seq) AS seqs FROM d GROUP BY kind, queue_id),
            u AS (UPDATE queues q SET depth = q.depth - g.n, bytes = q.bytes - g.b FROM g WHERE q.kind = g.kind AND q.id = g.queue_id
                  RETURNING q.kind, q.id, q.last_seq, q.depth, q.bytes)
       SELECT g.kind, g.queue_id, g.n, g.b, g.seqs, u.last_seq, u.depth, u.bytes FROM g JOIN u ON u.kind = g.kind AND u.id = g.queue_id
        ORDER BY g.kind, g.queue_id`,
      params,
    );
    const messages = rows.reduce((s, r) => s + r.n, 0);
    const bytes = rows.reduce((s, r) => s + r.b, 0);
    if (messages) {
      const counters = await c.query<{ messages: number; bytes: number }>(
        "UPDATE purge_counters SET messages = messages + $1, bytes = bytes + $2 RETURNING messages, bytes",
        [messages, bytes],
      );
      const victims = rows.flatMap((r) => r.seqs.map((seq) => [r.kind, r.queue_id, Number(seq)] as const));
      ops.push({
        t: "purge",
        kind: victims.map((v) => v[0]),
        queueId: victims.map((v) => v[1]),
        seq: victims.map((v) => v[2]),
        queues: rows.map((r) => [r.kind, r.queue_id, r.last_seq, r.depth, r.bytes]),
        counters: [counters.rows[0]!.messages, counters.rows[0]!.bytes],
      });
    }
    return { messages, bytes, queues: rows.map((r) => ({ kind: KIND_NAME[r.kind]!, id: r.queue_id })) };
  }

  /** Forgets idempotency records and answered challenges past their time. */
  async forgetExpired(nowMs: number, sentBeforeMs: number): Promise<void> {
    if (this.journal) {
      // Replicated so that a secondary forgets the same idempotency records.
      await this.write(async (c, ops) => {
        await c.query("DELETE FROM used_challenges WHERE expires_at_ms < $1", [nowMs]);
        await c.query("DELETE FROM sent_messages WHERE accepted_at_ms < $1", [sentBeforeMs]);
        ops.push({ t: "forget", challengesBeforeMs: nowMs, sentBeforeMs });
      });
      return;
    }
    await this.pool.query("DELETE FROM used_challenges WHERE expires_at_ms < $1", [nowMs]);
    await this.pool.query("DELETE FROM sent_messages WHERE accepted_at_ms < $1", [sentBeforeMs]);
  }

  async setSuspended(deviceId: string, suspended: boolean): Promise<DeviceRecord> {
    return this.write(async (c, ops) => {
      const { rows } = await c.query<{ identity_id: string; public_key: Buffer }>(
        "UPDATE devices SET suspended = $2 WHERE id = $1 RETURNING identity_id, public_key",
        [deviceId, suspended],
      );
      const r = rows[0];
      if (!r) throw new NotFoundError(`unknown device '${deviceId}'`);
      ops.push({ t: "suspend", deviceId, suspended });
      return { id: deviceId, identityId: r.identity_id, publicKey: new Uint8Array(r.public_key), suspended };
    });
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

/** The replicated form of one send transaction: payloads once, entries by index. */
/** `kind:id` → suspended, for the parties that exist. */
type Parties = Map<string, boolean>;

function partyProblem(found: Parties, sender: Sender, messages: OutgoingMessage[]): Error | undefined {
  if (found.get(`device:${sender.deviceId}`)) return new FailedPreconditionError(`device '${sender.deviceId}' is suspended`);
  for (const m of messages) {
    for (const q of m.recipients) {
      const suspended = found.get(`${q.kind}:${q.id}`);
      if (suspended === undefined) return new NotFoundError(`unknown ${q.kind} '${q.id}'`);
      if (suspended && q.id !== sender.deviceId) return new FailedPreconditionError(`device '${q.id}' is suspended: nothing is queued for it`);
    }
  }
  if (!found.has(`device:${sender.deviceId}`)) return new NotFoundError(`unknown device '${sender.deviceId}'`);
  return undefined;
}

/** The one-statement send's receipt text (migration 32): "<d|i><seq>:<queue id>" per recipient, comma-separated. */
export function parseReceiptText(text: string): SendOutcome["queued"] {
  if (!text) return [];
  return text.split(",").map((part) => {
    const colon = part.indexOf(":");
    return { queue: { kind: part[0] === "d" ? "device" : "identity", id: part.slice(colon + 1) }, seq: Number(part.slice(1, colon)) };
  });
}

export interface SendRequest {
  sender: Sender;
  messages: OutgoingMessage[];
}

/** A queue would pass its quota: the transaction is rolled back (and a group redone request by request). */
class QuotaReached extends Error {
  constructor(readonly queue: QueueRef) {
    super(`queue ${queue.kind}:${queue.id} would pass its quota`);
  }

  refusal(limits: Limits): ResourceExhaustedError {
    return new ResourceExhaustedError(
      `the ${this.queue.kind} queue '${this.queue.id}' is full (quota ${limits.maxQueueMessages} messages / ${limits.maxQueueBytes} bytes)`,
    );
  }
}

function sendChange(sender: Sender, toQueue: OutgoingMessage[], outcomes: Map<string, SendOutcome>, queues: QueueState[], nowMs: number): ChangeOp {
  const payloads: string[] = [];
  const entries: Array<{ kind: number; queueId: string; seq: number; messageId: string; contentType: string; payload: number; size: number }> = [];
  for (const m of toQueue) {
    const index = payloads.push(b64(m.payload)) - 1;
    for (const q of outcomes.get(m.messageId)!.queued) {
      entries.push({ kind: KIND_CODE[q.queue.kind], queueId: q.queue.id, seq: q.seq, messageId: m.messageId, contentType: m.contentType, payload: index, size: m.payload.length });
    }
  }
  return {
    t: "send",
    senderDevice: sender.deviceId,
    senderIdentity: sender.identityId,
    acceptedAtMs: nowMs,
    sent: toQueue.map((m) => ({ messageId: m.messageId, queued: outcomes.get(m.messageId)!.queued })),
    payloads,
    entries,
    queues,
  };
}
