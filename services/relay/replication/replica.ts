/**
 * One replica of a replicated relay: the primary (commits, publishing each
 * change to the stream before COMMIT) or a secondary (applies the stream to
 * its own database). Which one it is follows from the stream: the replica
 * named by the newest epoch claim is the primary.
 *
 *   const replica = new Replica({ pool, stream, replicaName: "relay-0", bootstrapPrimary: true, ... });
 *   const store = new RelayStore(pool, replica);   // the store's writes go through record()
 *   await replica.start();
 *   await replica.promote(30_000);                 // on the secondary, to fail over
 *
 * Nothing acknowledged is lost: a sender hears OK only after JetStream
 * stored the change and Postgres committed it, and a promoted secondary
 * applies the whole stream up to its own claim before it serves. A stale
 * primary cannot write after a claim: each append names the stream sequence
 * it expects to follow, and a claim in between makes it fail, which rolls
 * the transaction back (the client gets UNAVAILABLE and retries elsewhere).
 */
import { EventEmitter } from "node:events";
import type { Clock } from "../../common/clock.js";
import { tx, type Pool, type PoolClient } from "../../common/db.js";
import { FailedPreconditionError, UnavailableError } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import { applyChanges, type ChangeOp, type Journal } from "./changes.js";
import { PART_BYTES, type ChangeStream, type Follower, type StreamEntry } from "./change-stream.js";
import { replicationMetrics, type ReplicationMetrics } from "./metrics.js";

export type ReplicaRole = "primary" | "secondary" | "syncing";

export interface ReplicaOptions {
  relayId: string;
  replicaName: string;
  /** Claim the relay at start if no replica holds it yet (`--role primary`). */
  bootstrapPrimary: boolean;
  pool: Pool;
  stream: ChangeStream;
  clock: Clock;
  log: Logger;
}

/** This database's place in the stream (the replication_state row). */
export interface Position {
  change: number;
  streamSeq: number;
  epoch: number;
  primary: string;
  lastCommitMs: number;
}

export interface ReplicationStatus extends Position {
  role: ReplicaRole;
  replica: string;
  stream: string;
  behindMessages: number;
  behindSeconds: number;
  needsRebuild: string;
}

const EPOCH_CHECK_MS = 2000;

