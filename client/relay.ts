/**
 * The relay SDK: registration, challenge-response sign-in, send, and an inbox
 * that survives disconnects. Give it several addresses (or one Service
 * address that moves) and it fails over with backoff.
 *
 *   const relay = RelayClient.create({ addresses: ["127.0.0.1:50051"], device });
 *   await relay.send({ to: [{ identityId: "bob" }], payload: Buffer.from("hi") });
 *   await relay.inbox(async (m) => console.log(m.payload.toString()), { follow: true, signal });
 */
import { randomBytes, randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { Statements, signBytes, type KeyPair } from "../services/common/crypto.js";
import { RecentMap } from "../services/common/recent.js";
import { injectContext } from "../services/common/tracing.js";
import * as pb from "../generated/parley/v1/relay.js";
import { ParleyClientError, fromServiceError, isExpiredSession, isRetryable } from "./errors.js";
import { RelayVerificationError, checkRelaySignature } from "./verify.js";
import { batchReceiptStatement, receiptStatement } from "../services/common/receipts.js";
import { backoffMs, delay } from "./delay.js";
import { SendStream, type RelayIdentity } from "./send-stream.js";
import { decodeFetchEvent, encodeSendBatchRequest, encodeSendRequest, type InboxEvent } from "./wire.js";

export interface DeviceCredentials {
  identityId: string;
  deviceId: string;
  privateKeyPem: string;
}

export type Recipient = { deviceId: string } | { identityId: string };

export interface OutgoingMessage {
  to: Recipient[];
  payload: Uint8Array;
  /** Defaults to a random UUID; reuse it to resend without duplicating. */
  messageId?: string;
  contentType?: string;
}

/** Messages sent one by one on one SendStream call (RelayClient.sendStream). */
export interface MessageStream {
  /** Resolves once the relay has committed the message; rejects with its refusal. Safe to retry. */
  send(message: OutgoingMessage): Promise<pb.SendReceipt>;
  /** Waits for every message sent to settle, then ends the call. */
  close(): Promise<void>;
}

export interface InboxMessage {
  queue: "device" | "identity";
  seq: number;
  messageId: string;
  senderDeviceId: string;
  senderIdentityId: string;
  payload: Uint8Array;
  contentType: string;
  enqueuedAtMs: number;
}

export interface InboxOptions {
  /** Keep listening after the backlog (default false: return when caught up). */
  follow?: boolean;
  signal?: AbortSignal;
  /** Acknowledge after the handler returns (default true). */
  ack?: boolean;
  /** Called each time a stream has delivered its backlog. */
  onBacklogComplete?: () => void;
  /** Called when the stream breaks and the inbox reconnects. */
  onReconnect?: (err: Error, attempt: number) => void;
}

export interface RelayClientOptions {
  addresses: string[];
  device?: DeviceCredentials;
  /** The relay key to trust; when absent, the key the relay presents is pinned (see onRelayKey). */
  relayPublicKey?: Uint8Array;
  onRelayKey?: (relayId: string, key: Uint8Array) => void;
  /** Per-call deadline for unary calls (ms, default 15000). */
  deadlineMs?: number;
  /** Most attempts across addresses for a retryable unary call (default 8). */
  maxAttempts?: number;
  /** Stop retrying a unary call after this long (ms, default 20000); the last error is thrown. */
  retryBudgetMs?: number;
}

/**
 * The generated client with the SDK's own codecs (wire.ts) for the requests it
 * sends most and the events it receives most; fetch() yields InboxEvents.
 */
const RelayStub = grpc.makeGenericClientConstructor(
  {
    ...pb.RelayService,
    send: { ...pb.RelayService.send, requestSerialize: encodeSendRequest },
    sendBatch: { ...pb.RelayService.sendBatch, requestSerialize: encodeSendBatchRequest },
    sendStream: { ...pb.RelayService.sendStream, requestSerialize: encodeSendRequest },
    sendStreamBatches: { ...pb.RelayService.sendStreamBatches, requestSerialize: encodeSendBatchRequest },
    fetch: { ...pb.RelayService.fetch, responseDeserialize: decodeFetchEvent },
  },
  "parley.v1.Relay",
) as unknown as typeof pb.RelayClient;

export class RelayClient {
  private readonly clients: pb.RelayClient[];
  private current = 0;
  private relay: RelayIdentity | undefined;
  private session: { token: string; expiresAtMs: number } | undefined;
  private readonly recentIds = new RecentMap<true>(10_000);

  private constructor(private readonly opts: RelayClientOptions) {
    if (!opts.addresses.length) throw new Error("RelayClient needs at least one relay address");
    // No grpc-js transparent retries: the SDK retries and fails over itself
    // (unary(), inbox(), SendStream), and the retry layer keeps a copy of
    // every message written (bench/relay: load generator CPU 2.1-2.3 -> 1.9-2.0 s
    // per 30k messages sent with SendBatch).
    this.clients = opts.addresses.map(
      (a) =>
        new RelayStub(a, grpc.credentials.createInsecure(), {
          "grpc.max_receive_message_length": 64 * 1024 * 1024,
          "grpc.enable_retries": 0,
          "grpc.initial_reconnect_backoff_ms": 200,
          "grpc.max_reconnect_backoff_ms": 2000,
        }),
    );
  }

  /** Builds a client; no I/O happens until the first call. */
  static create(opts: RelayClientOptions): RelayClient {
    return new RelayClient(opts);
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  get deviceId(): string | undefined {
    return this.opts.device?.deviceId;
  }

  /** Relay info, verifying (or pinning) the relay's key. */
  async info(): Promise<pb.RelayInfo> {
    const info = await this.unary<pb.RelayInfo>((c, md, o, cb) => c.getRelayInfo({}, md, o, cb), false);
    if (this.opts.relayPublicKey && !Buffer.from(this.opts.relayPublicKey).equals(Buffer.from(info.publicKey))) {
      throw new RelayVerificationError(`relay '${info.relayId}' presents a key different from the pinned one`);
    }
    if (!this.relay) {
      this.relay = { id: info.relayId, key: info.publicKey, sendStreamBatches: info.sendStreamBatches, maxBatchMessages: info.maxBatchMessages };
      if (!this.opts.relayPublicKey) this.opts.onRelayKey?.(info.relayId, info.publicKey);
    }
    return info;
  }

  private async relayKey(): Promise<RelayIdentity> {
    if (!this.relay) await this.info();
    return this.relay!;
  }

  async registerIdentity(identityId: string, keys: KeyPair): Promise<boolean> {
    const relay = await this.relayKey();
    const signature = signBytes(keys.privateKeyPem, Statements.registerIdentity(identityId, keys.publicKey));
    const res = await this.unary<pb.Registration>((c, md, o, cb) => c.registerIdentity({ identityId, publicKey: keys.publicKey, signature }, md, o, cb), false);
    checkRelaySignature(relay.key, relay.id, Statements.relayRegistration("identity", identityId, keys.publicKey), res.relaySignature, "identity registration");
    return res.created;
  }

  /** Registers a device, signed by its identity's private key. */
  async registerDevice(identityId: string, identityPrivateKeyPem: string, deviceId: string, devicePublicKey: Uint8Array): Promise<boolean> {
    const relay = await this.relayKey();
    const identitySignature = signBytes(identityPrivateKeyPem, Statements.registerDevice(identityId, deviceId, devicePublicKey));
    const res = await this.unary<pb.Registration>(
      (c, md, o, cb) => c.registerDevice({ deviceId, identityId, publicKey: devicePublicKey, identitySignature }, md, o, cb),
      false,
    );
    checkRelaySignature(relay.key, relay.id, Statements.relayRegistration("device", deviceId, devicePublicKey), res.relaySignature, "device registration");
    return res.created;
  }

  /** Challenge-response sign-in; the token is kept and renewed before it expires. */
  async authenticate(): Promise<pb.Session> {
    const device = this.requireDevice();
    const relay = await this.relayKey();
    const clientNonce = randomBytes(16);
    const ch = await this.unary<pb.Challenge>((c, md, o, cb) => c.getChallenge({ deviceId: device.deviceId, clientNonce }, md, o, cb), false);
    checkRelaySignature(relay.key, relay.id, Statements.relayChallenge(clientNonce, ch.challenge), ch.relaySignature, "challenge");
    const signature = signBytes(device.privateKeyPem, Statements.authenticate(device.deviceId, ch.challenge));
    const s = await this.unary<pb.Session>((c, md, o, cb) => c.authenticate({ deviceId: device.deviceId, challenge: ch.challenge, signature }, md, o, cb), false);
    checkRelaySignature(relay.key, relay.id, Statements.relaySession(s.token), s.relaySignature, "session");
    this.session = { token: s.token, expiresAtMs: s.expiresAtMs };
    return s;
  }

  async lookupIdentity(identityId: string): Promise<pb.IdentityInfo> {
    return this.unary<pb.IdentityInfo>((c, md, o, cb) => c.lookupIdentity({ identityId }, md, o, cb));
  }

  /** Sends one message; resolves once the relay has committed it. Safe to retry. */
  async send(message: OutgoingMessage): Promise<pb.SendReceipt> {
    const req = toSendRequest(message);
    const receipt = await this.unary<pb.SendReceipt>((c, md, o, cb) => c.send(req, md, o, cb));
    await this.checkReceipt(receipt);
    return receipt;
  }

  /** Sends many messages in one transaction (all or none). */
  async sendBatch(messages: OutgoingMessage[]): Promise<pb.SendReceipt[]> {
    const req = { messages: messages.map(toSendRequest) };
    const res = await this.unary<pb.SendBatchResponse>((c, md, o, cb) => c.sendBatch(req, md, o, cb));
    const relay = await this.relayKey();
    const what = `receipts for ${res.receipts.length} messages`;
    if (res.receipts.length !== messages.length || res.receipts.some((r, i) => r.messageId !== req.messages[i]!.messageId)) {
      throw new RelayVerificationError(`${what}: they do not match the ${messages.length} messages sent, in order`);
    }
    checkRelaySignature(relay.key, relay.id, batchReceiptStatement(this.requireDevice().deviceId, res.receipts), res.relaySignature, what);
    return res.receipts;
  }

  /**
   * A stream for sending many messages with many in flight (SendStream):
   * each send() resolves once its message is committed. See send-stream.ts.
   */
  sendStream(): MessageStream {
    const stream = new SendStream({
      deviceId: this.requireDevice().deviceId,
      open: async (batches) => {
        const md = await this.metadata(true);
        const c = this.clients[this.current]!;
        return batches ? { batches: true, call: c.sendStreamBatches(md) } : { batches: false, call: c.sendStream(md) };
      },
      rotate: () => this.rotate(),
      forgetSession: () => (this.session = undefined),
      relayKey: () => this.relayKey(),
      retryBudgetMs: this.opts.retryBudgetMs ?? 20_000,
    });
    return { send: (message) => stream.send(toSendRequest(message)), close: () => stream.close() };
  }

  async ack(deviceSeq: number, identitySeq: number): Promise<number> {
    const res = await this.unary<pb.AckResponse>((c, md, o, cb) => c.ack({ deviceSeq, identitySeq }, md, o, cb));
    return res.deleted;
  }

  /**
   * Delivers queued messages to handler in queue order, then (with follow)
   * live ones. On a broken stream it reconnects — to the next address, with
   * backoff — and resumes after the last handled message: nothing is lost,
   * and a message seen again after a reconnect is dropped by message id.
   */
  async inbox(handler: (m: InboxMessage) => Promise<void> | void, opts: InboxOptions = {}): Promise<void> {
    const ack = opts.ack ?? true;
    const pos = { device: 0, identity: 0 };
    const acks = new AckPump(pos, (d, i) => this.ack(d, i));
    const flushAcks = () => (ack ? acks.flush() : Promise.resolve());
    for (let attempt = 0; !opts.signal?.aborted; ) {
      try {
        // Not an async function: a handler that returns nothing costs no promise per message.
        const handled = (m: InboxMessage, key: string) => {
          this.recentIds.set(key, true);
          pos[m.queue] = m.seq;
          attempt = 0;
          if (ack) acks.handled();
        };
        const done = await this.streamOnce(pos, opts, (m) => {
          const key = `${m.senderDeviceId}/${m.messageId}`;
          const result = this.recentIds.has(key) ? undefined : handler(m);
          if (!result) return handled(m, key);
          return result.then(() => handled(m, key));
        }, flushAcks);
        await flushAcks();
        if (done) return;
      } catch (err) {
        if (opts.signal?.aborted) break;
        const e = fromServiceError(err);
        if (!isRetryable(e) && !isExpiredSession(e)) throw e;
        attempt++;
        opts.onReconnect?.(e, attempt);
        this.rotate();
        if (e instanceof ParleyClientError && e.code === grpc.status.UNAUTHENTICATED) this.session = undefined;
        await delay(backoffMs(attempt, 50), opts.signal);
      }
    }
    await flushAcks().catch(() => undefined);
  }

  /** One Fetch stream; true when it ended normally (backlog done, no follow). */
  private async streamOnce(
    pos: { device: number; identity: number },
    opts: InboxOptions,
    onMessage: (m: InboxMessage) => Promise<void> | void,
    onIdle: () => Promise<void>,
  ): Promise<boolean> {
    const md = await this.metadata(true);
    const call = this.clients[this.current]!.fetch({ follow: opts.follow ?? false, deviceAfterSeq: pos.device, identityAfterSeq: pos.identity, batched: true }, md);
    const abort = () => call.cancel();
    opts.signal?.addEventListener("abort", abort);
    try {
      // The stub decodes events with decodeFetchEvent (wire.ts).
      for await (const ev of call as unknown as AsyncIterable<InboxEvent>) {
        if (ev.kind === "backlogComplete") {
          await onIdle();
          opts.onBacklogComplete?.();
        } else if (ev.kind === "messages") {
          for (const m of ev.messages) {
            const done = onMessage(m);
            if (done) await done;
          }
        }
      }
      return true;
    } catch (err) {
      if (opts.signal?.aborted) return true;
      throw err;
    } finally {
      opts.signal?.removeEventListener("abort", abort);
    }
  }

  private async checkReceipt(r: pb.SendReceipt): Promise<void> {
    const relay = await this.relayKey();
    checkRelaySignature(relay.key, relay.id, receiptStatement(this.requireDevice().deviceId, r), r.relaySignature, `receipt for ${r.messageId}`);
  }

  private requireDevice(): DeviceCredentials {
    if (!this.opts.device) throw new Error("this client has no device credentials");
    return this.opts.device;
  }

  private async metadata(authenticated: boolean): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    // Continue the caller's trace on the relay (W3C traceparent/tracestate).
    const carrier: Record<string, string> = {};
    injectContext(carrier);
    for (const [k, v] of Object.entries(carrier)) md.set(k, v);
    if (authenticated) {
      if (!this.session || this.session.expiresAtMs - 30_000 < Date.now()) await this.authenticate();
      md.set("authorization", `Bearer ${this.session!.token}`);
    }
    return md;
  }

  private rotate(): void {
    this.current = (this.current + 1) % this.clients.length;
  }

  /** Runs a unary call, failing over to the next address on transient errors. */
  private async unary<T>(
    call: (c: pb.RelayClient, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: T) => void) => void,
    authenticated = true,
  ): Promise<T> {
    const maxAttempts = this.opts.maxAttempts ?? 8;
    const giveUpAt = Date.now() + (this.opts.retryBudgetMs ?? 20_000);
    for (let attempt = 1; ; attempt++) {
      try {
        const md = await this.metadata(authenticated);
        return await new Promise<T>((resolve, reject) =>
          call(this.clients[this.current]!, md, { deadline: Math.min(giveUpAt, Date.now() + (this.opts.deadlineMs ?? 15_000)) }, (err, res) => (err ? reject(err) : resolve(res))),
        );
      } catch (err) {
        const e = fromServiceError(err);
        const expired = isExpiredSession(e);
        if (expired) this.session = undefined;
        if (attempt >= maxAttempts || Date.now() > giveUpAt || !(isRetryable(e) || expired)) throw e;
        if (!expired) this.rotate();
        await delay(backoffMs(attempt, 25));
      }
    }
  }
}

