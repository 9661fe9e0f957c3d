// Baselines for the relay benchmark: the same workload (N senders, each with
// K durable 1 KiB messages in flight, one or more consumers that ack/delete)
// run directly against NATS JetStream, Postgres and RabbitMQ.
//
// Figures (see BenchResult in ../support/stats.ts):
//  - msgsPerSec: messages / (first send start -> last message received AND
//    every send acknowledged);
//  - sendAck: per message, send start -> durable acknowledgement to the sender
//    (JetStream PubAck, Postgres COMMIT of the batch, RabbitMQ publisher confirm);
//  - endToEnd: per message, send start (float64 in the first 8 bytes of the
//    payload) -> handed to the consumer code;
//  - peakRssMiB: this (client) process; serverPeakRssMiB: the broker/database
//    processes found by name on this machine (Pss for Postgres), if any.
//
// Payload layout: [0,8) float64 LE send time (performance.timeOrigin +
// performance.now()), [8,12) uint32 LE message index (duplicate detection),
// then filler.
//
// Every run is bounded by opts.timeoutMs; on timeout it throws an Error with
// the progress so far. Streams/queues/databases are unique per run and are
// removed afterwards, also after a failure.

import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";

import { connect as natsConnect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { ConsumerMessages } from "@nats-io/jetstream";
import pg from "pg";
import type { Client as PgClient } from "pg";
import amqp from "amqplib";
import type { Channel, ChannelModel, ConfirmChannel } from "amqplib";

import {
  LatencyRecorder,
  MiB,
  PeakRssSampler,
  findPidsByName,
  nowMs,
  readPayloadStamp,
} from "../support/stats.js";
import type { BenchResult, RssSource } from "../support/stats.js";

export type BaselineOptions = {
  /** Total messages across all senders. */
  messages: number;
  /** Payload size in bytes (min 12: stamp + index). */
  payloadBytes: number;
  /** Number of sender connections. */
  senders: number;
  /** Unacknowledged messages each sender keeps in flight (Postgres: rows per batch). */
  inFlightPerSender: number;
  /** Server URL; defaults: nats://127.0.0.1:4222, postgres://postgres@127.0.0.1:5432/postgres, amqp://guest:guest@127.0.0.1:5672. */
  url?: string;
  /** Number of consumer connections (default 1). */
  receivers?: number;
  /** Whole-run bound in ms, setup and cleanup excluded (default max(60 s, 3 ms x messages)). */
  timeoutMs?: number;
  /** Messages a consumer may hold unacked: JetStream pull batch / RabbitMQ prefetch / Postgres rows per DELETE (default 256). */
  consumerBatch?: number;
  /** RabbitMQ only: queue type (default "classic"). */
  rabbitQueueType?: "classic" | "quorum";
  /** Sample the server processes' memory (default true). */
  sampleServer?: boolean;
};

const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
const DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672";
const CLEANUP_TIMEOUT_MS = 15_000;
const SETUP_TIMEOUT_MS = 30_000;

// ------------------------------------------------------------------ harness

function validate(opts: BaselineOptions): Required<Omit<BaselineOptions, "url">> & { url?: string } {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`baseline option ${name} must be an integer >= ${min}, got ${v}`);
  };
  int("messages", opts.messages, 1);
  int("payloadBytes", opts.payloadBytes, 12);
  int("senders", opts.senders, 1);
  int("inFlightPerSender", opts.inFlightPerSender, 1);
  const receivers = opts.receivers ?? 1;
  int("receivers", receivers, 1);
  const consumerBatch = opts.consumerBatch ?? 256;
  int("consumerBatch", consumerBatch, 1);
  const timeoutMs = opts.timeoutMs ?? Math.max(60_000, opts.messages * 3);
  int("timeoutMs", timeoutMs, 1);
  if (opts.messages >= 2 ** 32) throw new RangeError("messages must be < 2^32");
  return {
    ...opts,
    receivers,
    consumerBatch,
    timeoutMs,
    rabbitQueueType: opts.rabbitQueueType ?? "classic",
    sampleServer: opts.sampleServer ?? true,
  };
}

