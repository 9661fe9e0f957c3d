/**
 * The SDK side of SendStream (publish with confirms): send() writes one
 * message and resolves with its receipt once the relay has committed it, so
 * a sender keeps as many messages in flight as it likes on one call.
 *
 *   const out = relay.sendStream();
 *   const receipts = await Promise.all(messages.map((m) => out.send(m)));
 *   await out.close();
 *
 * Each answer's receipts are checked against the relay's one signature over
 * them and against the message ids written, in order. When the stream
 * breaks, it reconnects (next address, with backoff) and writes again what
 * is unsettled, in order: the relay drops the ones it had already committed
 * by message id and answers them as duplicates.
 *
 * A relay that offers SendStreamBatches gets what send() was given during
 * one turn of the event loop as one stream message (each still settled on
 * its own): one gRPC message and one HTTP/2 frame on both sides instead of
 * one per message. An instance without it (a rolling upgrade) answers
 * UNIMPLEMENTED, and the stream goes on as SendStream.
 */
import * as grpc from "@grpc/grpc-js";
import type * as pb from "../generated/parley/v1/relay.js";
import { batchReceiptStatement } from "../services/common/receipts.js";
import { backoffMs, delay } from "./delay.js";
import { ParleyClientError, fromServiceError, isExpiredSession, isRetryable } from "./errors.js";
import { RelayVerificationError, checkRelaySignature } from "./verify.js";

/** The relay as its RelayInfo described it (the key pinned). */
export interface RelayIdentity {
  id: string;
  key: Uint8Array;
  /** It offers SendStreamBatches. */
  sendStreamBatches: boolean;
  /** Most messages it takes in one batch (and so in one stream message). */
  maxBatchMessages: number;
}

/** What the stream needs from its RelayClient. */
export interface SendStreamHost {
  deviceId: string;
  /** Opens SendStreamBatches (batches) or SendStream on the current address (signing in first when needed). */
  open(batches: boolean): Promise<OpenCall>;
  /** The next address, after a transient failure. */
  rotate(): void;
  /** Forgets the session token (it expired): the next open signs in again. */
  forgetSession(): void;
  relayKey(): Promise<RelayIdentity>;
  /** Give up on a broken stream after this long without an answer (ms). */
  retryBudgetMs: number;
}

type OpenCall =
  | { batches: false; call: grpc.ClientDuplexStream<pb.SendRequest, pb.SendStreamAck> }
  | {
      batches: true;
      call: grpc.ClientDuplexStream<pb.SendBatchRequest, pb.SendStreamAck>;
      /** Sent during this turn, not yet written on this call. */
      pending?: pb.SendRequest[];
    };

/** Most messages in one SendStreamBatches message (and no more than the relay's maxBatchMessages), and most payload bytes (at least one message). */
const FRAME_MESSAGES = 256;
const FRAME_BYTES = 1024 * 1024;

interface InFlight {
  req: pb.SendRequest;
  resolve: (r: pb.SendReceipt) => void;
  reject: (err: Error) => void;
}

