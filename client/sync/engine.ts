/**
 * The workspace engine of one endpoint (device): local changes, the
 * outgoing queue per recipient endpoint, gap recovery from peers, alerts
 * and suspensions. All state lives in the SyncStore; the engine runs when
 * pumped (the CLI's `workspace sync`, or a loop while online).
 *
 *   const engine = WorkspaceEngine.create({ store, transport, clock });
 *   engine.createWorkspace("team-task", "Team Task");
 *   const inv = engine.invite("team-task", "jane", "manager");   // handed to Jane out of band
 *   await engine.change("team-task", "todo/1", "write the spec");
 *   await engine.pump();   // receive, recover gaps, send, acknowledge
 */
import { randomUUID } from "node:crypto";
import type { Clock } from "../../services/common/clock.js";
import { contentTypeFor, decode, encode, MalformedSyncMessage, CONTENT_TYPE_BASE, type ChangesMessage, type SyncMessage } from "./messages.js";
import { capRanges, missingRanges, rankPeers, type RecoveryState } from "./recovery.js";
import { autoSuspensions, suspendChoices, syncAlerts, type EndpointView, type QueueFigure, type Role, type SuspendChoice, type SyncAlert } from "./rules.js";
import type { SyncStore } from "./store.js";
import { reconcileDirectory } from "./directory-sync.js";
import type { Inbound, Outbound, SyncTransport } from "./transport.js";
import { chunkChanges, endpointRecordOf, endpointsOf, queueFiguresOf, statusOf } from "./views.js";
import { KEY, type Change, type EndpointRecord, type Invitation, type Range, type Suspension, type Vector, type WorkspaceStatus } from "./types.js";

export class WorkspaceError extends Error {
  override name = "WorkspaceError";
}

export interface EngineOptions {
  store: SyncStore;
  transport: SyncTransport;
  clock: Clock;
  /** A peer that has not answered a range request in this long is passed over (default 30 s). */
  requestTimeoutMs?: number;
  /** Called for each change of a peer's origin as it is applied here (a UI refresh, a benchmark). */
  onApply?: (ws: string, origin: string, seq: number) => void;
  /** Most bytes of changes in one relay message (default 48 KiB, under the relay's 64 KiB limit). */
  maxMessageBytes?: number;
}

/** Inline values stay small; large content is attached as a file (fileBytes). */
export const MAX_VALUE_BYTES = 32 * 1024;
const REPORT_EVERY_MS = 60_000;
/**
 * A recipient that has not acknowledged an hour-old change is sent this
 * endpoint's vector once a day: if the relay purged the tail of what it was
 * sent, no later change would reveal the gap, but this probe does.
 */
const PROBE_AFTER_MS = 3_600_000;
const PROBE_EVERY_MS = 86_400_000;
const GAP_GRACE_MS = 2_000;

export class WorkspaceEngine {
  private readonly store: SyncStore;
  private readonly recovery = new Map<string, RecoveryState>();
  private readonly ackOwed = new Map<string, Set<string>>();
  private readonly lastReport = new Map<string, number>();
  private readonly lastProbe = new Map<string, number>();
  /** Workspaces whose next acknowledgements say "synchronised" (after a catch-up). */
  private readonly announce = new Set<string>();
  private running: Promise<unknown> = Promise.resolve();

  private constructor(private readonly opts: EngineOptions) {
    this.store = opts.store;
  }

  static create(opts: EngineOptions): WorkspaceEngine {
    return new WorkspaceEngine(opts);
  }

  get endpointId(): string {
    return this.opts.transport.endpointId;
  }

  get memberId(): string {
    return this.opts.transport.memberId;
  }

  private now(): number {
    return this.opts.clock.now();
  }

  // --- membership ----------------------------------------------------------

  createWorkspace(id: string, name: string, opts: { legacy?: boolean } = {}): void {
    if (this.store.workspace(id)) throw new WorkspaceError(`workspace '${id}' already exists on this endpoint`);
    this.store.tx(() => {
      this.store.createWorkspace(id, name, opts.legacy ?? false, true);
      this.commit(id, KEY.meta, JSON.stringify({ name, legacy: opts.legacy ?? false }));
      this.commit(id, KEY.member(this.memberId), "manager");
      this.commit(id, KEY.endpoint(this.endpointId), JSON.stringify({ memberId: this.memberId, relays: this.opts.transport.relays } satisfies EndpointRecord));
    });
  }