/** Splits `total` into `parts` near-equal counts. */
function split(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total % parts ? 1 : 0));
}

function uniqueSuffix(): string {
  return `${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}

/** Rejects with `message()` if `p` does not settle within `ms`. */
async function withTimeout<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs cleanup steps, each bounded; logs (does not throw) failures. */
async function cleanup(name: string, steps: Array<[string, () => Promise<unknown> | unknown]>): Promise<void> {
  for (const [what, step] of steps) {
    try {
      await withTimeout(Promise.resolve().then(step), CLEANUP_TIMEOUT_MS, () => `timed out after ${CLEANUP_TIMEOUT_MS} ms`);
    } catch (err) {
      console.error(`[${name}] cleanup: ${what} failed: ${(err as Error).message}`);
    }
  }
}

/** Shared state of one run: counters, recorders, payload factory, completion. */
class Run {
  readonly sendAck: LatencyRecorder;
  readonly e2e: LatencyRecorder;
  sent = 0;
  acked = 0;
  received = 0;
  duplicates = 0;
  aborted = false;
  startMs = 0;
  private readonly seen: Uint8Array;
  private readonly filler: Buffer;
  private resolveAll!: () => void;
  private rejectAll!: (err: Error) => void;
  /** Settles when every message has been received once, or on fail(). */
  readonly allReceived: Promise<void>;

  constructor(
    readonly name: string,
    readonly messages: number,
    readonly payloadBytes: number,
  ) {
    this.sendAck = new LatencyRecorder(messages);
    this.e2e = new LatencyRecorder(messages);
    this.seen = new Uint8Array(messages);
    this.filler = Buffer.alloc(payloadBytes, 0x61);
    this.allReceived = new Promise<void>((resolve, reject) => {
      this.resolveAll = resolve;
      this.rejectAll = reject;
    });
    this.allReceived.catch(() => {}); // observed via await elsewhere
  }

  /** A fresh stamped payload for the next message; returns it and its send time. */
  nextPayload(): { buf: Buffer; t: number } {
    const index = this.sent++;
    const buf = Buffer.allocUnsafe(this.payloadBytes);
    this.filler.copy(buf, 12, 12);
    buf.writeUInt32LE(index, 8);
    const t = nowMs();
    buf.writeDoubleLE(t, 0);
    return { buf, t };
  }

  acknowledged(t: number): void {
    this.acked++;
    this.sendAck.record(nowMs() - t);
  }

  /** Consumer side: call with each delivered payload (before acking it). */
  onReceive(payload: Uint8Array): void {
    const now = nowMs();
    const t = readPayloadStamp(payload);
    const index = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(8, true);
    if (index >= this.messages) {
      this.fail(new Error(`${this.name}: received a message with index ${index} >= ${this.messages} (foreign data?)`));
      return;
    }
    if (this.seen[index]) {
      this.duplicates++;
      return;
    }
    this.seen[index] = 1;
    this.e2e.record(now - t);
    if (++this.received === this.messages) this.resolveAll();
  }

  get done(): boolean {
    return this.received >= this.messages;
  }

  fail(err: unknown): void {
    this.aborted = true;
    this.rejectAll(err instanceof Error ? err : new Error(String(err)));
  }

  progress(): string {
    return `sent ${this.sent}/${this.messages}, acked ${this.acked}, received ${this.received}`;
  }

  /**
   * Runs `senders` x `inFlight` closed-loop workers calling send(); resolves
   * when all sends are acknowledged. A send failure fails the run.
   */
  async runSenders(
    counts: number[],
    inFlight: number,
    send: (sender: number, buf: Buffer) => Promise<void>,
  ): Promise<void> {
    await Promise.all(
      counts.map(async (count, sender) => {
        let left = count;
        const worker = async () => {
          while (!this.aborted && left > 0) {
            left--;
            const { buf, t } = this.nextPayload();
            await send(sender, buf);
            this.acknowledged(t);
          }
        };
        await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
      }),
    ).catch((err) => {
      this.fail(err);
      throw err;
    });
  }

  /** Waits for senders + consumers within the timeout; returns elapsed seconds. */
  async finish(sending: Promise<void>, timeoutMs: number): Promise<number> {
    const all = Promise.all([sending, this.allReceived]);
    try {
      await withTimeout(all, timeoutMs, () => `${this.name} baseline timed out after ${(timeoutMs / 1000).toFixed(1)} s: ${this.progress()}`);
    } catch (err) {
      this.aborted = true;
      throw err;
    }
    return (nowMs() - this.startMs) / 1000;
  }

  result(seconds: number, peakRssBytes: number, serverPeakBytes: number | undefined, notes: string[]): BenchResult {
    if (this.duplicates > 0) notes.push(`${this.duplicates} duplicate deliveries`);
    return {
      name: this.name,
      messages: this.messages,
      seconds,
      msgsPerSec: this.messages / seconds,
      sendAck: this.sendAck.percentiles(),
      endToEnd: this.e2e.percentiles(),
      peakRssMiB: peakRssBytes / MiB,
      ...(serverPeakBytes !== undefined && serverPeakBytes > 0 ? { serverPeakRssMiB: serverPeakBytes / MiB } : {}),
      notes: notes.join("; "),
    };
  }
}

function serverSampler(enabled: boolean, source: () => RssSource | undefined): PeakRssSampler | undefined {
  if (!enabled) return undefined;
  const s = source();
  if (s === undefined || (typeof s === "object" && !Array.isArray(s) && "pids" in s && s.pids.length === 0)) return undefined;
  if (Array.isArray(s) && s.length === 0) return undefined;
  return new PeakRssSampler(s);
}

function describeShape(o: ReturnType<typeof validate>): string {
  return `${o.senders}x${o.inFlightPerSender} in flight, ${o.receivers} consumer${o.receivers === 1 ? "" : "s"}`;
}

// --------------------------------------------------------------------- NATS

/**
 * (a) Raw NATS JetStream: file-storage work-queue stream; each sender is a
 * connection doing js.publish() awaiting the PubAck with inFlightPerSender
 * publishes outstanding; consumers pull from a durable explicit-ack consumer
 * (consume() with max_messages = consumerBatch) and ack each message.
 */
export async function runNatsBaseline(options: BaselineOptions): Promise<BenchResult> {
  const o = validate(options);
  const url = o.url ?? DEFAULT_NATS_URL;
  const suffix = uniqueSuffix();
  const stream = `PARLEY_BENCH_${suffix}`;
  const subject = `parley.bench.${suffix}`;
  const durable = `bench_${suffix}`;
  const run = new Run("nats-jetstream", o.messages, o.payloadBytes);
  const conns: NatsConnection[] = [];
  const iters: ConsumerMessages[] = [];
  let admin: NatsConnection | undefined;
  let streamCreated = false;
  const self = new PeakRssSampler("self");
  let server: PeakRssSampler | undefined;
  try {
    const setup = async () => {
      admin = await natsConnect({ servers: url, name: "parley-bench-admin" });
      const jsm = await jetstreamManager(admin);
      await jsm.streams.add({
        name: stream,
        subjects: [subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Workqueue,
        num_replicas: 1,
      });
      streamCreated = true;
      await jsm.consumers.add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        max_ack_pending: Math.max(1000, o.consumerBatch * o.receivers * 2),
        ack_wait: 60_000_000_000, // 60 s in ns: no redelivery during the run
      });
      for (let i = 0; i < o.senders + o.receivers; i++) {
        conns.push(await natsConnect({ servers: url, name: `parley-bench-${i < o.senders ? "send" : "recv"}-${i}` }));
      }
    };
    await withTimeout(setup(), SETUP_TIMEOUT_MS, () => `nats-jetstream setup timed out (is JetStream at ${url}?)`);

    const senderJs = conns.slice(0, o.senders).map((nc) => jetstream(nc));
    const receiverConns = conns.slice(o.senders);
    for (const nc of receiverConns) {
      const consumer = await jetstream(nc).consumers.get(stream, durable);
      iters.push(await consumer.consume({ max_messages: o.consumerBatch }));
    }

    server = serverSampler(o.sampleServer, () => findPidsByName("nats-server"));
    self.start();
    server?.start();
    run.startMs = nowMs();

    const consuming = iters.map(async (iter) => {
      try {
        for await (const m of iter) {
          run.onReceive(m.data);
          m.ack();
          if (run.done || run.aborted) break;
        }
      } catch (err) {
        run.fail(err);
      }
    });
    const sending = run.runSenders(split(o.messages, o.senders), o.inFlightPerSender, async (sender, buf) => {
      await senderJs[sender]!.publish(subject, buf);
    });
    const seconds = await run.finish(sending, o.timeoutMs);
    // Let the consumers stop and their acks reach the server before measuring ends.
    for (const it of iters) it.stop();
    await withTimeout(Promise.all(consuming), CLEANUP_TIMEOUT_MS, () => "nats-jetstream consumers did not stop");
    await Promise.all(receiverConns.map((nc) => nc.flush()));
    const peak = self.stop();
    const serverPeak = server?.stop();
    return run.result(seconds, peak, serverPeak, [
      describeShape(o),
      "file storage, workqueue stream, R1",
      "PubAck = written by the server; fsync is periodic, not per message (server default)",
    ]);
  } finally {
    run.aborted = true;
    self.stop();
    server?.stop();
    await cleanup("nats-jetstream", [
      ...iters.map((it, i): [string, () => unknown] => [`stop consumer ${i}`, () => it.stop()]),
      ...conns.map((nc, i): [string, () => Promise<unknown>] => [`close connection ${i}`, () => nc.close()]),
      [
        `delete stream ${stream}`,
        async () => {
          if (admin && streamCreated) await (await jetstreamManager(admin)).streams.delete(stream);
        },
      ],
      ["close admin connection", async () => admin?.close()],
    ]);
  }
}

// ----------------------------------------------------------------- Postgres

/**
 * (b) Raw Postgres: a throwaway database with one logged table
 * (id bigserial, payload bytea). Each sender is one connection inserting
 * batches of inFlightPerSender rows with one multi-row INSERT (a single
 * statement = one transaction, synchronous_commit as configured on the
 * server); every row of a batch is acknowledged at COMMIT. Consumers poll
 * `DELETE ... WHERE id IN (SELECT id ... ORDER BY id LIMIT n FOR UPDATE SKIP
 * LOCKED) RETURNING`, hand rows over in id order, and sleep 1 ms when the
 * table is empty.
 */
export async function runPostgresBaseline(options: BaselineOptions): Promise<BenchResult> {
  const o = validate(options);
  const adminUrl = o.url ?? DEFAULT_PG_URL;
  const dbName = `parley_bench_${uniqueSuffix()}`;
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${dbName}`;
  const run = new Run("postgres-batched", o.messages, o.payloadBytes);
  const admin = new pg.Client({ connectionString: adminUrl, application_name: "parley-bench-admin" });
  admin.on("error", (err) => console.error(`[postgres] admin connection error: ${err.message}`));
  const clients: PgClient[] = [];
  let dbCreated = false;
  let adminConnected = false;
  const self = new PeakRssSampler("self");
  let server: PeakRssSampler | undefined;
  const settings: string[] = [];
  try {
    const setup = async () => {
      await admin.connect();
      adminConnected = true;
      await admin.query(`CREATE DATABASE ${dbName}`);
      dbCreated = true;
      for (let i = 0; i < o.senders + o.receivers; i++) {
        const c = new pg.Client({
          connectionString: dbUrl.toString(),
          application_name: `parley-bench-${i < o.senders ? "send" : "recv"}-${i}`,
        });
        c.on("error", (err) => run.fail(err));
        clients.push(c);
        await c.connect();
      }
      await clients[0]!.query("CREATE TABLE bench_queue (id bigserial PRIMARY KEY, payload bytea NOT NULL)");
      for (const s of ["fsync", "synchronous_commit", "wal_sync_method"]) {
        const r = await admin.query<Record<string, string>>(`SHOW ${s}`);
        settings.push(`${s}=${r.rows[0]![s]}`);
      }
    };
    await withTimeout(setup(), SETUP_TIMEOUT_MS, () => `postgres setup timed out (is Postgres at ${adminUrl}?)`);

    const senderClients = clients.slice(0, o.senders);
    const receiverClients = clients.slice(o.senders);
    server = serverSampler(o.sampleServer, () => ({ pids: findPidsByName("postgres"), metric: "pss" }));
    self.start();
    server?.start();
    run.startMs = nowMs();

    const batchSql = new Map<number, string>();
    const insertSql = (n: number) => {
      let sql = batchSql.get(n);
      if (!sql) {
        sql = `INSERT INTO bench_queue (payload) VALUES ${Array.from({ length: n }, (_, i) => `($${i + 1})`).join(",")}`;
        batchSql.set(n, sql);
      }
      return sql;
    };
    const consumeSql =
      "DELETE FROM bench_queue WHERE id IN " +
      "(SELECT id FROM bench_queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id, payload";

    const consuming = receiverClients.map(async (c, i) => {
      try {
        while (!run.done && !run.aborted) {
          const r = await c.query<{ id: string; payload: Buffer }>({ name: `consume_${i}`, text: consumeSql, values: [o.consumerBatch] });
          if (r.rows.length === 0) {
            await sleep(1);
            continue;
          }
          const rows = r.rows.length > 1 ? r.rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)) : r.rows;
          for (const row of rows) run.onReceive(row.payload);
        }
      } catch (err) {
        run.fail(err);
      }
    });

    // Senders: explicit batches (one in flight per connection), so they do not use runSenders().
    const sending = Promise.all(
      split(o.messages, o.senders).map(async (count, s) => {
        const c = senderClients[s]!;
        let left = count;
        while (!run.aborted && left > 0) {
          const n = Math.min(o.inFlightPerSender, left);
          left -= n;
          const bufs: Buffer[] = [];
          const ts: number[] = [];
          for (let i = 0; i < n; i++) {
            const { buf, t } = run.nextPayload();
            bufs.push(buf);
            ts.push(t);
          }
          await c.query({ name: `insert_${n}`, text: insertSql(n), values: bufs });
          for (const t of ts) run.acknowledged(t);
        }
      }),
    ).then(
      () => undefined,
      (err) => {
        run.fail(err);
        throw err;
      },
    );
    const seconds = await run.finish(sending, o.timeoutMs);
    await withTimeout(Promise.all(consuming), CLEANUP_TIMEOUT_MS, () => "postgres consumers did not stop");
    const left = await clients[0]!.query<{ n: string }>("SELECT count(*) AS n FROM bench_queue");
    const peak = self.stop();
    const serverPeak = server?.stop();
    const notes = [describeShape(o), `batch ${o.inFlightPerSender} rows/INSERT`, `consumer ${o.consumerBatch} rows/DELETE`, ...settings, "server RSS = Pss sum of postgres processes"];
    if (left.rows[0]!.n !== "0") notes.push(`${left.rows[0]!.n} rows left in table`);
    return run.result(seconds, peak, serverPeak, notes);
  } finally {
    run.aborted = true;
    self.stop();
    server?.stop();
    await cleanup("postgres", [
      ...clients.map((c, i): [string, () => Promise<unknown>] => [`close connection ${i}`, () => c.end()]),
      [
        `drop database ${dbName}`,
        async () => {
          if (dbCreated) await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        },
      ],
      ["close admin connection", async () => adminConnected && admin.end()],
    ]);
  }
}