export class SendStream {
  /** Written on the current call and not yet settled, in order. */
  private readonly inFlight: InFlight[] = [];
  private call: OpenCall | undefined;
  /** False once an instance answered SendStreamBatches with UNIMPLEMENTED. */
  private batchesOffered = true;
  private opening: Promise<void> | undefined;
  /** Answers so far on the current call (the position the next answer must start at). */
  private settled = 0;
  private closed = false;
  private brokenSince: number | undefined;
  private attempt = 0;
  /** Waiting out the backoff before the next call. */
  private backingOff = false;
  private relay: RelayIdentity | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly host: SendStreamHost) {}

  /** Resolves once the relay has committed the message; rejects with the relay's refusal. */
  send(req: pb.SendRequest): Promise<pb.SendReceipt> {
    if (this.closed) return Promise.reject(new Error("the send stream is closed"));
    return new Promise((resolve, reject) => {
      this.inFlight.push({ req, resolve, reject });
      if (this.call) this.write(this.call, req);
      else if (!this.backingOff) this.connect();
    });
  }

  private write(open: OpenCall, req: pb.SendRequest): void {
    if (!open.batches) {
      open.call.write(req);
      return;
    }
    if (open.pending) {
      open.pending.push(req);
      return;
    }
    open.pending = [req];
    setImmediate(() => {
      const pending = open.pending!;
      open.pending = undefined;
      // Only on the call they were sent for: a new call writes all of inFlight itself.
      if (this.call === open) for (const frame of this.frames(pending)) open.call.write({ messages: frame });
    });
  }

  /** Waits until every message sent is settled, then ends the call. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight.length) await new Promise<void>((resolve) => (this.idle = resolve));
    const open = this.call;
    this.call = undefined;
    open?.call.end();
  }

  private connect(): void {
    if (this.call || this.opening || !this.inFlight.length) return;
    this.opening = this.openCall().finally(() => (this.opening = undefined));
  }

  private async openCall(): Promise<void> {
    let open: OpenCall;
    try {
      this.relay = await this.host.relayKey();
      open = await this.host.open(this.relay.sendStreamBatches && this.batchesOffered);
    } catch (err) {
      return this.broken(fromServiceError(err));
    }
    this.call = open;
    this.settled = 0;
    const call = open.call;
    call.on("data", (ack: pb.SendStreamAck) => {
      if (this.call !== open) return;
      try {
        this.answer(ack);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    call.on("error", (err) => {
      if (this.call !== open) return;
      const e = fromServiceError(err);
      if (open.batches && e instanceof ParleyClientError && e.code === grpc.status.UNIMPLEMENTED) {
        // An instance that predates SendStreamBatches: the same on SendStream.
        this.batchesOffered = false;
        this.call = undefined;
        this.connect();
        return;
      }
      this.broken(e);
    });
    call.on("end", () => {
      if (this.call === open && this.inFlight.length) this.broken(new ParleyClientError(grpc.status.UNAVAILABLE, "the relay ended the send stream with messages unsettled"));
    });
    // Everything unsettled, in order: on a new call that is all of inFlight.
    if (open.batches) for (const frame of this.frames(this.inFlight.map((f) => f.req))) open.call.write({ messages: frame });
    else for (const f of this.inFlight) open.call.write(f.req);
  }

  /** Consecutive runs of at most FRAME_MESSAGES (or the relay's maxBatchMessages) requests and FRAME_BYTES of payload (at least one each). */
  private frames(reqs: pb.SendRequest[]): pb.SendRequest[][] {
    const most = Math.max(1, Math.min(FRAME_MESSAGES, this.relay?.maxBatchMessages || FRAME_MESSAGES));
    const out: pb.SendRequest[][] = [];
    let bytes = Infinity;
    for (const r of reqs) {
      const last = out[out.length - 1];
      if (!last || last.length >= most || bytes + r.payload.length > FRAME_BYTES) {
        out.push([r]);
        bytes = r.payload.length;
      } else {
        last.push(r);
        bytes += r.payload.length;
      }
    }
    return out;
  }

  /** Settles the messages an answer covers; throws (and the stream fails) when the answer does not check out. */
  private answer(ack: pb.SendStreamAck): void {
    const what = `send stream answer for messages ${ack.first}..${ack.first + ack.results.length - 1}`;
    if (ack.first !== this.settled || ack.results.length > this.inFlight.length) {
      throw new RelayVerificationError(`${what}: expected answers from position ${this.settled} for at most ${this.inFlight.length} messages`);
    }
    const receipts: pb.SendReceipt[] = [];
    ack.results.forEach((r, i) => {
      if (r.result?.$case !== "receipt") return;
      const sent = this.inFlight[i]!.req.messageId;
      if (r.result.value.messageId !== sent) throw new RelayVerificationError(`${what}: receipt for '${r.result.value.messageId}' where '${sent}' was sent`);
      receipts.push(r.result.value);
    });
    if (receipts.length) checkRelaySignature(this.relay!.key, this.relay!.id, batchReceiptStatement(this.host.deviceId, receipts), ack.relaySignature, what);
    const settledNow = this.inFlight.splice(0, ack.results.length);
    this.settled += settledNow.length;
    this.attempt = 0;
    this.brokenSince = undefined;
    ack.results.forEach((r, i) => {
      const f = settledNow[i]!;
      if (r.result?.$case === "receipt") f.resolve(r.result.value);
      else f.reject(new ParleyClientError(r.result?.value.code ?? grpc.status.UNKNOWN, r.result?.value.message ?? "refused without a reason"));
    });
    if (!this.inFlight.length) this.idle?.();
  }

  /** A transient failure: reconnect and write the unsettled again; otherwise fail them. */
  private broken(err: Error): void {
    const open = this.call;
    this.call = undefined;
    open?.call.cancel();
    if (!this.inFlight.length) return;
    const expired = isExpiredSession(err);
    this.brokenSince ??= Date.now();
    if (!(isRetryable(err) || expired) || Date.now() - this.brokenSince > this.host.retryBudgetMs) return this.fail(err);
    if (expired) this.host.forgetSession();
    else this.host.rotate();
    this.attempt++;
    this.backingOff = true;
    void delay(backoffMs(this.attempt, 25)).then(() => {
      this.backingOff = false;
      this.connect();
    });
  }

  /** Settles everything unsettled with err and drops the call. */
  private fail(err: Error): void {
    const open = this.call;
    this.call = undefined;
    open?.call.cancel();
    for (const f of this.inFlight.splice(0)) f.reject(err);
    this.brokenSince = undefined;
    this.attempt = 0;
    this.idle?.();
  }
}
