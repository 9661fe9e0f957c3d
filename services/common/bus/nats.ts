/**
 * Bus on NATS: core subjects for notifications, JetStream for durable
 * streams. Every publish carries the active trace context in its headers.
 *
 * Durable consumers are pull consumers with explicit ack. A supervision
 * loop owns each consume(): the library's iterator already rides out plain
 * reconnects, and whenever it ends anyway (consumer deleted, stream gone,
 * heartbeats lost, request errors) the loop recreates the consumer and
 * starts again with backoff, until stop().
 */
import { headers as natsHeaders, nanos, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import {
  AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, StorageType, jetstream, jetstreamManager,
  type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg,
} from "@nats-io/jetstream";
import { injectContext } from "../tracing.js";
// Defaults shared with MemoryBus so both behave alike.
import { DEFAULT_ACK_WAIT_MS, DEFAULT_MAX_ACK_PENDING, duplicateWindowMs, retryDelayMs, subjectMatches } from "./memory.js";
import type {
  Bus, BusMessage, Consumer, ConsumerOptions, DurableMessage, Headers, PublishAck, StreamConfig, Subscription,
} from "./types.js";

export interface NatsBusOptions {
  servers: string | string[];
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** Where subscriber/handler exceptions and consumer restarts are reported; defaults to console.error. */
  onError?: (err: unknown) => void;
}

const MSG_ID = "Nats-Msg-Id";

interface LocalSubscription {
  pattern: string;
  handler: (msg: BusMessage) => void;
}

export class NatsBus implements Bus {
  private readonly reconnectListeners = new Set<() => void>();
  /** This bus's subscriptions, which its own publishes reach without the server. */
  private readonly local = new Set<LocalSubscription>();
  private readonly consumers = new Set<NatsConsumer>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly onError: (err: unknown) => void = (err) => console.error("bus:", err),
  ) {
    void this.watchStatus();
  }

  static async connect(opts: NatsBusOptions): Promise<NatsBus> {
    const nc = await connect({
      servers: opts.servers, name: opts.name, user: opts.user, pass: opts.pass, token: opts.token,
      maxReconnectAttempts: -1, // a pod keeps trying; readiness reports the outage meanwhile
      reconnectTimeWait: 1000,
      // This bus hands its own notifications to its own subscribers (publish()):
      // the server need not send them back.
      noEcho: true,
    });
    try {
      return new NatsBus(nc, jetstream(nc), await jetstreamManager(nc), opts.onError);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  /**
   * To other connections through the server; to this bus's own subscribers
   * directly (the connection has noEcho), on a later turn as the server would:
   * a relay's wake-up for a stream it holds itself skips the round trip.
   */
  publish(subject: string, data: Uint8Array, headers?: Headers): void {
    const all: Headers = { ...headers };
    injectContext(all);
    this.nc.publish(subject, data, { headers: toNats(all, true) });
    let targets: LocalSubscription[] | undefined;
    for (const s of this.local) if (subjectMatches(s.pattern, subject)) (targets ??= []).push(s);
    if (!targets) return;
    const msg = { subject, data: data.slice(), headers: all };
    setImmediate(() => {
      for (const s of targets) if (this.local.has(s)) this.deliver(s.handler, { ...msg, headers: { ...msg.headers } });
    });
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void): Subscription {
    const sub = this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) return this.onError(err);
        this.deliver(handler, { subject: m.subject, data: m.data, headers: fromNats(m.headers) });
      },
    });
    const local: LocalSubscription = { pattern: subject, handler };
    this.local.add(local);
    return {
      unsubscribe: () => {
        this.local.delete(local);
        sub.unsubscribe();
      },
    };
  }

  private deliver(handler: (msg: BusMessage) => void, msg: BusMessage): void {
    try {
      handler(msg);
    } catch (e) {
      this.onError(e);
    }
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => void this.reconnectListeners.delete(listener);
  }

  async ensureStream(config: StreamConfig): Promise<void> {
    const cfg = {
      name: config.name,
      subjects: config.subjects,
      storage: StorageType.File,
      max_age: nanos(config.maxAgeMs ?? 0),
      duplicate_window: nanos(duplicateWindowMs(config)),
    };
    try {
      await this.jsm.streams.info(config.name);
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      await this.jsm.streams.add(cfg);
      return;
    }
    const { name, storage: _storage, ...changeable } = cfg; // storage cannot change on update
    await this.jsm.streams.update(name, changeable);
  }

  async publishDurable(subject: string, data: Uint8Array, opts: { msgId: string; headers?: Headers }): Promise<PublishAck> {
    const ack = await this.js.publish(subject, data, { msgID: opts.msgId, headers: toNats(opts.headers) });
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
  }

  async consume(opts: ConsumerOptions, handler: (msg: DurableMessage) => Promise<void> | void): Promise<Consumer> {
    await this.ensureConsumer(opts); // configuration errors surface to the caller
    const consumer: NatsConsumer = new NatsConsumer(this.js, opts, handler, this.onError, () => this.ensureConsumer(opts),
      () => this.nc.isClosed(), () => this.consumers.delete(consumer));
    this.consumers.add(consumer);
    return consumer;
  }

  async deleteConsumer(stream: string, durable: string): Promise<boolean> {
    // Ours first: a running session would recreate the consumer it lost.
    await Promise.all([...this.consumers].filter((c) => c.stream === stream && c.durable === durable).map((c) => c.stop()));
    try {
      return await this.jsm.consumers.delete(stream, durable);
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.ConsumerNotFound) || isApiError(err, JetStreamApiCodes.StreamNotFound)) return false;
      throw err;
    }
  }

  /** Removes a stream and its consumers (tests, admin tools). */
  async deleteStream(name: string): Promise<boolean> {
    try {
      return await this.jsm.streams.delete(name);
    } catch (err) {
      if (isApiError(err, JetStreamApiCodes.StreamNotFound)) return false;
      throw err;
    }
  }

  async flush(): Promise<void> {
    await this.nc.flush();
  }

  /** Stops consumers (finishing in-flight handlers), then drains the connection. */
  async close(): Promise<void> {
    this.local.clear();
    await Promise.all([...this.consumers].map((c) => c.stop()));
    if (!this.nc.isClosed()) await this.nc.drain();
  }

  private async ensureConsumer(opts: ConsumerOptions): Promise<void> {
    const cfg = {
      ack_wait: nanos(opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
      max_ack_pending: opts.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
      ...(opts.filterSubject ? { filter_subject: opts.filterSubject } : {}),
    };
    try {
      await this.jsm.consumers.add(opts.stream, {
        ...cfg, durable_name: opts.durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All,
      });
    } catch (err) {
      // An existing durable with other settings: update what may change.
      if (isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      await this.jsm.consumers.update(opts.stream, opts.durable, cfg);
    }
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type !== "reconnect") continue;
      for (const l of [...this.reconnectListeners]) {
        try {
          l();
        } catch (err) {
          this.onError(err);
        }
      }
    }
  }
}

