/**
 * SendStream: publish with confirms. The client writes messages one at a
 * time; each goes through group commit on its own and is settled on its own
 * (a receipt, or a refusal with the status a unary Send would have had).
 * Answers settle requests strictly in the order written, and one answer
 * covers every request settled since the last one under one signature, so a
 * sender with many messages in flight pays one gRPC message and one
 * signature per group commit instead of a unary call and a signature per
 * message.
 *
 * Messages are submitted in the order written, so messages of one stream to
 * one queue get sequence numbers in that order. Reading pauses (and HTTP/2
 * flow control holds the client) while too much is unsettled or the client
 * does not read its answers.
 *
 * SendStreamBatches is the same session over stream messages that each carry
 * several requests (a SendBatchRequest): they are taken one by one, in order,
 * as if written one by one; a frame that does not decode ends the stream
 * with INVALID_ARGUMENT (its requests cannot be counted).
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { InvalidArgumentError, ParleyError } from "../common/errors.js";
import { malformedReason } from "../common/grpc.js";
import type { RelaySignature } from "../../generated/parley/v1/common.js";
import type * as pb from "../../generated/parley/v1/relay.js";
import type { Limits, OutgoingMessage } from "./types.js";
import { toOutgoing } from "./validate.js";

/** Requests read ahead of the one being taken. */
const READ_AHEAD = 64;
/** Payload bytes unsettled on one stream before it stops reading. */
const MAX_UNSETTLED_BYTES = 64 * 1024 * 1024;

/** SendStreamBatches' frames: the requests of each, in order, at most `most` (the relay's maxBatchMessages) per frame. */
export function batchFrame(frame: unknown, most: number): pb.SendRequest[] {
  const reason = malformedReason(frame);
  if (reason) throw new InvalidArgumentError(`a stream message is not a valid parley.v1.SendBatchRequest: ${reason}`);
  const messages = (frame as pb.SendBatchRequest).messages;
  if (messages.length > most) throw new InvalidArgumentError(`a stream message holds ${messages.length} messages; this relay takes at most ${most} in one`);
  return messages;
}

export interface SendStreamDeps {
  limits: Limits;
  /** Refuses a message before it is stored (workspace suspensions). */
  gate(messages: OutgoingMessage[]): Promise<void>;
  /** Queues the messages; resolves once committed. */
  commit(messages: OutgoingMessage[]): Promise<pb.SendReceipt[]>;
  /** False when commits may finish out of order: the stream then commits one message at a time. */
  commitsInOrder: boolean;
  /** The signature over receipts, in order (batch statement). */
  sign(receipts: pb.SendReceipt[]): RelaySignature;
}

interface Slot {
  bytes: number;
  result?: pb.SendStreamResult;
}

export class SendStreamSession {
  /** Written and not yet answered, in order; the first is at position `answered`. */
  private readonly unsettled: Slot[] = [];
  private answered = 0;
  private unsettledBytes = 0;
  private answerScheduled = false;
  /** Set when an unexpected error ends the stream. */
  private failed: unknown;
  /** Set by end(): answer what is in flight, then end with this status. */
  private ending: Error | undefined;
  /** Resolved whenever something changes (a request came, an answer went out, the client drained its side, the end). */
  private more: (() => void) | undefined;
  private clientReading = true;
  /** Requests read and not yet taken; the call is paused while it holds READ_AHEAD. */
  private readonly read: pb.SendRequest[] = [];
  private clientDone = false;

  constructor(
    private readonly deps: SendStreamDeps,
    private readonly stream: ServerDuplexStream<pb.SendRequest, pb.SendStreamAck> | ServerDuplexStream<pb.SendBatchRequest, pb.SendStreamAck>,
    private readonly signal: AbortSignal,
    /** The requests one stream message carries: itself (SendStream), or a batch's (SendStreamBatches). */
    unpack: (frame: unknown) => pb.SendRequest[] = (frame) => [frame as pb.SendRequest],
  ) {
    stream.on("drain", () => {
      this.clientReading = true;
      this.wake();
    });
    // Read with events, not `for await`: leaving an async iterator destroys
    // the call, and a call ended by end() must still send its status.
    stream.on("data", (frame: unknown) => {
      try {
        for (const req of unpack(frame)) this.read.push(req);
      } catch (err) {
        this.end(err as Error);
      }
      if (this.read.length >= READ_AHEAD) stream.pause();
      this.wake();
    });
    stream.on("end", () => {
      this.clientDone = true;
      this.wake();
    });
    signal.addEventListener("abort", () => this.wake(), { once: true });
  }

