/**
 * One open Fetch stream: the backlog in order, a BacklogComplete marker, then
 * live entries. It never polls: a wake-up published on the bus after each
 * commit brings the entries it committed (wake-ups.ts), and they go out
 * straight from it when they follow on from what this stream has sent.
 * Otherwise (a plain wake-up, a gap, a stream that fell behind) the stream
 * reads what is new from Postgres; wake-ups for one queue are then
 * coalesced, so a burst of sends costs a few reads, not one per message.
 */
import { once } from "node:events";
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { Bus, Subscription } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { extractContext, tracer } from "../common/tracing.js";
import { FailedPreconditionError, UnavailableError } from "../common/errors.js";
import { QueueKind } from "../../generated/parley/v1/common.js";
import type { FetchEvent, FetchRequest, QueuedMessage } from "../../generated/parley/v1/relay.js";
import type { RelayMetrics } from "./metrics.js";
import { encodeEntry, messageEvent, messagesEvent, type EncodedEntry } from "./queued-codec.js";
import type { RelayStore } from "./store.js";
import { suspendedSubject, wakeSubject } from "./subjects.js";
import type { QueueRef, StoredEntry } from "./types.js";
import type { WakeUpCodec } from "./wake-ups.js";

const PAGE = 256;
// A batched event (FetchRequest.batched) holds what one read returned, up to
// this many payload bytes (and at least one message): one stream write and
// one HTTP/2 frame for many small messages, bounded for large ones.
const BATCH_EVENT_BYTES = 256 * 1024;
// How long entries past a gap wait for the wake-up that fills it before the
// stream reads Postgres. A gap is usually a wake-up still on its way (two
// instances' commits to one queue, published in the other order); reading at
// once cost a Postgres read of up to PAGE entries for each such race.
const GAP_WAIT_MS = 20;

interface Cursor {
  queue: QueueRef;
  /** Last sequence sent on this stream. */
  after: number;
  /** Postgres may hold entries after `after` that are not in `pushed`: read it. */
  dirty: boolean;
  /** Committed entries that came with wake-ups, not sent yet (at most PAGE). */
  pushed: EncodedEntry[];
  /** `pushed` starts past a gap and no wake-up came since it was looked at. */
  stalled: boolean;
  /** Reads Postgres when it fires, GAP_WAIT_MS after a gap was seen, unless the gap was filled. */
  gapTimer?: NodeJS.Timeout;
}

export interface FetchDeps {
  relayId: string;
  store: RelayStore;
  bus: Bus;
  clock: Clock;
  metrics: RelayMetrics;
  wakeUps: WakeUpCodec;
}

export class FetchSession {
  private readonly cursors: Cursor[];
  private readonly subs: Subscription[] = [];
  private pumping: Promise<void> | undefined;
  private ended: Error | null | undefined; // undefined: open; null: ended cleanly
  private readonly done: Promise<void>;
  private finish!: () => void;
  private stopReconnect: (() => void) | undefined;
  private batched = false;
  private latency: { observe(value: number): void } | undefined;

  constructor(
    private readonly deps: FetchDeps,
    private readonly stream: ServerWritableStream<FetchRequest, FetchEvent>,
    readonly deviceId: string,
    identityId: string,
    signal: AbortSignal,
  ) {
    this.cursors = [
      { queue: { kind: "device", id: deviceId }, after: 0, dirty: true, pushed: [], stalled: false },
      { queue: { kind: "identity", id: identityId }, after: 0, dirty: true, pushed: [], stalled: false },
    ];
    this.done = new Promise((resolve) => (this.finish = resolve));
    signal.addEventListener("abort", () => this.end(null));
  }