  /** Adds a member (a manager's act) and returns what the invitee needs to join. */
  invite(ws: string, memberId: string, role: Role): Invitation {
    this.requireManager(ws);
    this.store.tx(() => this.commit(ws, KEY.member(memberId), role));
    const w = this.workspace(ws);
    return { workspaceId: ws, name: w.name, legacy: w.legacy, memberId, role, invitedBy: this.endpointId, state: this.store.stateEntries(ws), vector: this.store.applied(ws) };
  }

  /** Joins from an invitation: the snapshot becomes this endpoint's state, then it announces itself. */
  join(inv: Invitation): void {
    if (inv.memberId !== this.memberId) throw new WorkspaceError(`the invitation is for '${inv.memberId}', this endpoint belongs to '${this.memberId}'`);
    if (this.store.workspace(inv.workspaceId)) throw new WorkspaceError(`workspace '${inv.workspaceId}' already exists on this endpoint`);
    this.store.tx(() => {
      this.store.createWorkspace(inv.workspaceId, inv.name, inv.legacy, false);
      for (const e of inv.state) this.store.mergeEntry(inv.workspaceId, e);
      for (const [origin, seq] of Object.entries(inv.vector)) {
        this.store.setApplied(inv.workspaceId, origin, seq);
        this.store.raiseTarget(inv.workspaceId, origin, seq);
      }
      this.commit(inv.workspaceId, KEY.endpoint(this.endpointId), JSON.stringify({ memberId: this.memberId, relays: this.opts.transport.relays } satisfies EndpointRecord));
    });
  }

  async setRole(ws: string, memberId: string, role: Role): Promise<void> {
    this.requireManager(ws);
    if (!this.store.stateValue(ws, KEY.member(memberId))) throw new WorkspaceError(`'${memberId}' is not a member of workspace '${ws}'`);
    this.store.tx(() => this.commit(ws, KEY.member(memberId), role));
    await this.flush(ws);
  }

  /**
   * A manager's suspension: of one endpoint, or of a whole member (all its
   * endpoints) — "suspend to recover disk space". Frees this endpoint's
   * queue for them at once; peers free theirs when the change reaches them.
   */
  async suspend(ws: string, target: { memberId: string } | { endpointId: string }): Promise<string[]> {
    this.requireManager(ws);
    const endpoints = "endpointId" in target ? [this.endpointView(ws, target.endpointId)] : this.endpoints(ws).filter((e) => e.memberId === target.memberId);
    if (!endpoints.length) throw new WorkspaceError(`workspace '${ws}' has no endpoint of '${"memberId" in target ? target.memberId : ""}'`);
    const done = endpoints.filter((e) => !e.suspended).map((e) => e.endpointId);
    this.store.tx(() => {
      for (const e of done) this.commit(ws, KEY.suspension(e), JSON.stringify({ suspended: true, reason: "manager", by: this.memberId } satisfies Suspension));
    });
    await this.flush(ws);
    return done;
  }

  /** Resumes a member's endpoints; they catch up on their next synchronisation. */
  async resume(ws: string, memberId: string): Promise<string[]> {
    this.requireManager(ws);
    const done = this.endpoints(ws).filter((e) => e.memberId === memberId && e.suspended).map((e) => e.endpointId);
    this.store.tx(() => {
      for (const e of done) this.commit(ws, KEY.suspension(e), JSON.stringify({ suspended: false, reason: "resumed", by: this.memberId } satisfies Suspension));
    });
    await this.flush(ws);
    return done;
  }

  // --- changes -------------------------------------------------------------

