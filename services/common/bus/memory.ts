/**
 * In-process Bus for `parley up` (all services in one process) and unit
 * tests. It mirrors what NatsBus does on JetStream closely enough that the
 * same contract suite passes against both: wildcard subjects, async
 * delivery, sequenced streams with msgId de-duplication, durable consumers
 * with ack/nak/ackWait and a max-ack-pending window.
 *
 * Message ages (maxAgeMs, duplicate window) follow the injected Clock so
 * tests can skip days; redelivery timers (ackWait, nak delay) use real time.
 */
import { systemClock, type Clock } from "../clock.js";
import { injectContext } from "../tracing.js";
import type {
  Bus, BusMessage, Consumer, ConsumerOptions, DurableMessage, Headers, PublishAck, StreamConfig, Subscription,
} from "./types.js";

export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_MAX_ACK_PENDING = 1000;

/** JetStream's 2-minute default, shortened to maxAgeMs since the server refuses a longer window. */
export function duplicateWindowMs(config: StreamConfig): number {
  const maxAge = config.maxAgeMs ?? 0;
  const window = config.duplicateWindowMs ?? (maxAge > 0 ? Math.min(120_000, maxAge) : 120_000);
  if (maxAge > 0 && window > maxAge) throw new Error(`stream ${config.name}: duplicate window exceeds max age`);
  return window;
}

/** Default nak delay ("the consumer's backoff"): 200 ms doubling per delivery, at most 10 s. */
export function retryDelayMs(deliveries: number): number {
  return Math.min(200 * 2 ** Math.max(0, deliveries - 1), 10_000);
}

/** NATS subject matching: `*` is exactly one token, a trailing `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** Whether some subject could match both patterns (JetStream forbids overlapping streams). */
function patternsOverlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] === ">" || y[i] === ">") return true;
    if (x[i] !== "*" && y[i] !== "*" && x[i] !== y[i]) return false;
  }
  return x.length === y.length;
}

interface Stored { seq: number; subject: string; data: Uint8Array; headers: Headers; msgId: string; time: number }

class MemStream {
  messages: Stored[] = []; // contiguous by seq: trimming only removes from the front
  lastSeq = 0;
  readonly ids = new Map<string, { seq: number; time: number }>();
  readonly durables = new Map<string, DurableState>();
  constructor(public config: StreamConfig) {}

  get(seq: number): Stored | undefined {
    const first = this.messages[0];
    return first ? this.messages[seq - first.seq] : undefined;
  }

  trim(now: number): void {
    const maxAge = this.config.maxAgeMs ?? 0;
    if (maxAge > 0) while (this.messages.length && this.messages[0]!.time <= now - maxAge) this.messages.shift();
    const window = duplicateWindowMs(this.config);
    for (const [id, e] of this.ids) if (e.time <= now - window) this.ids.delete(id);
  }

  append(subject: string, data: Uint8Array, headers: Headers, msgId: string, now: number): number {
    const seq = ++this.lastSeq;
    this.messages.push({ seq, subject, data, headers, msgId, time: now });
    if (msgId) this.ids.set(msgId, { seq, time: now });
    for (const d of this.durables.values()) d.notify();
    return seq;
  }
}

interface Pending { deliveries: number; due: number }

/** Progress of one durable name; shared by every consume() session using it. */
class DurableState {
  delivered = 0; // highest seq handed out at least once
  readonly pending = new Map<number, Pending>();
  private readonly waiters = new Set<() => void>();
  constructor(readonly stream: MemStream, public opts: Required<Omit<ConsumerOptions, "filterSubject">> & { filterSubject?: string }, private readonly clock: Clock) {}

  notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Next message to hand out: due redeliveries first, then new ones within the max-ack-pending window. */
  take(): { stored: Stored; deliveries: number } | undefined {
    this.stream.trim(this.clock.now());
    const now = Date.now();
    for (const seq of [...this.pending.keys()].sort((a, b) => a - b)) {
      const p = this.pending.get(seq)!;
      const stored = this.stream.get(seq);
      if (!stored) { this.pending.delete(seq); continue; } // aged out
      if (p.due > now) continue;
      p.deliveries++;
      p.due = now + this.opts.ackWaitMs;
      return { stored, deliveries: p.deliveries };
    }
    if (this.pending.size >= this.opts.maxAckPending) return undefined;
    const first = this.stream.messages[0]?.seq ?? this.stream.lastSeq + 1;
    for (let seq = Math.max(this.delivered + 1, first); seq <= this.stream.lastSeq; seq++) {
      const stored = this.stream.get(seq)!;
      this.delivered = seq;
      if (this.opts.filterSubject && !subjectMatches(this.opts.filterSubject, stored.subject)) continue;
      this.pending.set(seq, { deliveries: 1, due: now + this.opts.ackWaitMs });
      return { stored, deliveries: 1 };
    }
    return undefined;
  }

  /** Resolves on any change (publish, ack, nak, stop) or when the next redelivery falls due. */
  wait(): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = () => { clearTimeout(timer); this.waiters.delete(wake); resolve(); };
      this.waiters.add(wake);
      const dues = [...this.pending.values()].map((p) => p.due);
      if (dues.length) timer = setTimeout(wake, Math.max(0, Math.min(...dues) - Date.now()));
    });
  }

  ack(seq: number): void {
    if (this.pending.delete(seq)) this.notify();
  }

  nak(seq: number, delayMs: number): void {
    const p = this.pending.get(seq);
    if (!p) return; // already acked
    p.due = Date.now() + Math.max(0, delayMs);
    this.notify();
  }
}

class MemoryConsumer implements Consumer {
  private stopped = false;
  readonly done: Promise<void>;
  constructor(
    readonly state: DurableState,
    private readonly handler: (msg: DurableMessage) => Promise<void> | void,
    private readonly onError: (err: unknown) => void,
    private readonly onEnd: () => void,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    await new Promise((r) => setImmediate(r)); // never deliver inside consume()
    while (!this.stopped) {
      const next = this.state.take();
      if (!next) { await this.state.wait(); continue; }
      const { stored, deliveries } = next;
      const state = this.state;
      const msg: DurableMessage = {
        subject: stored.subject, data: stored.data, headers: { ...stored.headers },
        seq: stored.seq, msgId: stored.msgId, deliveries,
        ack: () => state.ack(stored.seq),
        nak: (delayMs?: number) => state.nak(stored.seq, delayMs ?? retryDelayMs(deliveries)),
      };
      try {
        await this.handler(msg);
      } catch (err) {
        this.onError(err);
        msg.nak();
      }
    }
    this.onEnd();
  }

  /** Finishes the in-flight handler; its message and later ones stay for the next session. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.state.notify();
    await this.done;
  }
}

export interface MemoryBusOptions {
  clock?: Clock;
  /** Where subscriber and handler exceptions go; defaults to console.error. */
  onError?: (err: unknown) => void;
}

export class MemoryBus implements Bus {
  private readonly clock: Clock;
  private readonly onError: (err: unknown) => void;
  private readonly subs = new Set<{ pattern: string; handler: (msg: BusMessage) => void }>();
  private readonly streams = new Map<string, MemStream>();
  private readonly sessions = new Set<MemoryConsumer>();
  private closed = false;

  constructor(opts: MemoryBusOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.onError = opts.onError ?? ((err) => console.error("bus handler failed", err));
  }

  publish(subject: string, data: Uint8Array, headers?: Headers): void {
    this.checkPublishable(subject);
    const msg = { subject, data: data.slice(), headers: withTrace(headers) };
    this.fanOut(msg);
    // As on JetStream, a core publish on a stream's subject is stored too.
    const stream = this.streamFor(subject);
    if (stream) stream.append(subject, msg.data, msg.headers, "", this.clock.now());
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void): Subscription {
    if (this.closed) throw new Error("bus closed");
    const sub = { pattern: subject, handler };
    this.subs.add(sub);
    return { unsubscribe: () => void this.subs.delete(sub) };
  }

  onReconnect(_listener: () => void): () => void {
    return () => {}; // an in-process bus has no outages
  }

