/**
 * An endpoint's durable workspace state, in SQLite (Node's built-in
 * node:sqlite). Why SQLite: every step of the protocol is "apply these
 * changes, move the vector, drop these queue entries" — one transaction
 * each, crash-safe (WAL, synchronous=FULL), queryable for the alert rules,
 * and without a dependency or a server on the user's machine.
 *
 *   const store = SyncStore.open(join(profileDir, "workspaces.sqlite"));
 *   store.tx(() => store.applyChange(ws, change));
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { changeBytes } from "./messages.js";
import type { Change, StateEntry, Vector } from "./types.js";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, legacy INTEGER NOT NULL,
    creator INTEGER NOT NULL, lamport INTEGER NOT NULL DEFAULT 0, next_seq INTEGER NOT NULL DEFAULT 1,
    directory_dirty INTEGER NOT NULL DEFAULT 1, alerts_unreported INTEGER NOT NULL DEFAULT 0);
  -- The replicated last-writer-wins map (content and membership).
  CREATE TABLE IF NOT EXISTS state (ws TEXT, key TEXT, value TEXT NOT NULL, file_bytes INTEGER NOT NULL,
    lamport INTEGER NOT NULL, origin TEXT NOT NULL, PRIMARY KEY (ws, key));
  -- Changes kept to serve peers' gaps, until every active endpoint has them.
  CREATE TABLE IF NOT EXISTS log (ws TEXT, origin TEXT, seq INTEGER, body TEXT NOT NULL, PRIMARY KEY (ws, origin, seq));
  CREATE TABLE IF NOT EXISTS applied (ws TEXT, origin TEXT, seq INTEGER NOT NULL, PRIMARY KEY (ws, origin));
  -- Received ahead of a gap; applied once the gap is filled.
  CREATE TABLE IF NOT EXISTS pending (ws TEXT, origin TEXT, seq INTEGER, body TEXT NOT NULL, PRIMARY KEY (ws, origin, seq));
  -- Highest seq known to exist per origin (from changes and vectors seen).
  CREATE TABLE IF NOT EXISTS target (ws TEXT, origin TEXT, seq INTEGER NOT NULL, PRIMARY KEY (ws, origin));
  -- The outgoing queue: this endpoint's own changes not yet acknowledged, per recipient endpoint.
  CREATE TABLE IF NOT EXISTS outgoing (ws TEXT, recipient TEXT, seq INTEGER, queued_at_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL, sent INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ws, recipient, seq));
  -- What each endpoint is known to have applied (its acks, gossiped).
  CREATE TABLE IF NOT EXISTS known (ws TEXT, endpoint TEXT, origin TEXT, seq INTEGER NOT NULL, PRIMARY KEY (ws, endpoint, origin));
  CREATE TABLE IF NOT EXISTS heard (ws TEXT, endpoint TEXT, at_ms INTEGER NOT NULL, PRIMARY KEY (ws, endpoint));
  -- Messages from senders not (yet) known as members: applied once membership arrives.
  CREATE TABLE IF NOT EXISTS parked (id INTEGER PRIMARY KEY AUTOINCREMENT, ws TEXT, sender_member TEXT, body TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS alerts (ws TEXT, member TEXT, raised_at_ms INTEGER NOT NULL, oldest_at_ms INTEGER NOT NULL,
    outstanding INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (ws, member));
  CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, ws TEXT, at_ms INTEGER, kind TEXT, detail TEXT);
`;

export interface WorkspaceRow {
  id: string;
  name: string;
  legacy: boolean;
  creator: boolean;
  lamport: number;
  nextSeq: number;
  directoryDirty: boolean;
  alertsUnreported: number;
}

export interface OutgoingFigure {
  recipient: string;
  outstanding: number;
  bytes: number;
  oldestQueuedAtMs: number;
}

type Row = Record<string, SQLInputValue>;

export class SyncStore {
  /** Compiled statements, by SQL text: a catch-up runs the same few statements thousands of times. */
  private readonly statements = new Map<string, StatementSync>();

  private constructor(readonly db: DatabaseSync) {}

  private prepare(sql: string): StatementSync {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  static open(path: string): SyncStore {
    const db = new DatabaseSync(path);
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
    db.exec(SCHEMA);
    return new SyncStore(db);
  }

  close(): void {
    this.db.close();
  }

  /** Runs fn in one transaction (nested calls join the outer one). */
  tx<T>(fn: () => T): T {
    if (this.db.isTransaction) return fn();
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.db.exec("COMMIT");
      return out;
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  private all<T>(sql: string, ...params: SQLInputValue[]): T[] {
    return this.prepare(sql).all(...params) as T[];
  }

  private get<T>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return this.prepare(sql).get(...params) as T | undefined;
  }

  run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.prepare(sql).run(...params).changes);
  }

  createWorkspace(id: string, name: string, legacy: boolean, creator: boolean): void {
    this.run("INSERT INTO workspaces (id, name, legacy, creator) VALUES (?, ?, ?, ?)", id, name, legacy ? 1 : 0, creator ? 1 : 0);
  }

  workspace(id: string): WorkspaceRow | undefined {
    const r = this.get<Row>("SELECT * FROM workspaces WHERE id = ?", id);
    if (!r) return undefined;
    return {
      id: r.id as string, name: r.name as string, legacy: r.legacy === 1, creator: r.creator === 1, lamport: Number(r.lamport),
      nextSeq: Number(r.next_seq), directoryDirty: r.directory_dirty === 1, alertsUnreported: Number(r.alerts_unreported),
    };
  }

  workspaceIds(): string[] {
    return this.all<{ id: string }>("SELECT id FROM workspaces ORDER BY id").map((r) => r.id);
  }

  setDirectoryDirty(ws: string, dirty: boolean): void {
    this.run("UPDATE workspaces SET directory_dirty = ? WHERE id = ?", dirty ? 1 : 0, ws);
  }

  /** Takes the next own sequence number and Lamport time. */
  nextOwn(ws: string): { seq: number; lamport: number } {
    const w = this.workspace(ws)!;
    this.run("UPDATE workspaces SET next_seq = next_seq + 1, lamport = lamport + 1 WHERE id = ?", ws);
    return { seq: w.nextSeq, lamport: w.lamport + 1 };
  }

  // --- state -------------------------------------------------------------

  /** Last-writer-wins by (lamport, origin): the same winner on every endpoint, whatever the order. */
  mergeEntry(ws: string, e: StateEntry): boolean {
    const cur = this.get<{ lamport: number; origin: string }>("SELECT lamport, origin FROM state WHERE ws = ? AND key = ?", ws, e.key);
    if (cur && (Number(cur.lamport) > e.lamport || (Number(cur.lamport) === e.lamport && cur.origin >= e.origin))) return false;
    this.run(
      "INSERT INTO state (ws, key, value, file_bytes, lamport, origin) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ws, key) DO UPDATE SET value = excluded.value, file_bytes = excluded.file_bytes, lamport = excluded.lamport, origin = excluded.origin",
      ws, e.key, e.value, e.fileBytes, e.lamport, e.origin,
    );
    this.run("UPDATE workspaces SET lamport = max(lamport, ?) WHERE id = ?", e.lamport, ws);
    return true;
  }

  stateValue(ws: string, key: string): string | undefined {
    return this.get<{ value: string }>("SELECT value FROM state WHERE ws = ? AND key = ?", ws, key)?.value;
  }

  stateEntries(ws: string, prefix = ""): StateEntry[] {
    return this.all<Row>("SELECT * FROM state WHERE ws = ? AND key >= ? AND key < ? ORDER BY key", ws, prefix, prefix + "\uffff").map((r) => ({
      key: r.key as string, value: r.value as string, fileBytes: Number(r.file_bytes), lamport: Number(r.lamport), origin: r.origin as string,
    }));
  }

  /** The workspace's size: its content values and attached files. */
  sizeBytes(ws: string): number {
    const r = this.get<{ n: number }>("SELECT coalesce(sum(length(CAST(value AS BLOB)) + file_bytes), 0) AS n FROM state WHERE ws = ? AND key LIKE 'c/%'", ws);
    return Number(r?.n ?? 0);
  }

  // --- vectors -----------------------------------------------------------

  applied(ws: string): Vector {
    return Object.fromEntries(this.all<{ origin: string; seq: number }>("SELECT origin, seq FROM applied WHERE ws = ?", ws).map((r) => [r.origin, Number(r.seq)]));
  }

  appliedSeq(ws: string, origin: string): number {
    return Number(this.get<{ seq: number }>("SELECT seq FROM applied WHERE ws = ? AND origin = ?", ws, origin)?.seq ?? 0);
  }

  setApplied(ws: string, origin: string, seq: number): void {
    this.run("INSERT INTO applied (ws, origin, seq) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET seq = max(seq, excluded.seq)", ws, origin, seq);
  }

  raiseTarget(ws: string, origin: string, seq: number): void {
    this.run("INSERT INTO target (ws, origin, seq) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET seq = max(seq, excluded.seq)", ws, origin, seq);
  }

  targets(ws: string): Vector {
    return Object.fromEntries(this.all<{ origin: string; seq: number }>("SELECT origin, seq FROM target WHERE ws = ?", ws).map((r) => [r.origin, Number(r.seq)]));
  }

  known(ws: string): Record<string, Vector> {
    const out: Record<string, Vector> = {};
    for (const r of this.all<{ endpoint: string; origin: string; seq: number }>("SELECT endpoint, origin, seq FROM known WHERE ws = ?", ws)) {
      (out[r.endpoint] ??= {})[r.origin] = Number(r.seq);
    }
    return out;
  }

  /** Raises what endpoint is known to have applied; returns the origins that moved. */
  learn(ws: string, endpoint: string, vector: Vector): string[] {
    const moved: string[] = [];
    for (const [origin, seq] of Object.entries(vector)) {
      const n = this.run("INSERT INTO known (ws, endpoint, origin, seq) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET seq = excluded.seq WHERE excluded.seq > seq", ws, endpoint, origin, seq);
      if (n) moved.push(origin);
    }
    return moved;
  }

  heard(ws: string, endpoint: string, atMs: number): void {
    this.run("INSERT INTO heard (ws, endpoint, at_ms) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET at_ms = max(at_ms, excluded.at_ms)", ws, endpoint, atMs);
  }

  heardAt(ws: string): Map<string, number> {
    return new Map(this.all<{ endpoint: string; at_ms: number }>("SELECT endpoint, at_ms FROM heard WHERE ws = ?", ws).map((r) => [r.endpoint, Number(r.at_ms)]));
  }

  // --- log and pending ---------------------------------------------------

  logChange(ws: string, c: Change): void {
    this.run("INSERT OR IGNORE INTO log (ws, origin, seq, body) VALUES (?, ?, ?, ?)", ws, c.origin, c.seq, JSON.stringify(c));
  }

  logRange(ws: string, origin: string, from: number, to: number, limit: number): Change[] {
    return this.all<{ body: string }>("SELECT body FROM log WHERE ws = ? AND origin = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT ?", ws, origin, from, to, limit).map((r) => JSON.parse(r.body) as Change);
  }

  /** Drops log entries every endpoint in `holders` is known to hold. */
  trimLog(ws: string, holders: string[]): number {
    // Alone in the workspace: keep everything for the endpoints about to join.
    if (!holders.length) return 0;
    const known = this.known(ws);
    let n = 0;
    const origins = this.all<{ origin: string }>("SELECT DISTINCT origin FROM log WHERE ws = ?", ws).map((r) => r.origin);
    for (const origin of origins) {
      const upto = Math.min(...holders.map((h) => known[h]?.[origin] ?? 0));
      if (upto > 0) n += this.run("DELETE FROM log WHERE ws = ? AND origin = ? AND seq <= ?", ws, origin, upto);
    }
    return n;
  }

  addPending(ws: string, c: Change): void {
    this.run("INSERT OR IGNORE INTO pending (ws, origin, seq, body) VALUES (?, ?, ?, ?)", ws, c.origin, c.seq, JSON.stringify(c));
  }

  takePending(ws: string, origin: string, seq: number): Change | undefined {
    const r = this.get<{ body: string }>("SELECT body FROM pending WHERE ws = ? AND origin = ? AND seq = ?", ws, origin, seq);
    if (r) this.run("DELETE FROM pending WHERE ws = ? AND origin = ? AND seq = ?", ws, origin, seq);
    return r ? (JSON.parse(r.body) as Change) : undefined;
  }

  pendingOrigins(ws: string): string[] {
    return this.all<{ origin: string }>("SELECT DISTINCT origin FROM pending WHERE ws = ?", ws).map((r) => r.origin);
  }

  pendingSeqs(ws: string, origin: string): number[] {
    return this.all<{ seq: number }>("SELECT seq FROM pending WHERE ws = ? AND origin = ? ORDER BY seq", ws, origin).map((r) => Number(r.seq));
  }

  dropPendingUpTo(ws: string, origin: string, seq: number): void {
    this.run("DELETE FROM pending WHERE ws = ? AND origin = ? AND seq <= ?", ws, origin, seq);
  }

  // --- outgoing queue ----------------------------------------------------

  enqueue(ws: string, recipients: string[], c: Change, nowMs: number): void {
    const bytes = changeBytes(c);
    for (const r of recipients) this.run("INSERT OR IGNORE INTO outgoing (ws, recipient, seq, queued_at_ms, bytes) VALUES (?, ?, ?, ?, ?)", ws, r, c.seq, nowMs, bytes);
  }

  unsent(ws: string): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const r of this.all<{ recipient: string; seq: number }>("SELECT recipient, seq FROM outgoing WHERE ws = ? AND sent = 0 ORDER BY recipient, seq", ws)) {
      out.set(r.recipient, [...(out.get(r.recipient) ?? []), Number(r.seq)]);
    }
    return out;
  }

  markSent(ws: string, recipient: string, seqs: number[]): void {
    for (const s of seqs) this.run("UPDATE outgoing SET sent = 1 WHERE ws = ? AND recipient = ? AND seq = ?", ws, recipient, s);
  }

  /** Clears what the recipient acknowledged; returns the entries freed. */
  clearOutgoing(ws: string, recipient: string, upto: number): number {
    return this.run("DELETE FROM outgoing WHERE ws = ? AND recipient = ? AND seq <= ?", ws, recipient, upto);
  }

  dropOutgoingFor(ws: string, recipient: string): number {
    return this.run("DELETE FROM outgoing WHERE ws = ? AND recipient = ?", ws, recipient);
  }

  outgoingFigures(ws: string): OutgoingFigure[] {
    return this.all<Row>(
      "SELECT recipient, count(*) AS n, sum(bytes) AS b, min(queued_at_ms) AS oldest FROM outgoing WHERE ws = ? GROUP BY recipient ORDER BY recipient",
      ws,
    ).map((r) => ({ recipient: r.recipient as string, outstanding: Number(r.n), bytes: Number(r.b), oldestQueuedAtMs: Number(r.oldest) }));
  }

  // --- parked, alerts, events --------------------------------------------

  park(ws: string, senderMember: string, body: string): void {
    this.run("INSERT INTO parked (ws, sender_member, body) VALUES (?, ?, ?)", ws, senderMember, body);
  }

  parked(ws: string): Array<{ id: number; senderMember: string; body: string }> {
    return this.all<Row>("SELECT id, sender_member, body FROM parked WHERE ws = ? ORDER BY id", ws).map((r) => ({ id: Number(r.id), senderMember: r.sender_member as string, body: r.body as string }));
  }

  unpark(id: number): void {
    this.run("DELETE FROM parked WHERE id = ?", id);
  }

  upsertAlert(ws: string, a: { memberId: string; oldestQueuedAtMs: number; outstanding: number; bytes: number }, nowMs: number): boolean {
    const existed = this.get("SELECT 1 FROM alerts WHERE ws = ? AND member = ?", ws, a.memberId) !== undefined;
    this.run(
      "INSERT INTO alerts (ws, member, raised_at_ms, oldest_at_ms, outstanding, bytes) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET oldest_at_ms = excluded.oldest_at_ms, outstanding = excluded.outstanding, bytes = excluded.bytes",
      ws, a.memberId, nowMs, a.oldestQueuedAtMs, a.outstanding, a.bytes,
    );
    if (!existed) this.run("UPDATE workspaces SET alerts_unreported = alerts_unreported + 1 WHERE id = ?", ws);
    return !existed;
  }

  alerts(ws: string): Array<{ memberId: string; raisedAtMs: number; oldestQueuedAtMs: number; outstanding: number; bytes: number }> {
    return this.all<Row>("SELECT * FROM alerts WHERE ws = ? ORDER BY member", ws).map((r) => ({
      memberId: r.member as string, raisedAtMs: Number(r.raised_at_ms), oldestQueuedAtMs: Number(r.oldest_at_ms), outstanding: Number(r.outstanding), bytes: Number(r.bytes),
    }));
  }

  clearAlert(ws: string, memberId: string): void {
    this.run("DELETE FROM alerts WHERE ws = ? AND member = ?", ws, memberId);
  }

  takeUnreportedAlerts(ws: string): number {
    const n = this.workspace(ws)?.alertsUnreported ?? 0;
    this.run("UPDATE workspaces SET alerts_unreported = 0 WHERE id = ?", ws);
    return n;
  }

  event(ws: string, atMs: number, kind: string, detail: unknown): void {
    this.run("INSERT INTO events (ws, at_ms, kind, detail) VALUES (?, ?, ?, ?)", ws, atMs, kind, JSON.stringify(detail));
  }

  events(ws: string, kind?: string): Array<{ atMs: number; kind: string; detail: any }> {
    return this.all<Row>("SELECT at_ms, kind, detail FROM events WHERE ws = ? AND (? IS NULL OR kind = ?) ORDER BY id", ws, kind ?? null, kind ?? null).map((r) => ({
      atMs: Number(r.at_ms), kind: r.kind as string, detail: JSON.parse(r.detail as string),
    }));
  }
}