export class Replica implements Journal {
  private roleNow: ReplicaRole = "syncing";
  private pos: Position = { change: 0, streamSeq: 0, epoch: 0, primary: "", lastCommitMs: 0 };
  private follower: Follower | undefined;
  /** Next stream sequence the follower must see; a larger one means the stream lost what we need. */
  private expectSeq = 1;
  /** Parts read so far of a change split over several stream messages, and which change they belong to. */
  private parts = new Map<number, Uint8Array>();
  private partsOf = 0;
  private behind = 0;
  private needsRebuild = "";
  /** Set by demote(): stay secondary even while holding the epoch, until promoted. */
  private standingDown = false;
  private resyncing: Promise<void> | undefined;
  private readonly events = new EventEmitter();
  private readonly metrics: ReplicationMetrics;
  private timers: NodeJS.Timeout[] = [];
  private unwatch: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly o: ReplicaOptions) {
    this.metrics = replicationMetrics();
    this.events.setMaxListeners(0);
  }

  get role(): ReplicaRole {
    return this.roleNow;
  }

  get name(): string {
    return this.o.replicaName;
  }

  /** Notified whenever the role changes (the service ends fetch streams when it stops being primary). */
  onRoleChange(listener: (role: ReplicaRole, reason: string) => void): void {
    this.events.on("role", listener);
  }

  /** Catches up with the stream, then serves as primary or follows as secondary. */
  async start(): Promise<void> {
    await this.o.stream.ensure();
    this.unwatch = this.o.stream.watchEpochs((epoch, primary) => this.onForeignClaim(epoch, primary));
    this.timers.push(setInterval(() => void this.checkEpoch(), EPOCH_CHECK_MS).unref());
    this.timers.push(setInterval(() => void this.refreshLag(), 1000).unref());
    await this.resync("starting");
    if (this.o.bootstrapPrimary && !this.pos.primary && !this.needsRebuild) {
      this.o.log.info({ replica: this.name }, "no replica holds the relay yet: claiming it");
      await this.promote(0);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.unwatch?.();
    await this.stopFollower();
    this.events.removeAllListeners();
  }

  /** Journal: called last inside each write transaction of the store. */
  async record(c: PoolClient, ops: ChangeOp[]): Promise<void> {
    if (this.roleNow !== "primary") throw this.notPrimary();
    const body = Buffer.from(JSON.stringify(ops));
    const parts: Uint8Array[] = [];
    for (let at = 0; at < body.length || parts.length === 0; at += PART_BYTES) parts.push(body.subarray(at, at + PART_BYTES));
    const now = this.o.clock.now();
    // This row lock orders commits: the next writer waits here until we commit or roll back.
    const { rows } = await c.query<{ change_seq: number; stream_seq: number; epoch: number; primary_replica: string }>(
      `UPDATE replication_state SET change_seq = change_seq + 1, stream_seq = stream_seq + $1, last_commit_ms = $2
       RETURNING change_seq, stream_seq, epoch, primary_replica`,
      [parts.length, now],
    );
    const r = rows[0]!;
    if (this.roleNow !== "primary" || r.primary_replica !== this.o.replicaName) throw this.notPrimary();
    const started = performance.now();
    try {
      await this.o.stream.append({ change: r.change_seq, epoch: r.epoch, primary: this.o.replicaName, atMs: now }, parts, r.stream_seq - parts.length);
    } catch (err) {
      this.fence(`publishing change ${r.change_seq} failed: ${(err as Error).message}`);
      throw new UnavailableError(`relay '${this.o.relayId}' could not replicate the change (${(err as Error).message}); nothing was committed, retry`);
    }
    this.metrics.publishSeconds.observe({ relay: this.o.relayId }, (performance.now() - started) / 1000);
    this.pos = { change: r.change_seq, streamSeq: r.stream_seq, epoch: r.epoch, primary: r.primary_replica, lastCommitMs: now };
  }

  /**
   * Makes this replica the primary: claims the next epoch at the end of the
   * stream, applies everything before the claim, then serves.
   */
  async promote(timeoutMs: number): Promise<ReplicationStatus> {
    if (this.roleNow === "primary") return this.status();
    if (this.needsRebuild) throw new FailedPreconditionError(`replica '${this.name}' cannot be promoted: ${this.needsRebuild}`);
    this.standingDown = false;
    const latest = await this.o.stream.latestEpoch();
    const epoch = Math.max(this.pos.epoch, latest?.epoch ?? 0) + 1;
    const claimSeq = await this.o.stream.claimEpoch(epoch, this.name, this.o.clock.now());
    this.o.log.info({ epoch, claimSeq, replica: this.name }, "claimed the relay; applying the stream up to the claim");
    await this.resync(`promoted (epoch ${epoch})`, timeoutMs);
    if ((this.roleNow as ReplicaRole) !== "primary") {
      throw new UnavailableError(`replica '${this.name}' claimed epoch ${epoch} but '${this.pos.primary}' claimed after it; it stays ${this.roleNow}`);
    }
    this.metrics.promotions.inc({ relay: this.o.relayId });
    return this.status();
  }

  /** Stops accepting writes and follows the stream, until promoted again (switchover: demote, then promote the other). */
  async demote(): Promise<ReplicationStatus> {
    this.standingDown = true;
    if (this.roleNow === "primary") this.setRole("syncing", "demoted by the operator");
    await this.resync("demoted");
    return this.status();
  }

  async status(): Promise<ReplicationStatus> {
    return {
      ...this.pos,
      role: this.roleNow,
      replica: this.name,
      stream: this.o.stream.name,
      behindMessages: this.roleNow === "primary" ? 0 : this.behind,
      behindSeconds: this.behindSeconds(),
      needsRebuild: this.needsRebuild,
    };
  }

  /** Position after a rebuild replaced the database's content. */
  async reload(): Promise<void> {
    this.needsRebuild = "";
    await this.stopFollower();
    // The database's content was replaced: its position is the truth, even if behind the old one.
    this.pos = await readPosition(this.o.pool);
    await this.resync("rebuilt");
  }

  /** Stops applying (a rebuild is about to replace the tables); writes are refused meanwhile. */
  async pause(reason: string): Promise<void> {
    if (this.roleNow === "primary") this.setRole("syncing", reason);
    this.roleNow = "syncing";
    await this.stopFollower();
  }

  /**
   * Applies the stream up to its end, then
   * takes the role the stream gives this replica. Concurrent calls share one pass.
   */
  resync(reason: string, timeoutMs = 0): Promise<void> {
    const run = async () => {
      if (this.roleNow === "primary") this.setRole("syncing", reason);
      // Never step back: a running follower may commit (and record in this.pos) a newer
      // position, e.g. the claim promote() just appended, while this read is under way;
      // taking the older read would make a promotion think someone claimed after it.
      const read = await readPosition(this.o.pool);
      if (read.streamSeq >= this.pos.streamSeq) this.pos = read;
      await this.startFollower();
      for (;;) {
        const target = (await this.o.stream.bounds()).last;
        await this.waitApplied(target, timeoutMs);
        if (this.needsRebuild) return;
        if (this.pos.primary !== this.name || this.standingDown) {
          this.setRole("secondary", reason);
          return;
        }
        // The stream says we hold the relay: stop following, unless more arrived meanwhile.
        const readUpTo = this.expectSeq - 1;
        await this.stopFollower();
        const last = (await this.o.stream.bounds()).last;
        if (last > this.pos.streamSeq && last === readUpTo && this.parts.size) {
          // The tail holds only the first parts of a change whose append failed (its
          // transaction rolled back): step over them, or no append could follow.
          await this.o.pool.query("UPDATE replication_state SET stream_seq = $1 WHERE stream_seq < $1", [last]);
          this.o.log.warn({ from: this.pos.streamSeq + 1, to: last }, "skipping parts of a change that was never committed");
          this.pos = await readPosition(this.o.pool);
        }
        if (last === this.pos.streamSeq) {
          this.setRole("primary", reason);
          return;
        }
        await this.startFollower();
      }
    };
    const p = (this.resyncing ?? Promise.resolve()).catch(() => undefined).then(run);
    this.resyncing = p.finally(() => {
      if (this.resyncing === p) this.resyncing = undefined;
    });
    return p;
  }

  /** Throws UNAVAILABLE unless this replica is the primary now. */
  assertPrimary(): void {
    if (this.roleNow !== "primary") throw this.notPrimary();
  }

  private notPrimary(): UnavailableError {
    const primary = this.pos.primary && this.pos.primary !== this.name ? `; the primary is '${this.pos.primary}'` : "";
    return new UnavailableError(`replica '${this.name}' of relay '${this.o.relayId}' is ${this.roleNow}, not accepting writes${primary}`);
  }

  /** Stops writes at once and finds out from the stream what we are now. */
  private fence(reason: string): void {
    if (this.roleNow !== "primary" || this.stopped) return;
    this.o.log.warn({ reason }, "fenced: no more writes until the stream is applied");
    this.setRole("syncing", reason);
    void this.resyncUntilDone(reason);
  }

  /** Retries a resync (e.g. while NATS or Postgres is unreachable) until it succeeds or the replica stops. */
  private async resyncUntilDone(reason: string): Promise<void> {
    for (let attempt = 1; !this.stopped; attempt++) {
      try {
        await this.resync(reason);
        return;
      } catch (err) {
        this.o.log.warn({ err, attempt }, "resync failed; retrying");
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
      }
    }
  }

  private onForeignClaim(epoch: number, primary: string): void {
    if (primary !== this.name && this.roleNow === "primary") this.fence(`replica '${primary}' claimed epoch ${epoch}`);
  }

  /** Backstop for a missed claim notification (e.g. while disconnected): look at the newest claim. */
  private async checkEpoch(): Promise<void> {
    if (this.roleNow !== "primary") return;
    try {
      const latest = await this.o.stream.latestEpoch();
      if (latest && latest.primary !== this.name && latest.seq > this.pos.streamSeq) this.onForeignClaim(latest.epoch, latest.primary);
    } catch (err) {
      this.o.log.warn({ err }, "epoch check failed");
    }
  }

  private async refreshLag(): Promise<void> {
    if (this.roleNow === "primary" || this.stopped) return;
    try {
      const { last } = await this.o.stream.bounds();
      this.behind = Math.max(0, last - this.pos.streamSeq);
    } catch {
      // keep the last figure; the follower reports its own errors
    }
    this.publishGauges();
  }

  private behindSeconds(): number {
    if (this.roleNow === "primary" || this.behind === 0) return 0;
    return Math.max(0, (this.o.clock.now() - this.pos.lastCommitMs) / 1000);
  }

  private publishGauges(): void {
    const labels = { relay: this.o.relayId, replica: this.name };
    this.metrics.behindMessages.set(labels, this.roleNow === "primary" ? 0 : this.behind);
    this.metrics.behindSeconds.set(labels, this.behindSeconds());
    this.metrics.epoch.set(labels, this.pos.epoch);
    for (const r of ["primary", "secondary", "syncing"] as const) this.metrics.role.set({ ...labels, role: r }, r === this.roleNow ? 1 : 0);
  }

  private setRole(role: ReplicaRole, reason: string): void {
    if (this.roleNow === role) return;
    this.o.log.info({ from: this.roleNow, to: role, reason, epoch: this.pos.epoch, primary: this.pos.primary }, "replica role");
    this.roleNow = role;
    this.publishGauges();
    this.events.emit("role", role, reason);
  }

  private async startFollower(): Promise<void> {
    if (this.follower) return;
    this.pos = await readPosition(this.o.pool);
    this.expectSeq = this.pos.streamSeq + 1;
    this.parts.clear();
    this.partsOf = 0;
    this.follower = this.o.stream.follow(this.expectSeq, (batch) => this.applyBatch(batch), (err) => this.o.log.warn({ err }, "change stream reader restarting"));
  }

  private async stopFollower(): Promise<void> {
    const f = this.follower;
    this.follower = undefined;
    await f?.stop();
  }

  private async waitApplied(target: number, timeoutMs: number): Promise<void> {
    const deadline = timeoutMs ? Date.now() + timeoutMs : Infinity;
    // Read position, not the database's: trailing parts of a change never completed count as read.
    while (this.expectSeq - 1 < target && !this.needsRebuild) {
      if (this.stopped) throw new UnavailableError(`replica '${this.name}' is stopping`);
      const left = deadline - Date.now();
      if (left <= 0) throw new UnavailableError(`replica '${this.name}' did not apply the stream up to ${target} in time (at ${this.pos.streamSeq})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 1000));
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.events.once("applied", done);
      });
    }
  }

  /**
   * Applies a run of stream messages in one transaction (the reader hands
   * over whatever is already waiting, so a secondary that fell behind
   * catches up in large steps). Idempotent: positions at or before the
   * database's are skipped.
   */
  private async applyBatch(batch: StreamEntry[]): Promise<void> {
    const units: Array<{ e: StreamEntry; ops: ChangeOp[] }> = [];
    const assembled = new Map(this.parts);
    let assembledOf = this.partsOf;
    let expect = this.expectSeq;
    let gapAt = 0;
    for (const e of batch) {
      if (e.seq < expect) continue;
      if (e.seq > expect) {
        gapAt = e.seq;
        break;
      }
      expect = e.seq + 1;
      // Parts of another change (or a claim) after unfinished parts: those belonged to a failed append.
      if (assembled.size && (e.kind === "epoch" || e.header.change !== assembledOf)) assembled.clear();
      if (e.kind === "change" && e.part < e.parts) {
        assembled.set(e.part, e.body);
        assembledOf = e.header.change;
        continue;
      }
      let ops: ChangeOp[] = [];
      if (e.kind === "change") {
        const pieces = Array.from({ length: e.parts - 1 }, (_, i) => assembled.get(i + 1)!);
        ops = JSON.parse(Buffer.concat([...pieces, e.body]).toString("utf8")) as ChangeOp[];
        assembled.clear();
      }
      units.push({ e, ops });
    }
    let applied = 0;
    if (units.length) {
      const pos = await tx(this.o.pool, async (c) => {
        const cur = await readPosition(c, true);
        for (const { e, ops } of units) {
          if (e.seq <= cur.streamSeq) continue;
          if (e.kind === "epoch") {
            cur.epoch = e.epoch;
            cur.primary = e.primary;
          } else {
            if (cur.change < e.header.change) await applyChanges(c, ops);
            cur.change = Math.max(cur.change, e.header.change);
            cur.lastCommitMs = e.header.atMs;
          }
          cur.streamSeq = e.seq;
          applied++;
        }
        await c.query("UPDATE replication_state SET stream_seq = $1, change_seq = $2, epoch = $3, primary_replica = $4, last_commit_ms = $5", [
          cur.streamSeq, cur.change, cur.epoch, cur.primary, cur.lastCommitMs,
        ]);
        return cur;
      });
      this.pos = pos;
      this.metrics.applied.inc({ relay: this.o.relayId, replica: this.name }, applied);
    }
    // Only now that the transaction committed: a failed one is read again from its first message.
    this.parts = assembled;
    this.partsOf = assembledOf;
    this.expectSeq = expect;
    this.behind = batch.at(-1)!.pending;
    if (gapAt) {
      this.needsRebuild = `the change stream no longer holds message ${expect} (it starts at ${gapAt}): rebuild from a peer`;
      this.o.log.error({ expected: expect, got: gapAt }, "change stream gap; stopping");
      void this.stopFollower();
    }
    this.publishGauges();
    this.events.emit("applied");
  }
}

export async function readPosition(pool: Pool | PoolClient, forUpdate = false): Promise<Position> {
  const { rows } = await pool.query<{ change_seq: number; stream_seq: number; epoch: number; primary_replica: string; last_commit_ms: number }>(
    `SELECT change_seq, stream_seq, epoch, primary_replica, last_commit_ms FROM replication_state${forUpdate ? " FOR UPDATE" : ""}`,
  );
  const r = rows[0]!;
  return { change: r.change_seq, streamSeq: r.stream_seq, epoch: r.epoch, primary: r.primary_replica, lastCommitMs: r.last_commit_ms };
}