  /**
   * Makes a change; it is queued for every other active endpoint and sent
   * to those reachable. For a manager this is when synchronisation alerts
   * are evaluated (the seed's third condition).
   */
  async change(ws: string, key: string, value: string, opts: { fileBytes?: number } = {}): Promise<{ seq: number; alerts: SyncAlert[] }> {
    const w = this.workspace(ws);
    if (this.selfSuspended(ws)) throw new WorkspaceError(`this endpoint is suspended in workspace '${ws}'; a manager must resume it`);
    if (Buffer.byteLength(value) > MAX_VALUE_BYTES) throw new WorkspaceError(`value is ${Buffer.byteLength(value)} bytes; at most ${MAX_VALUE_BYTES} inline (attach larger content as a file)`);
    const fileBytes = opts.fileBytes ?? 0;
    if (!Number.isSafeInteger(fileBytes) || fileBytes < 0) throw new WorkspaceError("fileBytes must be a non-negative integer");
    const { seq, alerts } = this.store.tx(() => {
      // Endpoints that passed the 21-day mark are suspended as it passes, so
      // before the alert check: what remains stale is a manager's call.
      this.autoSuspend(ws);
      const c = this.commit(ws, KEY.content(key), value, fileBytes);
      const raised = this.evaluateAlerts(ws, w.legacy);
      return { seq: c.seq, alerts: raised };
    });
    await this.flush(ws);
    return { seq, alerts };
  }

  /** Many changes in one transaction and one send (an import, a bulk edit); alerts as for one change. */
  async changeMany(ws: string, items: Array<{ key: string; value: string; fileBytes?: number }>): Promise<{ lastSeq: number; alerts: SyncAlert[] }> {
    const w = this.workspace(ws);
    if (this.selfSuspended(ws)) throw new WorkspaceError(`this endpoint is suspended in workspace '${ws}'; a manager must resume it`);
    for (const i of items) if (Buffer.byteLength(i.value) > MAX_VALUE_BYTES) throw new WorkspaceError(`value of '${i.key}' is over ${MAX_VALUE_BYTES} bytes`);
    const out = this.store.tx(() => {
      this.autoSuspend(ws);
      let lastSeq = 0;
      for (const i of items) lastSeq = this.commit(ws, KEY.content(i.key), i.value, i.fileBytes ?? 0).seq;
      return { lastSeq, alerts: this.evaluateAlerts(ws, w.legacy) };
    });
    await this.flush(ws);
    return out;
  }

  /** Applies a change made here: state, log, vector, and the outgoing queue. */
  private commit(ws: string, key: string, value: string, fileBytes = 0): Change {
    const { seq, lamport } = this.store.nextOwn(ws);
    const c: Change = { origin: this.endpointId, seq, lamport, atMs: this.now(), author: this.memberId, key, value, fileBytes };
    this.apply(ws, c);
    const recipients = this.endpoints(ws).filter((e) => e.endpointId !== this.endpointId && !e.suspended).map((e) => e.endpointId);
    this.store.enqueue(ws, recipients, c, this.now());
    return c;
  }

  private apply(ws: string, c: Change): void {
    this.store.mergeEntry(ws, { key: c.key, value: c.value, fileBytes: c.fileBytes, lamport: c.lamport, origin: c.origin });
    this.store.logChange(ws, c);
    this.store.setApplied(ws, c.origin, c.seq);
    this.store.raiseTarget(ws, c.origin, c.seq);
    if (c.key.startsWith("s/") || c.key.startsWith("m/") || c.key.startsWith("e/")) this.store.setDirectoryDirty(ws, true);
    if (c.key.startsWith("e/") && c.origin !== this.endpointId && c.origin === c.key.slice(2)) {
      // A new endpoint announced itself, perhaps only to some of us: our next
      // acknowledgements carry its seq to every peer, who then fetch its changes.
      const owed = this.ackOwedOf(ws);
      for (const e of this.endpoints(ws)) if (!e.suspended && e.endpointId !== this.endpointId && e.endpointId !== c.origin) owed.add(e.endpointId);
    }
    if (c.key.startsWith("s/")) {
      const endpoint = c.key.slice(2);
      const s = JSON.parse(this.store.stateValue(ws, c.key) ?? "{}") as Suspension;
      if (s.suspended) {
        // "Suspend to recover disk space": nothing more is kept for it here.
        this.store.dropOutgoingFor(ws, endpoint);
        this.store.event(ws, this.now(), "suspended", { endpoint, reason: s.reason, by: s.by });
      } else {
        this.store.event(ws, this.now(), "resumed", { endpoint, by: s.by });
      }
    }
  }