  /** Streams until the backlog is sent (follow=false) or the stream ends. */
  async run(req: FetchRequest): Promise<void> {
    const [device, identity] = this.cursors as [Cursor, Cursor];
    this.batched = req.batched;
    // Subscribe before the first read: a commit landing between the read and
    // the subscription would otherwise wait for the next wake-up.
    if (req.follow) {
      for (const c of this.cursors) {
        this.subs.push(
          this.deps.bus.subscribe(wakeSubject(this.deps.relayId, c.queue), (m) => {
            // The wake-up continues the sender's trace (W3C context in the bus headers).
            tracer().startSpan("relay/wake", { attributes: { "parley.queue.kind": c.queue.kind } }, extractContext(m.headers)).end();
            this.wake(c, m.data);
          }),
        );
      }
      this.subs.push(
        this.deps.bus.subscribe(suspendedSubject(this.deps.relayId, this.deviceId), () =>
          this.end(new FailedPreconditionError(`device '${this.deviceId}' was suspended`)),
        ),
      );
      // Wake-ups published while the bus was down are lost: re-read everything.
      this.stopReconnect = this.deps.bus.onReconnect(() => this.cursors.forEach((c) => this.wake(c)));
    }
    device.after = req.deviceAfterSeq;
    identity.after = Math.max(req.identityAfterSeq, await this.deps.store.identityCursor(identity.queue.id, this.deviceId));
    try {
      await this.kick();
      this.check();
      await this.write({ event: { $case: "backlogComplete", value: {} } });
      if (!req.follow) return;
      this.deps.metrics.streams.inc({ relay: this.deps.relayId });
      try {
        await this.done;
        this.check();
      } finally {
        this.deps.metrics.streams.dec({ relay: this.deps.relayId });
      }
    } finally {
      this.close();
    }
  }

  /** Ends the stream: cleanly (null) or with an error status for the client. */
  end(reason: Error | null): void {
    if (this.ended !== undefined) return;
    this.ended = reason;
    this.finish();
  }

  private check(): void {
    if (this.ended) throw this.ended;
  }

  private close(): void {
    for (const s of this.subs) s.unsubscribe();
    for (const c of this.cursors) clearTimeout(c.gapTimer);
    this.stopReconnect?.();
    this.end(null);
  }

  /** A wake-up: with the entries it committed, or (empty, or too many buffered) read Postgres. */
  private wake(c: Cursor, data?: Uint8Array): void {
    const entries = data?.length ? this.deps.wakeUps.pushedEntries(data) : undefined;
    if (entries && c.pushed.length + entries.length <= PAGE) c.pushed.push(...entries);
    else c.dirty = true;
    c.stalled = false;
    void this.kick();
  }

  /** Starts the pump unless it is running (a running pump sees the dirty flag). */
  private kick(): Promise<void> {
    if (this.pumping || this.ended !== undefined) return this.pumping ?? Promise.resolve();
    this.pumping = (async () => {
      try {
        await this.pump();
      } catch (err) {
        this.end(err instanceof FailedPreconditionError ? err : new UnavailableError(`delivery failed: ${(err as Error).message}`));
      } finally {
        this.pumping = undefined;
        // A wake-up that arrived after the pump's last look but before it
        // cleared `pumping` only set a flag: pick it up now.
        if (this.cursors.some(hasWork)) void this.kick();
      }
    })();
    return this.pumping;
  }

  /** Sends until every queue is drained and no wake-up is pending. */
  private async pump(): Promise<void> {
    for (;;) {
      const c = this.cursors.find(hasWork);
      if (!c || this.ended !== undefined) return;
      let next: EncodedEntry[];
      if (c.dirty) {
        c.dirty = false;
        c.stalled = false;
        clearTimeout(c.gapTimer);
        c.gapTimer = undefined;
        // Everything pushed so far is committed, so the read covers it;
        // what is pushed while it runs is kept.
        c.pushed = [];
        const entries = await this.deps.store.readEntries(c.queue, c.after, PAGE);
        if (entries.length === PAGE) c.dirty = true;
        next = entries.map((e) => encodeEntry(toMessage(e)));
        this.deps.metrics.deliveryReads.inc({ relay: this.deps.relayId, source: "postgres" });
      } else {
        next = takeFollowing(c);
        // A gap: an earlier commit's wake-up has not come (yet). Postgres has
        // it; read it unless the wake-up comes within GAP_WAIT_MS.
        if (!next.length) {
          if (c.pushed.length) this.awaitGap(c);
          continue;
        }
        clearTimeout(c.gapTimer);
        c.gapTimer = undefined;
        this.deps.metrics.deliveryReads.inc({ relay: this.deps.relayId, source: "wake-up" });
      }
      await this.send(c, next);
    }
  }

