/**
 * The relay's change stream on JetStream: the primary appends each committed
 * change (split into parts when large) and epoch claims; secondaries read it
 * in order from a position.
 *
 *   const stream = await ChangeStream.connect({ servers: "127.0.0.1:4222", relayId: "relay", name: "PARLEY_RELAY_relay" });
 *   const seq = await stream.append(header, [body], expectedLastSeq);   // throws StreamMovedError when fenced
 *   const follower = stream.follow(from, async (m) => apply(m));
 *
 * It speaks JetStream directly, not through the services' Bus: fencing needs
 * publishes conditioned on the stream's last sequence, and replay needs reads
 * from a given position — neither is part of the Bus contract.
 */
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import {
  DeliverPolicy, DiscardPolicy, JetStreamApiCodes, JetStreamApiError, StorageType, jetstream, jetstreamManager,
  type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg,
} from "@nats-io/jetstream";

/** Largest body of one stream message (NATS' default max_payload is 1 MiB). */
export const PART_BYTES = 512 * 1024;
/** Most messages handed to a follower's handler at once. */
const MAX_BATCH = 256;

export interface ChangeHeader {
  /** Relay-wide change number (1, 2, …), strictly increasing across epochs. */
  change: number;
  epoch: number;
  primary: string;
  atMs: number;
}

/** One message read from the stream. */
export type StreamEntry =
  | { kind: "change"; seq: number; pending: number; header: ChangeHeader; part: number; parts: number; body: Uint8Array }
  | { kind: "epoch"; seq: number; pending: number; epoch: number; primary: string; atMs: number };

/** The stream holds messages this writer did not expect: another replica wrote, or our last write's fate is unknown. */
export class StreamMovedError extends Error {}

export interface ChangeStreamOptions {
  servers: string | string[];
  relayId: string;
  /** JetStream stream name. */
  name: string;
  /** Keep changes this long (ms); 0 keeps them until deleted. */
  maxAgeMs?: number;
}

const token = (id: string) => Buffer.from(id, "utf8").toString("base64url");
const H = { change: "Parley-Change", epoch: "Parley-Epoch", primary: "Parley-Primary", at: "Parley-At", part: "Parley-Part" };