  async ensureStream(config: StreamConfig): Promise<void> {
    if (this.closed) throw new Error("bus closed");
    if (!config.name || config.subjects.length === 0) throw new Error("stream needs a name and subjects");
    duplicateWindowMs(config); // validates
    for (const other of this.streams.values()) {
      if (other.config.name === config.name) continue;
      if (config.subjects.some((a) => other.config.subjects.some((b) => patternsOverlap(a, b)))) {
        throw new Error(`subjects of ${config.name} overlap stream ${other.config.name}`);
      }
    }
    const existing = this.streams.get(config.name);
    if (existing) existing.config = { ...config };
    else this.streams.set(config.name, new MemStream({ ...config }));
  }

  async publishDurable(subject: string, data: Uint8Array, opts: { msgId: string; headers?: Headers }): Promise<PublishAck> {
    this.checkPublishable(subject);
    const stream = this.streamFor(subject);
    if (!stream) throw new Error(`no stream captures subject ${subject}`);
    const now = this.clock.now();
    stream.trim(now);
    const seen = opts.msgId ? stream.ids.get(opts.msgId) : undefined;
    if (seen) return { stream: stream.config.name, seq: seen.seq, duplicate: true };
    const msg = { subject, data: data.slice(), headers: withTrace(opts.headers) };
    const seq = stream.append(subject, msg.data, msg.headers, opts.msgId, now);
    this.fanOut(msg);
    return { stream: stream.config.name, seq, duplicate: false };
  }

  async consume(opts: ConsumerOptions, handler: (msg: DurableMessage) => Promise<void> | void): Promise<Consumer> {
    if (this.closed) throw new Error("bus closed");
    const stream = this.streams.get(opts.stream);
    if (!stream) throw new Error(`stream ${opts.stream} not found`);
    const settings = {
      stream: opts.stream, durable: opts.durable, filterSubject: opts.filterSubject,
      ackWaitMs: opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS, maxAckPending: opts.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
    };
    let state = stream.durables.get(opts.durable);
    if (state) state.opts = settings; // like a consumer update
    else stream.durables.set(opts.durable, (state = new DurableState(stream, settings, this.clock)));
    const session: MemoryConsumer = new MemoryConsumer(state, handler, this.onError, () => this.sessions.delete(session));
    this.sessions.add(session);
    return session;
  }

  async deleteConsumer(streamName: string, durable: string): Promise<boolean> {
    const stream = this.streams.get(streamName);
    const state = stream?.durables.get(durable);
    if (!stream || !state) return false;
    await Promise.all([...this.sessions].filter((s) => s.state === state).map((s) => s.stop()));
    return stream.durables.delete(durable);
  }

  /** Removes a stream, its messages and its durable consumers. */
  async deleteStream(name: string): Promise<boolean> {
    const stream = this.streams.get(name);
    if (!stream) return false;
    await Promise.all([...this.sessions].filter((s) => s.state.stream === stream).map((s) => s.stop()));
    return this.streams.delete(name);
  }

  /** Resolves after every delivery scheduled so far has run. */
  async flush(): Promise<void> {
    await new Promise((r) => setImmediate(r));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.sessions].map((s) => s.stop()));
    this.subs.clear();
  }

  private checkPublishable(subject: string): void {
    if (this.closed) throw new Error("bus closed");
    if (!subject || subject.split(".").some((t) => t === "" || t === "*" || t === ">")) {
      throw new Error(`invalid publish subject "${subject}"`);
    }
  }

  private streamFor(subject: string): MemStream | undefined {
    for (const s of this.streams.values()) if (s.config.subjects.some((p) => subjectMatches(p, subject))) return s;
    return undefined;
  }

  /** Delivers on a later turn, never inside publish(), in publish order per subscriber. */
  private fanOut(msg: BusMessage): void {
    const targets = [...this.subs].filter((s) => subjectMatches(s.pattern, msg.subject));
    if (targets.length === 0) return;
    setImmediate(() => {
      for (const s of targets) {
        if (!this.subs.has(s)) continue; // unsubscribed meanwhile
        try {
          s.handler({ subject: msg.subject, data: msg.data, headers: { ...msg.headers } });
        } catch (err) {
          this.onError(err);
        }
      }
    });
  }
}

/** Copies the caller's headers and adds the active trace context. */
function withTrace(headers: Headers | undefined): Headers {
  const out: Headers = { ...headers };
  injectContext(out);
  return out;
}
