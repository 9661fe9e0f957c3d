/**
 * The operator's ear on each ChatPool's NATS: it hears the channel instances'
 * load reports (the same ones the lookups use), keeps the latest per instance,
 * and sends drain/resume commands. One connection per NATS URL, shared by the
 * pools on it, made in the background and retried: a pool whose NATS cannot be
 * reached still reconciles, its load simply unknown.
 *
 * Instances are recognised by name — StatefulSet pods `<pool>-channel-<ordinal>`
 * — so two pools of the same name on one NATS (say in two namespaces) would mix:
 * give each pool its own NATS or account (docs/operator.md).
 *
 *   const monitor = new ChatLoadMonitor({ log, onChange: (key) => queue.add(key) });
 *   monitor.watch("ChatPool/ns/chat", "nats://nats:4222", "chat");
 *   monitor.instances("ChatPool/ns/chat");   // fresh reports, or undefined when unknown
 *   monitor.command("ChatPool/ns/chat", "chat-channel-2", "drain");
 */
import { NatsBus } from "../../services/common/bus/nats.js";
import type { Bus, Subscription } from "../../services/common/bus/types.js";
import type { Logger } from "../../services/common/log.js";
import type { ControlAction } from "../../services/channel/drain.js";
import { controlSubject, LOAD_SUBJECT } from "../../services/channel/subjects.js";
import { LoadReport } from "../../generated/parley/v1/lookup.js";

export interface HeardReport {
  instance: string;
  ordinal: number;
  users: number;
  sessions: number;
  healthy: boolean;
  sentAtMs: number;
  receivedAtMs: number;
  intervalMs: number;
}

interface Connection {
  url: string;
  bus?: Bus;
  sub?: Subscription;
  error?: string;
  closed: boolean;
  pools: Set<string>;
}

interface PoolWatch {
  url: string;
  pattern: RegExp;
  reports: Map<string, HeardReport>;
  /** What the last onChange was about, so unchanged repeats do not requeue. */
  signature: string;
  lastNotifiedMs: number;
  pending?: NodeJS.Timeout;
}

export interface ChatLoadMonitorOptions {
  log: Logger;
  /** Called when a pool's load changed in a way that matters (users, sessions, health, instances). */
  onChange: (poolKey: string) => void;
  connect?: (url: string) => Promise<Bus>;
  now?: () => number;
  retryMs?: number;
  /** At most one onChange per pool this often (a busy pool's users change in every report); default 3 s. */
  minNotifyIntervalMs?: number;
}

/** A report older than this many of its own intervals is stale (the lookups use 3 too, by default). */
const FRESH_INTERVALS = 3;

export class ChatLoadMonitor {
  private readonly connections = new Map<string, Connection>();
  private readonly pools = new Map<string, PoolWatch>();
  private readonly now: () => number;
  private closed = false;

  private readonly staleCheck: NodeJS.Timeout;

  constructor(private readonly opts: ChatLoadMonitorOptions) {
    this.now = opts.now ?? Date.now;
    this.staleCheck = setInterval(() => {
      for (const [key, pool] of this.pools) this.checkChanged(key, pool);
    }, 5000);
    this.staleCheck.unref();
  }

  /** Follows a pool's reports on `url` (idempotent; a changed URL moves it). */
  watch(poolKey: string, url: string, poolName: string): void {
    const existing = this.pools.get(poolKey);
    if (existing?.url === url) return;
    if (existing) this.forget(poolKey);
    const escaped = poolName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    this.pools.set(poolKey, { url, pattern: new RegExp(`^${escaped}-channel-(\\d+)$`), reports: new Map(), signature: "", lastNotifiedMs: 0 });
    let conn = this.connections.get(url);
    if (!conn) {
      conn = { url, closed: false, pools: new Set() };
      this.connections.set(url, conn);
      void this.connectLoop(conn);
    }
    conn.pools.add(poolKey);
  }

  forget(poolKey: string): void {
    const pool = this.pools.get(poolKey);
    if (!pool) return;
    this.pools.delete(poolKey);
    clearTimeout(pool.pending);
    const conn = this.connections.get(pool.url);
    if (!conn) return;
    conn.pools.delete(poolKey);
    if (conn.pools.size === 0) void this.closeConnection(conn);
  }