  private awaitGap(c: Cursor): void {
    c.stalled = true;
    // Not restarted by wake-ups that do not fill the gap: GAP_WAIT_MS after it was first seen, read.
    c.gapTimer ??= setTimeout(() => {
      c.gapTimer = undefined;
      if (!c.pushed.length) return;
      c.dirty = true;
      void this.kick();
    }, GAP_WAIT_MS);
  }

  private async send(c: Cursor, entries: EncodedEntry[]): Promise<void> {
    for (const group of this.batched ? eventGroups(entries) : entries.map((e) => [e])) {
      if (this.ended !== undefined) return;
      await this.write(this.batched ? messagesEvent(group) : messageEvent(group[0]!));
      c.after = group[group.length - 1]!.seq;
      const now = this.deps.clock.now();
      this.deps.metrics.delivered.inc({ relay: this.deps.relayId, kind: c.queue.kind }, group.length);
      // Bound once: observe() with labels hashes them on every call.
      const latency = (this.latency ??= this.deps.metrics.deliveryLatency.labels({ relay: this.deps.relayId }));
      for (const m of group) latency.observe(Math.max(0, now - m.enqueuedAtMs) / 1000);
    }
  }

  /** An event, or one encoded here (the gRPC layer passes bytes through: common/grpc.ts). */
  private async write(event: FetchEvent | Buffer): Promise<void> {
    if (this.stream.write(event as FetchEvent)) return;
    // Respect the client's flow control instead of buffering without bound.
    await Promise.race([once(this.stream, "drain"), this.done]);
  }
}

const hasWork = (c: Cursor) => c.dirty || (c.pushed.length > 0 && !c.stalled);

/**
 * Takes from c.pushed the run of entries that follows c.after without a gap;
 * drops what was sent already. Wake-ups can arrive out of commit order (two
 * relay instances, two transactions of one), so the buffer is sorted first.
 */
export function takeFollowing<T extends { seq: number }>(c: { after: number; pushed: T[] }): T[] {
  c.pushed.sort((a, b) => a.seq - b.seq);
  let start = 0;
  while (start < c.pushed.length && c.pushed[start]!.seq <= c.after) start++;
  let end = start;
  while (end < c.pushed.length && c.pushed[end]!.seq === c.after + 1 + (end - start)) end++;
  const run = c.pushed.slice(start, end);
  c.pushed = c.pushed.slice(end);
  return run;
}

/** Consecutive runs of messages of at most BATCH_EVENT_BYTES of payload (at least one message each). */
export function eventGroups<T extends { payloadBytes: number }>(entries: T[]): T[][] {
  const groups: T[][] = [];
  let bytes = Infinity;
  for (const e of entries) {
    if (bytes + e.payloadBytes > BATCH_EVENT_BYTES) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1]!.push(e);
    bytes += e.payloadBytes;
  }
  return groups;
}

function toMessage(e: StoredEntry): QueuedMessage {
  return {
    queue: e.kind === "device" ? QueueKind.QUEUE_KIND_DEVICE : QueueKind.QUEUE_KIND_IDENTITY,
    seq: e.seq,
    messageId: e.messageId,
    senderDeviceId: e.senderDevice,
    senderIdentityId: e.senderIdentity,
    payload: e.payload,
    contentType: e.contentType,
    enqueuedAtMs: e.enqueuedAtMs,
  };
}
