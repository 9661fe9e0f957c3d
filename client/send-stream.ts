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
 */
import * as grpc from "@grpc/grpc-js";
import type * as pb from "../generated/parley/v1/relay.js";
import { batchReceiptStatement } from "../services/common/receipts.js";
import { backoffMs, delay } from "./delay.js";
import { ParleyClientError, fromServiceError, isExpiredSession, isRetryable } from "./errors.js";
import { RelayVerificationError, checkRelaySignature } from "./verify.js";

/** What the stream needs from its RelayClient. */
export interface SendStreamHost {
  deviceId: string;
  /** Opens SendStream on the current address (signing in first when needed). */
  open(): Promise<grpc.ClientDuplexStream<pb.SendRequest, pb.SendStreamAck>>;
  /** The next address, after a transient failure. */
  rotate(): void;
  /** Forgets the session token (it expired): the next open signs in again. */
  forgetSession(): void;
  relayKey(): Promise<{ id: string; key: Uint8Array }>;
  /** Give up on a broken stream after this long without an answer (ms). */
  retryBudgetMs: number;
}

interface InFlight {
  req: pb.SendRequest;
  resolve: (r: pb.SendReceipt) => void;
  reject: (err: Error) => void;
}

export class SendStream {
  /** Written on the current call and not yet settled, in order. */
  private readonly inFlight: InFlight[] = [];
  private call: grpc.ClientDuplexStream<pb.SendRequest, pb.SendStreamAck> | undefined;
  private opening: Promise<void> | undefined;
  /** Answers so far on the current call (the position the next answer must start at). */
  private settled = 0;
  private closed = false;
  private brokenSince: number | undefined;
  private attempt = 0;
  /** Waiting out the backoff before the next call. */
  private backingOff = false;
  private relay: { id: string; key: Uint8Array } | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly host: SendStreamHost) {}

  /** Resolves once the relay has committed the message; rejects with the relay's refusal. */
  send(req: pb.SendRequest): Promise<pb.SendReceipt> {
    if (this.closed) return Promise.reject(new Error("the send stream is closed"));
    return new Promise((resolve, reject) => {
      this.inFlight.push({ req, resolve, reject });
      if (this.call) this.call.write(req);
      else if (!this.backingOff) this.connect();
    });
  }

  /** Waits until every message sent is settled, then ends the call. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight.length) await new Promise<void>((resolve) => (this.idle = resolve));
    const call = this.call;
    this.call = undefined;
    call?.end();
  }

  private connect(): void {
    if (this.call || this.opening || !this.inFlight.length) return;
    this.opening = this.openCall().finally(() => (this.opening = undefined));
  }

  private async openCall(): Promise<void> {
    let call: grpc.ClientDuplexStream<pb.SendRequest, pb.SendStreamAck>;
    try {
      this.relay = await this.host.relayKey();
      call = await this.host.open();
    } catch (err) {
      return this.broken(fromServiceError(err));
    }
    this.call = call;
    this.settled = 0;
    call.on("data", (ack: pb.SendStreamAck) => {
      if (this.call !== call) return;
      try {
        this.answer(ack);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    call.on("error", (err) => {
      if (this.call === call) this.broken(fromServiceError(err));
    });
    call.on("end", () => {
      if (this.call === call && this.inFlight.length) this.broken(new ParleyClientError(grpc.status.UNAVAILABLE, "the relay ended the send stream with messages unsettled"));
    });
    // Everything unsettled, in order: on a new call that is all of inFlight.
    for (const f of this.inFlight) call.write(f.req);
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
    const call = this.call;
    this.call = undefined;
    call?.cancel();
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
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    for (const f of this.inFlight.splice(0)) f.reject(err);
    this.brokenSince = undefined;
    this.attempt = 0;
    this.idle?.();
  }
}