  // --- the pump --------------------------------------------------------------

  /**
   * One round while online: receive everything queued, apply what is in
   * order, answer peers' requests, ask for missing ranges, send queued
   * changes and acknowledgements, apply automatic suspensions, update the
   * relay's directory. Returns how many messages moved (0 = quiet).
   */
  pump(): Promise<number> {
    const run = this.running.then(() => this.pumpOnce());
    this.running = run.catch(() => undefined);
    return run;
  }

  private vectors(): Map<string, Vector> {
    return new Map(this.store.workspaceIds().map((ws) => [ws, this.store.applied(ws)]));
  }

  private async pumpOnce(): Promise<number> {
    const before = this.vectors();
    const outbound: Outbound[] = [];
    const moved = await this.opts.transport.receive((m) => this.receive(m, outbound));
    return moved + (await this.afterReceive(before, outbound, true));
  }

  /**
   * Online mode: keeps the relay streams open and runs a round's other steps
   * as soon as messages arrive (coalesced), until signal aborts. Needs a
   * transport that can listen (RelayTransport does).
   */
  async live(signal: AbortSignal): Promise<void> {
    const listen = this.opts.transport.listen?.bind(this.opts.transport);
    if (!listen) throw new WorkspaceError("this transport cannot stay online; use pump()");
    await this.pump();
    let before = this.vectors();
    let outbound: Outbound[] = [];
    let scheduled = false;
    const kick = () => {
      if (scheduled || signal.aborted) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        const [b, o] = [before, outbound];
        before = this.vectors();
        outbound = [];
        const run = this.running.then(() => this.afterReceive(b, o, false));
        this.running = run.catch(() => undefined);
      });
    };
    // Rounds also run on a timer: an overdue range request must move on to
    // the next peer even when nothing arrives.
    const timer = setInterval(kick, GAP_GRACE_MS);
    try {
      await listen((m) => {
        this.receive(m, outbound);
        kick();
      }, signal);
    } finally {
      clearInterval(timer);
    }
    await this.running;
  }

  /** drained: the whole backlog was just read, so a gap is real; live, a gap must persist first. */
  private async afterReceive(before: Map<string, Vector>, outbound: Outbound[], drained: boolean): Promise<number> {
    let moved = await this.sendAll(outbound);
    for (const ws of this.store.workspaceIds()) {
      this.unpark(ws, outbound);
      this.store.tx(() => this.settle(ws));
      this.store.tx(() => this.autoSuspend(ws));
      this.noteAcks(ws, before.get(ws) ?? {});
      moved += await this.recover(ws, drained);
      moved += await this.flush(ws);
      await this.reconcileDirectory(ws).catch((err: Error) => this.store.event(ws, this.now(), "directory-error", { message: err.message }));
    }
    moved += await this.sendAll(outbound);
    return moved;
  }

  /** Pumps until a round moves nothing (bounded), e.g. to finish a catch-up while online. */
  async pumpUntilQuiet(maxRounds = 50): Promise<void> {
    for (let i = 0; i < maxRounds; i++) if ((await this.pump()) === 0) return;
  }

  private receive(m: Inbound, outbound: Outbound[]): void {
    const applied = this.opts.onApply ? this.vectors() : undefined;
    this.receiveOne(m, outbound);
    if (applied && this.opts.onApply) {
      for (const [ws, v] of this.vectors()) {
        const was = applied.get(ws) ?? {};
        for (const [origin, seq] of Object.entries(v)) for (let s = (was[origin] ?? 0) + 1; s <= seq; s++) this.opts.onApply(ws, origin, s);
      }
    }
  }

  private receiveOne(m: Inbound, outbound: Outbound[]): void {
    if (!m.contentType.startsWith(CONTENT_TYPE_BASE)) return;
    let msg: SyncMessage;
    try {
      msg = decode(m.payload);
    } catch (err) {
      if (err instanceof MalformedSyncMessage) return; // a peer's bug must not stall this queue
      throw err;
    }
    if (!this.store.workspace(msg.ws) || msg.from !== m.senderEndpoint) return;
    if (!this.store.stateValue(msg.ws, KEY.member(m.senderMember))) {
      // Not (yet) known as a member here: the invitation may still be on its way.
      this.store.park(msg.ws, m.senderMember, Buffer.from(m.payload).toString("utf8"));
      return;
    }
    this.store.tx(() => this.handle(msg, outbound));
  }

  private unpark(ws: string, outbound: Outbound[]): void {
    for (const p of this.store.parked(ws)) {
      if (!this.store.stateValue(ws, KEY.member(p.senderMember))) continue;
      this.store.tx(() => {
        this.store.unpark(p.id);
        this.handle(decode(Buffer.from(p.body)), outbound);
      });
    }
  }

  private handle(msg: SyncMessage, outbound: Outbound[]): void {
    const ws = msg.ws;
    this.store.heard(ws, msg.from, this.now());
    this.store.learn(ws, msg.from, msg.vector);
    for (const [endpoint, v] of Object.entries(msg.known)) if (endpoint !== this.endpointId) this.store.learn(ws, endpoint, v);
    for (const [origin, seq] of Object.entries(msg.vector)) this.store.raiseTarget(ws, origin, seq);
    const rec = this.recoveryOf(ws);
    switch (msg.t) {
      case "changes":
        for (const c of msg.changes) {
          if (c.seq <= this.store.appliedSeq(ws, c.origin)) continue; // duplicate: harmless
          this.store.addPending(ws, c);
          this.store.raiseTarget(ws, c.origin, c.seq);
        }
        if (msg.reply && rec.inFlight?.id === msg.reply) {
          rec.inFlight.askedAtMs = this.now(); // progress: the peer is still serving
          if (msg.last) {
            if (msg.missing?.length) rec.tried.add(msg.from);
            rec.inFlight = undefined;
          }
        }
        break;
      case "request":
        this.serve(ws, msg, outbound);
        break;
      case "snapshot":
        for (const e of msg.state) this.store.mergeEntry(ws, e);
        for (const [origin, seq] of Object.entries(msg.vector)) {
          this.store.setApplied(ws, origin, seq);
          this.store.dropPendingUpTo(ws, origin, seq);
        }
        this.store.setDirectoryDirty(ws, true);
        this.store.event(ws, this.now(), "snapshot-applied", { from: msg.from });
        if (rec.inFlight?.id === msg.reply) rec.inFlight = undefined;
        break;
      case "ack":
        if (msg.synchronised) {
          const owed = this.ackOwedOf(ws);
          for (const e of this.endpoints(ws)) if (!e.suspended && e.endpointId !== msg.from && e.endpointId !== this.endpointId) owed.add(e.endpointId);
        }
        break;
    }
    this.drainPending(ws);
  }

  /** Applies pending changes that are next in their origin's sequence. */
  private drainPending(ws: string): void {
    for (const origin of this.store.pendingOrigins(ws)) {
      for (let next = this.store.appliedSeq(ws, origin) + 1; ; next++) {
        const c = this.store.takePending(ws, origin, next);
        if (!c) break;
        this.apply(ws, c);
      }
      this.store.dropPendingUpTo(ws, origin, this.store.appliedSeq(ws, origin));
    }
  }

  /** Answers a range request from the log; what is not held is named "missing" ("don't have"). */
  private serve(ws: string, req: Extract<SyncMessage, { t: "request" }>, outbound: Outbound[]): void {
    const peer = this.endpointRecord(ws, req.from);
    if (!peer) return;
    const envelope = this.envelope(ws);
    if (req.snapshot) {
      outbound.push(this.outbound(ws, req.from, peer, { t: "snapshot", ...envelope, reply: req.id, state: this.store.stateEntries(ws) }));
      return;
    }
    const missing: Range[] = [];
    const found: Change[] = [];
    for (const r of capRanges(req.ranges)) {
      const got = this.store.logRange(ws, r.origin, r.from, r.to, r.to - r.from + 1);
      found.push(...got);
      let expect = r.from;
      for (const c of [...got, { seq: r.to + 1 }]) {
        if (c.seq > expect) missing.push({ origin: r.origin, from: expect, to: c.seq - 1 });
        expect = c.seq + 1;
      }
    }
    const parts = this.chunk(found);
    parts.forEach((changes, i) => {
      const last = i === parts.length - 1;
      const m: ChangesMessage = { t: "changes", ...envelope, changes, reply: req.id, ...(last ? { last: true, missing } : {}) };
      outbound.push(this.outbound(ws, req.from, peer, m));
    });
    this.store.event(ws, this.now(), "served", { to: req.from, changes: found.length, missing });
  }

  /** Clears acknowledged queue entries and log entries every active endpoint holds; drops resolved alerts. */
  private settle(ws: string): void {
    const known = this.store.known(ws);
    for (const f of this.store.outgoingFigures(ws)) {
      const upto = known[f.recipient]?.[this.endpointId] ?? 0;
      if (upto && this.store.clearOutgoing(ws, f.recipient, upto)) this.store.event(ws, this.now(), "queue-cleared", { endpoint: f.recipient, upto });
    }
    const holders = this.endpoints(ws).filter((e) => !e.suspended && e.endpointId !== this.endpointId).map((e) => e.endpointId);
    this.store.trimLog(ws, holders);
    const figures = this.queueFigures(ws);
    const endpoints = this.endpoints(ws);
    for (const a of this.store.alerts(ws)) {
      const still = syncAlerts({ self: { memberId: this.memberId, role: "manager" }, madeChange: true, workspaceBytes: Number.MAX_SAFE_INTEGER, legacy: true, nowMs: this.now(), queue: figures, endpoints });
      if (!still.some((s) => s.memberId === a.memberId)) this.store.clearAlert(ws, a.memberId);
    }
  }

  private evaluateAlerts(ws: string, legacy: boolean): SyncAlert[] {
    const role = this.roleOf(ws, this.memberId);
    if (!role) return [];
    const alerts = syncAlerts({
      self: { memberId: this.memberId, role },
      madeChange: true,
      workspaceBytes: this.store.sizeBytes(ws),
      legacy,
      nowMs: this.now(),
      queue: this.queueFigures(ws),
      endpoints: this.endpoints(ws),
    });
    for (const a of alerts) if (this.store.upsertAlert(ws, a, this.now())) this.store.event(ws, this.now(), "alert", a);
    return alerts;
  }

  private autoSuspend(ws: string): void {
    if (this.selfSuspended(ws)) return;
    const toSuspend = autoSuspensions({ workspaceBytes: this.store.sizeBytes(ws), nowMs: this.now(), queue: this.queueFigures(ws), endpoints: this.endpoints(ws) });
    for (const e of toSuspend) this.commit(ws, KEY.suspension(e), JSON.stringify({ suspended: true, reason: "auto", by: this.memberId } satisfies Suspension));
  }

  /** Owes an acknowledgement to every origin whose changes were applied this round. */
  private noteAcks(ws: string, before: Vector): void {
    const after = this.store.applied(ws);
    const owed = this.ackOwedOf(ws);
    for (const [origin, seq] of Object.entries(after)) if (origin !== this.endpointId && seq > (before[origin] ?? 0)) owed.add(origin);
  }

  private ackOwedOf(ws: string): Set<string> {
    let owed = this.ackOwed.get(ws);
    if (!owed) this.ackOwed.set(ws, (owed = new Set()));
    return owed;
  }

  /** Asks the best untried peer for the missing ranges; a quiet or empty-handed peer is passed over. */
  private async recover(ws: string, drained: boolean): Promise<number> {
    const rec = this.recoveryOf(ws);
    const pending = new Map(this.store.pendingOrigins(ws).map((o) => [o, this.store.pendingSeqs(ws, o)]));
    const missing = missingRanges(this.store.applied(ws), this.store.targets(ws), pending);
    if (!missing.length) {
      if (rec.recovering) {
        // Caught up after a gap: tell every peer, so all senders free their queues now.
        this.store.event(ws, this.now(), "synchronised", { vector: this.store.applied(ws) });
        const owed = this.ackOwedOf(ws);
        for (const e of this.endpoints(ws)) if (!e.suspended && e.endpointId !== this.endpointId) owed.add(e.endpointId);
        this.announce.add(ws);
      }
      rec.recovering = false;
      rec.missingSince = undefined;
      rec.inFlight = undefined;
      rec.tried.clear();
      return 0;
    }
    // Live, a change can show up in a peer's vector just before it arrives
    // itself: only a gap that persists is worth a request.
    rec.missingSince ??= this.now();
    if (!drained && this.now() - rec.missingSince < GAP_GRACE_MS) return 0;
    if (rec.inFlight) {
      if (this.now() - rec.inFlight.askedAtMs < (this.opts.requestTimeoutMs ?? 30_000)) return 0;
      rec.tried.add(rec.inFlight.peer);
      rec.inFlight = undefined;
    }
    const peers = this.endpoints(ws).filter((e) => !e.suspended && e.endpointId !== this.endpointId).map((e) => e.endpointId);
    const ranges = capRanges(missing);
    const untried = rankPeers(ranges, peers.filter((p) => !rec.tried.has(p)), this.store.known(ws), this.store.heardAt(ws));
    // Nobody holds the ranges any more (they were trimmed while this endpoint
    // was suspended): fall back to a snapshot of the state from a peer.
    const snapshot = untried.length === 0;
    const peer = snapshot ? rankPeers(ranges, peers, this.store.known(ws), this.store.heardAt(ws))[0] : untried[0];
    if (!peer) return 0;
    if (snapshot) rec.tried.clear();
    rec.recovering = true;
    const id = randomUUID();
    rec.inFlight = { id, peer, ranges, snapshot, askedAtMs: this.now() };
    this.store.event(ws, this.now(), "gap-request", { peer, ranges, snapshot });
    const record = this.endpointRecord(ws, peer)!;
    return this.sendAll([this.outbound(ws, peer, record, { t: "request", ...this.envelope(ws), id, ranges, ...(snapshot ? { snapshot: true } : {}) })]);
  }

  /** Sends unsent queue entries and owed acknowledgements to reachable peers. */
  private async flush(ws: string): Promise<number> {
    const out: Outbound[] = [];
    const sentSeqs: Array<{ recipient: string; seqs: number[] }> = [];
    const envelope = this.envelope(ws);
    const owed = this.ackOwedOf(ws);
    const synchronised = this.announce.has(ws);
    for (const [recipient, seqs] of this.store.unsent(ws)) {
      const record = this.endpointRecord(ws, recipient);
      if (!record) continue;
      const changes = seqs.flatMap((s) => this.store.logRange(ws, this.endpointId, s, s, 1));
      for (const part of this.chunk(changes)) {
        out.push(this.outbound(ws, recipient, record, { t: "changes", ...envelope, changes: part }));
        sentSeqs.push({ recipient, seqs: part.map((c) => c.seq) });
      }
      if (!synchronised) owed.delete(recipient); // the changes carry the vector
    }
    for (const f of this.store.outgoingFigures(ws)) {
      const key = `${ws}/${f.recipient}`;
      if (f.oldestQueuedAtMs > this.now() - PROBE_AFTER_MS || (this.lastProbe.get(key) ?? 0) > this.now() - PROBE_EVERY_MS) continue;
      this.lastProbe.set(key, this.now());
      owed.add(f.recipient);
    }
    const acks = [...owed].filter((e) => this.endpointRecord(ws, e) && !this.endpointView(ws, e).suspended);
    for (const e of acks) out.push(this.outbound(ws, e, this.endpointRecord(ws, e)!, { t: "ack", ...envelope, ...(synchronised ? { synchronised } : {}) }));
    if (!out.length) return 0;
    const result = await this.opts.transport.send(out);
    const delivered = new Set(result.delivered);
    this.store.tx(() => {
      sentSeqs.forEach((s, i) => delivered.has(i) && this.store.markSent(ws, s.recipient, s.seqs));
      for (const [endpoint, reason] of result.refused) this.store.event(ws, this.now(), "refused-by-relay", { endpoint, reason });
    });
    acks.forEach((e, i) => delivered.has(sentSeqs.length + i) && owed.delete(e));
    if (synchronised) this.announce.delete(ws);
    return result.delivered.length;
  }

  private async sendAll(out: Outbound[]): Promise<number> {
    if (!out.length) return 0;
    const batch = out.splice(0, out.length);
    return (await this.opts.transport.send(batch)).delivered.length;
  }

  /** See directory-sync.ts; the figures go out at most once a minute unless an alert was raised. */
  private async reconcileDirectory(ws: string): Promise<void> {
    const w = this.workspace(ws);
    const dueReport = this.now() - (this.lastReport.get(ws) ?? 0) >= REPORT_EVERY_MS || w.alertsUnreported > 0;
    if (!w.directoryDirty && !dueReport) return;
    const dir = this.opts.transport.directory();
    if (!dir) return;
    await reconcileDirectory({ store: this.store, dir, ws, creator: w.creator, dirty: w.directoryDirty, self: { memberId: this.memberId, endpointId: this.endpointId }, nowMs: this.now() });
    this.lastReport.set(ws, this.now());
  }

  // --- views -------------------------------------------------------------------

  private workspace(ws: string) {
    const w = this.store.workspace(ws);
    if (!w) throw new WorkspaceError(`unknown workspace '${ws}' on this endpoint`);
    return w;
  }

  private recoveryOf(ws: string): RecoveryState {
    let r = this.recovery.get(ws);
    if (!r) this.recovery.set(ws, (r = { inFlight: undefined, tried: new Set(), recovering: false, missingSince: undefined }));
    return r;
  }

  roleOf(ws: string, memberId: string): Role | undefined {
    return this.store.stateValue(ws, KEY.member(memberId)) as Role | undefined;
  }

  private requireManager(ws: string): void {
    this.workspace(ws);
    if (this.roleOf(ws, this.memberId) !== "manager") throw new WorkspaceError(`only a manager of workspace '${ws}' may do this; '${this.memberId}' is not one`);
  }

  private selfSuspended(ws: string): boolean {
    return this.endpoints(ws).some((e) => e.endpointId === this.endpointId && e.suspended);
  }

  private endpointRecord(ws: string, endpointId: string): EndpointRecord | undefined {
    return endpointRecordOf(this.store, ws, endpointId);
  }

  private endpointView(ws: string, endpointId: string): EndpointView {
    const e = this.endpoints(ws).find((x) => x.endpointId === endpointId);
    if (!e) throw new WorkspaceError(`'${endpointId}' is not an endpoint of workspace '${ws}'`);
    return e;
  }

  endpoints(ws: string): EndpointView[] {
    return endpointsOf(this.store, ws);
  }

  private queueFigures(ws: string): QueueFigure[] {
    return queueFiguresOf(this.store, ws);
  }

  private envelope(ws: string) {
    return { ws, from: this.endpointId, vector: this.store.applied(ws), known: this.store.known(ws) };
  }

  private outbound(ws: string, endpointId: string, record: EndpointRecord, m: SyncMessage): Outbound {
    return { endpointId, relays: record.relays, payload: encode(m), contentType: contentTypeFor(ws) };
  }

  private chunk(changes: Change[]): Change[][] {
    return chunkChanges(changes, this.opts.maxMessageBytes ?? 48 * 1024);
  }

  value(ws: string, key: string): string | undefined {
    return this.store.stateValue(ws, KEY.content(key));
  }

  /** Content as key → value, for comparing endpoints. */
  content(ws: string): Record<string, string> {
    return Object.fromEntries(this.store.stateEntries(ws, "c/").map((e) => [e.key.slice(2), e.value]));
  }

  alerts(ws: string) {
    return this.store.alerts(ws);
  }

  events(ws: string, kind?: string) {
    return this.store.events(ws, kind);
  }

  /** The "Suspend Members" dialog: whom a manager may suspend and the space it frees. */
  suspendChoices(ws: string): SuspendChoice[] {
    const role = this.roleOf(ws, this.memberId) ?? "participant";
    return suspendChoices({ memberId: this.memberId, role }, this.queueFigures(ws), this.endpoints(ws), this.now());
  }

  status(ws: string): WorkspaceStatus {
    const w = this.workspace(ws);
    return statusOf(this.store, w, { memberId: this.memberId, endpointId: this.endpointId });
  }

  workspaces(): string[] {
    return this.store.workspaceIds();
  }
}

