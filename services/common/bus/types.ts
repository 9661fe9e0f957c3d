/**
 * The bus between pods: NATS JetStream in production, an in-process
 * implementation for `parley up` and unit tests. Services depend only on
 * these interfaces.
 *
 *   const bus = await NatsBus.connect({ servers: "127.0.0.1:4222" });
 *   const sub = bus.subscribe("relay.wake.device.d1", (m) => wake(m.subject));
 *   bus.publish("relay.wake.device.d1", new Uint8Array());
 */

export type Headers = Record<string, string>;

export interface BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Headers;
}

export interface Subscription {
  unsubscribe(): void;
}

/** A message taken from a durable stream; ack only once its effect is durable. */
export interface DurableMessage extends BusMessage {
  /** Position in the stream (1-based, strictly increasing). */
  readonly seq: number;
  readonly msgId: string;
  /** Times this message has been delivered (1 on first delivery). */
  readonly deliveries: number;
  ack(): void;
  /** Ask for redelivery later (after delayMs, default the consumer's backoff). */
  nak(delayMs?: number): void;
}

export interface StreamConfig {
  name: string;
  subjects: string[];
  /** Keep messages at most this long (ms); 0 or undefined keeps them until limits. */
  maxAgeMs?: number;
  /** Window within which a repeated msgId is dropped as a duplicate (ms). */
  duplicateWindowMs?: number;
}

export interface PublishAck {
  stream: string;
  seq: number;
  /** True when the stream had already stored a message with this msgId. */
  duplicate: boolean;
}

export interface ConsumerOptions {
  stream: string;
  /** Durable consumer name: progress survives restarts of the consumer. */
  durable: string;
  filterSubject?: string;
  /** Redeliver a message not acked within this time (ms). */
  ackWaitMs?: number;
  /** Most messages handed out and not yet acked. */
  maxAckPending?: number;
}

export interface Consumer {
  /** Stops delivery; messages not acked are redelivered to the next consumer. */
  stop(): Promise<void>;
}

export interface Bus {
  /** At-most-once notification (core NATS): cheap, never stored. */
  publish(subject: string, data: Uint8Array, headers?: Headers): void;
  /** Subjects use NATS tokens: `*` matches one token, `>` the rest. */
  subscribe(subject: string, handler: (msg: BusMessage) => void): Subscription;
  /**
   * Called after the connection comes back from an outage: notifications
   * published meanwhile were lost, so subscribers re-check what they watch.
   */
  onReconnect(listener: () => void): () => void;

  /** Creates or updates a durable stream. */
  ensureStream(config: StreamConfig): Promise<void>;
  /** Stores a message durably; resolves once the stream has accepted it. */
  publishDurable(subject: string, data: Uint8Array, opts: { msgId: string; headers?: Headers }): Promise<PublishAck>;
  /** Delivers stream messages in order to handler; at-least-once. */
  consume(opts: ConsumerOptions, handler: (msg: DurableMessage) => Promise<void> | void): Promise<Consumer>;
  /**
   * Removes a durable consumer and its progress, stopping this bus's
   * consume() sessions of it first; false when there was none. For readers
   * whose name will not be used again (a stopped durable otherwise stays on
   * the server for good).
   */
  deleteConsumer(stream: string, durable: string): Promise<boolean>;

  /** Resolves when everything published so far has reached the server. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