/**
 * Handled messages that make the pump ack at once. Each ack is a call and a
 * Postgres commit; at 64 a busy SendStream benchmark acked every ~73 messages
 * (849 acks per 62k), and 256 gave 14.4-15.2k -> 14.9-16.6k msgs/s (bench/relay,
 * four alternating rounds). A crash redelivers at most this many more (dropped by id).
 */
const ACK_AFTER = 256;

/**
 * Cumulative acks sent beside the message loop, never blocking it: at most
 * one Ack call in flight, fired after ACK_AFTER handled messages or 20 ms of quiet,
 * each covering everything handled so far. A failed ack is harmless (the next
 * one covers it; at worst messages are delivered again and dropped by id).
 */
class AckPump {
  private readonly acked = { device: 0, identity: 0 };
  private inFlight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pos: { device: number; identity: number },
    private readonly send: (deviceSeq: number, identitySeq: number) => Promise<unknown>,
  ) {}

  private get pending(): number {
    return this.pos.device - this.acked.device + (this.pos.identity - this.acked.identity);
  }

  handled(): void {
    // While an ack is in flight, its completion looks again (no promise per message).
    if (this.inFlight) return;
    if (this.pending >= ACK_AFTER) void this.kick().catch(() => undefined);
    else this.timer ??= setTimeout(() => void this.kick().catch(() => undefined), 20);
  }

  /** Resolves once everything handled so far is acknowledged. */
  async flush(): Promise<void> {
    while (this.pending > 0 || this.inFlight) await this.kick();
  }

  private kick(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight || this.pending === 0) return this.inFlight ?? Promise.resolve();
    const target = { ...this.pos };
    this.inFlight = this.send(target.device > this.acked.device ? target.device : 0, target.identity > this.acked.identity ? target.identity : 0)
      .then(() => {
        this.acked.device = Math.max(this.acked.device, target.device);
        this.acked.identity = Math.max(this.acked.identity, target.identity);
      })
      .finally(() => {
        this.inFlight = undefined;
        // What was handled meanwhile: at once past ACK_AFTER, else after the quiet period.
        if (this.pending >= ACK_AFTER) void this.kick().catch(() => undefined);
        else if (this.pending > 0) this.timer ??= setTimeout(() => void this.kick().catch(() => undefined), 20);
      });
    return this.inFlight;
  }
}

function toSendRequest(m: OutgoingMessage): pb.SendRequest {
  return {
    messageId: m.messageId ?? randomUUID(),
    recipients: m.to.map((r) => ({ target: "deviceId" in r ? { $case: "deviceId" as const, value: r.deviceId } : { $case: "identityId" as const, value: r.identityId } })),
    payload: m.payload,
    contentType: m.contentType ?? "",
  };
}