  /** Why the load is unknown, or undefined when connected. */
  connectionProblem(poolKey: string): string | undefined {
    const pool = this.pools.get(poolKey);
    const conn = pool && this.connections.get(pool.url);
    if (!conn) return "not watched";
    if (conn.bus) return undefined;
    return `cannot reach NATS at ${conn.url}${conn.error ? `: ${conn.error}` : " yet"}`;
  }

  /** Fresh reports of the pool's instances by ordinal; undefined while not connected. */
  instances(poolKey: string): HeardReport[] | undefined {
    const pool = this.pools.get(poolKey);
    if (!pool || !this.connections.get(pool.url)?.bus) return undefined;
    const now = this.now();
    return [...pool.reports.values()]
      .filter((r) => now - r.receivedAtMs <= FRESH_INTERVALS * Math.max(r.intervalMs, 1000))
      .sort((a, b) => a.ordinal - b.ordinal);
  }

  command(poolKey: string, instance: string, action: ControlAction): void {
    const pool = this.pools.get(poolKey);
    const bus = pool && this.connections.get(pool.url)?.bus;
    bus?.publish(controlSubject(instance), new TextEncoder().encode(JSON.stringify({ action })));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.staleCheck);
    for (const p of this.pools.values()) clearTimeout(p.pending);
    this.pools.clear();
    await Promise.all([...this.connections.values()].map((c) => this.closeConnection(c)));
  }

  private async connectLoop(conn: Connection): Promise<void> {
    const connect = this.opts.connect ?? ((url: string) => NatsBus.connect({ servers: url.split(","), name: "parley-operator", onError: (err) => this.opts.log.warn({ err, url }, "nats") }));
    for (let attempt = 0; !conn.closed && !this.closed; attempt++) {
      try {
        const bus = await connect(conn.url);
        if (conn.closed || this.closed) return void (await bus.close().catch(() => {}));
        conn.bus = bus;
        conn.error = undefined;
        conn.sub = bus.subscribe(LOAD_SUBJECT, (m) => this.hear(conn, m.data));
        this.opts.log.info({ url: conn.url }, "listening to chat load reports");
        for (const key of conn.pools) this.opts.onChange(key);
        return;
      } catch (err) {
        conn.error = (err as Error).message;
        if (attempt === 0) for (const key of conn.pools) this.opts.onChange(key);
        await new Promise((r) => setTimeout(r, Math.min(30_000, (this.opts.retryMs ?? 1000) * 2 ** Math.min(attempt, 5))).unref());
      }
    }
  }

  private async closeConnection(conn: Connection): Promise<void> {
    conn.closed = true;
    this.connections.delete(conn.url);
    conn.sub?.unsubscribe();
    await conn.bus?.close().catch(() => {});
  }

  private hear(conn: Connection, data: Uint8Array): void {
    let r: LoadReport;
    try {
      r = LoadReport.decode(data);
    } catch {
      return; // the lookups log malformed reports; one warning per report is enough
    }
    for (const key of conn.pools) {
      const pool = this.pools.get(key);
      const m = pool?.pattern.exec(r.instanceId);
      if (!pool || !m) continue;
      const prev = pool.reports.get(r.instanceId);
      if (prev && prev.sentAtMs > r.sentAtMs) continue;
      pool.reports.set(r.instanceId, {
        instance: r.instanceId, ordinal: Number(m[1]), users: r.users, sessions: r.sessions, healthy: r.healthy,
        sentAtMs: r.sentAtMs, receivedAtMs: this.now(), intervalMs: r.intervalMs,
      });
      this.checkChanged(key, pool);
    }
  }

  /** Notifies when what the fresh reports say changed (a silent instance going stale is a change too). */
  private checkChanged(key: string, pool: PoolWatch): void {
    const signature = (this.instances(key) ?? []).map((x) => `${x.ordinal}:${x.users}:${x.sessions}:${x.healthy}`).join(",");
    if (signature === pool.signature) return;
    pool.signature = signature;
    this.notify(key, pool);
  }

  /** Throttled, trailing: the reconcile after a burst of changes sees the last of them. */
  private notify(key: string, pool: PoolWatch): void {
    if (pool.pending) return;
    const wait = pool.lastNotifiedMs + (this.opts.minNotifyIntervalMs ?? 3000) - this.now();
    const fire = () => {
      pool.pending = undefined;
      pool.lastNotifiedMs = this.now();
      if (this.pools.get(key) === pool) this.opts.onChange(key);
    };
    if (wait <= 0) return fire();
    pool.pending = setTimeout(fire, wait);
    pool.pending.unref();
  }
}