export function defaultStreamName(relayId: string): string {
  return `PARLEY_RELAY_${relayId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

export interface Follower {
  stop(): Promise<void>;
}

export class ChangeStream {
  private readonly changeSubject: string;
  private readonly epochSubject: string;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly options: ChangeStreamOptions,
  ) {
    const base = `parley.relay-changes.${token(options.relayId)}`;
    this.changeSubject = `${base}.change`;
    this.epochSubject = `${base}.epoch`;
  }

  static async connect(opts: ChangeStreamOptions & { connectionName?: string }): Promise<ChangeStream> {
    const nc = await connect({ servers: opts.servers, name: opts.connectionName ?? `parley-relay-changes-${opts.relayId}`, maxReconnectAttempts: -1, reconnectTimeWait: 500 });
    try {
      return new ChangeStream(nc, jetstream(nc, { timeout: 5000 }), await jetstreamManager(nc), opts);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  get name(): string {
    return this.options.name;
  }

  async ensure(): Promise<void> {
    const cfg = {
      name: this.name,
      subjects: [`parley.relay-changes.${token(this.options.relayId)}.>`],
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(this.options.maxAgeMs ?? 0),
      duplicate_window: nanos(120_000),
    };
    try {
      await this.jsm.streams.info(this.name);
      const { storage: _s, name, ...changeable } = cfg;
      await this.jsm.streams.update(name, changeable);
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
      await this.jsm.streams.add(cfg).catch(async (e: unknown) => {
        // Created meanwhile by the other replica.
        if (!(e instanceof JetStreamApiError && e.code === 10058 /* stream name already in use */)) throw e;
      });
    }
  }

  /** First and last sequence held (first > last when empty). */
  async bounds(): Promise<{ first: number; last: number }> {
    const info = await this.jsm.streams.info(this.name);
    return { first: info.state.first_seq, last: info.state.last_seq };
  }

  /**
   * Appends a change's parts right after expectedLastSeq; resolves with the
   * stream sequence of the last part. Anything else in between (a new
   * primary's epoch claim) makes it throw StreamMovedError.
   */
  async append(header: ChangeHeader, parts: Uint8Array[], expectedLastSeq: number): Promise<number> {
    let seq = expectedLastSeq;
    for (let i = 0; i < parts.length; i++) {
      const h = natsHeaders();
      h.set(H.change, String(header.change));
      h.set(H.epoch, String(header.epoch));
      h.set(H.primary, header.primary);
      h.set(H.at, String(header.atMs));
      h.set(H.part, `${i + 1}/${parts.length}`);
      // The position is part of the id: a change number reused after a failed append (its
      // transaction rolled back) is a different message than the parts that failed.
      seq = await this.publish(this.changeSubject, parts[i]!, h, `${header.epoch}-${header.change}@${seq + 1}`, seq);
    }
    return seq;
  }

  /**
   * Appends an epoch claim wherever the stream ends now; resolves with its
   * sequence. Every change before it belongs to older epochs and is applied
   * by the claimant before it serves; a writer of an older epoch can append
   * nothing after it (its expected last sequence no longer matches).
   */
  async claimEpoch(epoch: number, primary: string, atMs: number): Promise<number> {
    const h = natsHeaders();
    h.set(H.epoch, String(epoch));
    h.set(H.primary, primary);
    h.set(H.at, String(atMs));
    const ack = await this.js.publish(this.epochSubject, new Uint8Array(), { msgID: `epoch-${epoch}-${primary}`, headers: h, expect: { streamName: this.name } });
    return ack.seq;
  }

  /** The newest epoch claim in the stream, if any. */
  async latestEpoch(): Promise<{ epoch: number; primary: string; seq: number } | undefined> {
    try {
      const m = await this.jsm.streams.getMessage(this.name, { last_by_subj: this.epochSubject });
      if (!m) return undefined;
      return { epoch: Number(m.header.get(H.epoch)), primary: m.header.get(H.primary), seq: m.seq };
    } catch (err) {
      if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.NoMessageFound || err.code === 10037)) return undefined;
      throw err;
    }
  }

  private async publish(subject: string, body: Uint8Array, h: ReturnType<typeof natsHeaders>, msgID: string, expectedLastSeq: number): Promise<number> {
    try {
      const ack = await this.js.publish(subject, body, { msgID, headers: h, expect: { lastSequence: expectedLastSeq, streamName: this.name } });
      // A duplicate means this exact message was stored before: only right if it sits where we expected.
      if (ack.duplicate && ack.seq !== expectedLastSeq + 1) throw new StreamMovedError(`message ${msgID} is already in the stream at ${ack.seq}`);
      return ack.seq;
    } catch (err) {
      if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === 10164)) {
        throw new StreamMovedError(`the change stream moved past ${expectedLastSeq}: ${err.message}`);
      }
      throw err;
    }
  }

  /** Calls listener for every epoch claim as it is published (core NATS; may miss some while disconnected). */
  watchEpochs(listener: (epoch: number, primary: string) => void): () => void {
    const sub = this.nc.subscribe(this.epochSubject, {
      callback: (err, m) => {
        if (err || !m.headers) return;
        listener(Number(m.headers.get(H.epoch)), m.headers.get(H.primary));
      },
    });
    return () => sub.unsubscribe();
  }

  /**
   * Reads the stream in order from fromSeq. The handler gets each message
   * with whatever followed it already (up to MAX_BATCH), and finishes before
   * more are handed over. A failing handler or a broken iterator restarts
   * reading after the last handled batch.
   */
  follow(fromSeq: number, handler: (batch: StreamEntry[]) => Promise<void>, onError: (err: unknown) => void): Follower {
    let next = fromSeq;
    let stopping = false;
    let iter: ConsumerMessages | undefined;
    let wake: (() => void) | undefined;
    const run = async () => {
      for (let failures = 0; !stopping && !this.nc.isClosed(); ) {
        try {
          const consumer = await this.js.consumers.get(this.name, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, next) });
          iter = await consumer.consume({ max_messages: 256 });
          if (stopping) iter.stop();
          const batch: StreamEntry[] = [];
          for await (const m of iter) {
            if (stopping) break;
            if (m.seq < next) continue;
            batch.push(toEntry(m));
            // More already waiting: take it into the same handler call (one transaction).
            if (m.info.pending > 0 && batch.length < MAX_BATCH) continue;
            await handler(batch.splice(0));
            next = m.seq + 1;
            failures = 0;
          }
        } catch (err) {
          if (stopping) break;
          failures++;
          onError(err);
        }
        iter?.stop();
        if (stopping) break;
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(100 * 2 ** failures, 5000));
          wake = () => (clearTimeout(t), r());
        });
      }
    };
    const done = run();
    return {
      stop: async () => {
        stopping = true;
        iter?.stop();
        wake?.();
        await done;
      },
    };
  }

  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.close();
  }

  /** Drops the stream (tests and a relay's removal). */
  async destroy(): Promise<void> {
    await this.jsm.streams.delete(this.name).catch(() => undefined);
  }

  /** Removes every message before keepFromSeq (tests: a stream trimmed by its retention). */
  async trimBefore(keepFromSeq: number): Promise<void> {
    await this.jsm.streams.purge(this.name, { seq: keepFromSeq });
  }
}

function toEntry(m: JsMsg): StreamEntry {
  const h = m.headers!;
  const pending = m.info.pending;
  if (m.subject.endsWith(".epoch")) {
    return { kind: "epoch", seq: m.seq, pending, epoch: Number(h.get(H.epoch)), primary: h.get(H.primary), atMs: Number(h.get(H.at)) };
  }
  const [part, parts] = h.get(H.part).split("/").map(Number) as [number, number];
  return {
    kind: "change",
    seq: m.seq,
    pending,
    header: { change: Number(h.get(H.change)), epoch: Number(h.get(H.epoch)), primary: h.get(H.primary), atMs: Number(h.get(H.at)) },
    part,
    parts,
    body: m.data,
  };
}