// ----------------------------------------------------------------- RabbitMQ

/**
 * (c) RabbitMQ: a durable queue (classic by default) on the default
 * exchange; each sender is a connection with a confirm channel publishing
 * persistent messages, inFlightPerSender unconfirmed at a time (each send
 * completes at its publisher confirm); consumers use manual acks with
 * prefetch = consumerBatch.
 */
export async function runRabbitBaseline(options: BaselineOptions): Promise<BenchResult> {
  const o = validate(options);
  const url = o.url ?? DEFAULT_AMQP_URL;
  const queue = `parley.bench.${uniqueSuffix()}`;
  const run = new Run(`rabbitmq-${o.rabbitQueueType}`, o.messages, o.payloadBytes);
  const conns: ChannelModel[] = [];
  let queueCreated = false;
  const self = new PeakRssSampler("self");
  let server: PeakRssSampler | undefined;
  const consumerTags: Array<{ ch: Channel; tag: string }> = [];
  try {
    const senderChannels: ConfirmChannel[] = [];
    const receiverChannels: Channel[] = [];
    const setup = async () => {
      for (let i = 0; i < o.senders + o.receivers; i++) {
        const conn = await amqp.connect(url, { clientProperties: { connection_name: `parley-bench-${i}` } });
        conn.on("error", (err: Error) => run.fail(err));
        conns.push(conn);
        if (i < o.senders) {
          const ch = await conn.createConfirmChannel();
          ch.on("error", (err: Error) => run.fail(err));
          senderChannels.push(ch);
        } else {
          const ch = await conn.createChannel();
          ch.on("error", (err: Error) => run.fail(err));
          await ch.prefetch(o.consumerBatch);
          receiverChannels.push(ch);
        }
      }
      await senderChannels[0]!.assertQueue(queue, {
        durable: true,
        autoDelete: false,
        exclusive: false,
        arguments: { "x-queue-type": o.rabbitQueueType },
      });
      queueCreated = true;
    };
    await withTimeout(setup(), SETUP_TIMEOUT_MS, () => `rabbitmq setup timed out (is RabbitMQ at ${url}?)`);

    server = serverSampler(o.sampleServer, () => findPidsByName("beam.smp"));
    self.start();
    server?.start();
    run.startMs = nowMs();

    for (const ch of receiverChannels) {
      const reply = await ch.consume(
        queue,
        (msg) => {
          if (msg === null) {
            if (!run.done) run.fail(new Error("rabbitmq consumer was cancelled by the server"));
            return;
          }
          run.onReceive(msg.content);
          ch.ack(msg);
        },
        { noAck: false },
      );
      consumerTags.push({ ch, tag: reply.consumerTag });
    }

    const sending = run.runSenders(split(o.messages, o.senders), o.inFlightPerSender, async (sender, buf) => {
      const ch = senderChannels[sender]!;
      let writable = true;
      const confirmed = new Promise<void>((resolve, reject) => {
        writable = ch.sendToQueue(queue, buf, { persistent: true, deliveryMode: 2 }, (err) =>
          err ? reject(new Error(`rabbitmq publish nacked: ${String(err)}`)) : resolve(),
        );
      });
      if (!writable) await once(ch, "drain");
      await confirmed;
    });
    const seconds = await run.finish(sending, o.timeoutMs);
    for (const { ch, tag } of consumerTags) await ch.cancel(tag);
    consumerTags.length = 0;
    const check = await senderChannels[0]!.checkQueue(queue);
    const peak = self.stop();
    const serverPeak = server?.stop();
    const notes = [describeShape(o), `${o.rabbitQueueType} durable queue, persistent, confirms`, `prefetch ${o.consumerBatch}`];
    if (check.messageCount !== 0) notes.push(`${check.messageCount} messages left in queue`);
    return run.result(seconds, peak, serverPeak, notes);
  } finally {
    run.aborted = true;
    self.stop();
    server?.stop();
    await cleanup("rabbitmq", [
      ...consumerTags.map(({ ch, tag }, i): [string, () => Promise<unknown>] => [`cancel consumer ${i}`, () => ch.cancel(tag)]),
      [
        `delete queue ${queue}`,
        async () => {
          if (!queueCreated || conns.length === 0) return;
          // A fresh channel: the run's channels may be closed after an error.
          const ch = await conns[0]!.createChannel();
          await ch.deleteQueue(queue);
          await ch.close();
        },
      ],
      ...conns.map((c, i): [string, () => Promise<unknown>] => [`close connection ${i}`, () => c.close()]),
    ]);
  }
}