  /** The next request in the order written; undefined once the client is done or the stream ends. */
  private async nextRequest(): Promise<pb.SendRequest | undefined> {
    for (;;) {
      // Ending: what was read but not taken goes unanswered (the client writes it again elsewhere).
      if (this.failed || this.ending || this.signal.aborted) return undefined;
      const req = this.read.shift();
      if (req) {
        if (this.read.length < READ_AHEAD / 2) this.stream.resume();
        return req;
      }
      if (this.clientDone) return undefined;
      await this.next();
    }
  }

  async run(): Promise<void> {
    for (let req = await this.nextRequest(); req; req = await this.nextRequest()) {
      const slot: Slot = { bytes: 0 };
      this.unsettled.push(slot);
      let message: OutgoingMessage;
      try {
        const reason = malformedReason(req);
        if (reason) throw new InvalidArgumentError(`the message is not a valid parley.v1.SendRequest: ${reason}`);
        message = toOutgoing(req, this.deps.limits);
        // Awaited here, in the order written, so commits are submitted in that order.
        await this.deps.gate([message]);
      } catch (err) {
        this.settle(slot, err);
        continue;
      }
      slot.bytes = message.payload.length;
      this.unsettledBytes += slot.bytes;
      const committed = this.deps.commit([message]).then(
        ([receipt]) => this.settle(slot, undefined, receipt),
        (err: unknown) => this.settle(slot, err),
      );
      if (!this.deps.commitsInOrder) await committed;
      await this.roomForMore();
    }
    // The client has written everything (or the call ended): answer what is in flight.
    while (this.unsettled.length && !this.failed && !this.signal.aborted) await this.next();
    if (this.failed) throw this.failed;
    if (this.ending) throw this.ending;
  }

  /**
   * Stops reading, answers what is in flight, then ends the call with reason
   * (shutdown: UNAVAILABLE, so the client writes what was not read to
   * another instance).
   */
  end(reason: Error): void {
    if (this.ending) return;
    this.ending = reason;
    this.wake();
  }

  private settle(slot: Slot, err: unknown, receipt?: pb.SendReceipt): void {
    if (err !== undefined) {
      if (!(err instanceof ParleyError)) {
        // Not about this message (the database went away, say): end the stream
        // with it; the client resends what is unsettled, by message id.
        this.failed ??= err;
        this.wake();
        return;
      }
      slot.result = { result: { $case: "refused", value: { code: err.code, message: err.message } } };
    } else {
      slot.result = { result: { $case: "receipt", value: receipt! } };
    }
    // After the rest of this commit's requests have settled too: one answer for all of them.
    if (!this.answerScheduled) {
      this.answerScheduled = true;
      setImmediate(() => this.answer());
    }
  }

  private answer(): void {
    this.answerScheduled = false;
    if (this.failed || this.signal.aborted) return;
    let n = 0;
    while (n < this.unsettled.length && this.unsettled[n]!.result) n++;
    if (!n) return;
    const done = this.unsettled.splice(0, n);
    const results = done.map((s) => s.result!);
    const receipts = results.flatMap((r) => (r.result?.$case === "receipt" ? [r.result.value] : []));
    const first = this.answered;
    this.answered += n;
    for (const s of done) this.unsettledBytes -= s.bytes;
    const ack: pb.SendStreamAck = { first, results, relaySignature: receipts.length ? this.deps.sign(receipts) : undefined };
    if (!this.stream.write(ack)) this.clientReading = false;
    this.wake();
  }

  private wake(): void {
    const more = this.more;
    this.more = undefined;
    more?.();
  }

  /** Resolves at the next change (see `more`). */
  private next(): Promise<void> {
    return new Promise((resolve) => (this.more = resolve));
  }

  private async roomForMore(): Promise<void> {
    while (
      !this.failed &&
      !this.ending &&
      !this.signal.aborted &&
      (!this.clientReading || this.unsettled.length >= this.deps.limits.maxBatchMessages || this.unsettledBytes >= MAX_UNSETTLED_BYTES)
    ) {
      await this.next();
    }
  }
}