/** One consume() session: a supervised loop around the library's pull iterator. */
class NatsConsumer implements Consumer {
  private stopping = false;
  private iter?: ConsumerMessages;
  private wakeSleep?: () => void;
  private readonly done: Promise<void>;

  constructor(
    private readonly js: JetStreamClient,
    private readonly opts: ConsumerOptions,
    private readonly handler: (msg: DurableMessage) => Promise<void> | void,
    private readonly onError: (err: unknown) => void,
    private readonly recreate: () => Promise<void>,
    private readonly connectionClosed: () => boolean,
    onEnd: () => void,
  ) {
    this.done = this.run().finally(onEnd);
  }

  get stream(): string {
    return this.opts.stream;
  }

  get durable(): string {
    return this.opts.durable;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping && !this.connectionClosed()) {
      try {
        if (failures > 0) await this.recreate(); // it may have been deleted under us
        const c = await this.js.consumers.get(this.opts.stream, this.opts.durable);
        // Pull no more than the server will hand out anyway, so buffered messages stay few.
        const batch = Math.max(1, Math.min(this.opts.maxAckPending ?? DEFAULT_MAX_ACK_PENDING, 64));
        const iter = await c.consume({ max_messages: batch, abort_on_missing_resource: true });
        this.iter = iter;
        if (this.stopping) iter.stop();
        for await (const m of iter) {
          failures = 0;
          // After stop(), buffered messages go straight back for the next consumer. (The
          // server may still hand one to our abandoned pull request; it returns after ackWait.)
          if (this.stopping) m.nak(0);
          else await this.deliver(m);
        }
        if (this.stopping || this.connectionClosed()) break;
        failures++; // ended without an error we could see: restart it
      } catch (err) {
        if (this.stopping || this.connectionClosed()) break;
        failures++;
        this.onError(new Error(`consumer ${this.opts.stream}/${this.opts.durable} restarting: ${(err as Error).message}`, { cause: err }));
      }
      await this.sleep(Math.min(250 * 2 ** (failures - 1), 10_000));
    }
  }

  private async deliver(m: JsMsg): Promise<void> {
    const deliveries = m.info.deliveryCount;
    const msg: DurableMessage = {
      subject: m.subject, data: m.data, headers: fromNats(m.headers),
      seq: m.seq, msgId: m.headers?.get(MSG_ID) ?? "", deliveries,
      ack: () => m.ack(),
      nak: (delayMs?: number) => m.nak(delayMs ?? retryDelayMs(deliveries)),
    };
    try {
      await this.handler(msg);
    } catch (err) {
      this.onError(err);
      msg.nak(); // ignored by the server if the handler had already acked
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wakeSleep = undefined; resolve(); }, ms);
      this.wakeSleep = () => { clearTimeout(t); resolve(); };
    });
  }

  /** Waits for the in-flight handler; unacked messages are redelivered to the next consumer. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.iter?.stop();
    this.wakeSleep?.();
    await this.done;
  }
}

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/** Caller headers plus the active trace context; undefined when there is nothing to send. */
/** NATS headers of the caller's and the active trace context (publish() has added it already). */
function toNats(headers: Headers | undefined, traced = false): MsgHdrs | undefined {
  const all: Headers = { ...headers };
  if (!traced) injectContext(all);
  const keys = Object.keys(all);
  if (keys.length === 0) return undefined;
  const h = natsHeaders();
  for (const k of keys) h.set(k, all[k]!);
  return h;
}

function fromNats(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const k of h.keys()) if (k !== MSG_ID) out[k] = h.get(k);
  return out;
}
