// The relay benchmark: senders -> relay (2 instances, child processes, one
// Postgres database + NATS) -> receivers, through the SDK (client/relay.ts).
//
// Workload: `senders` identities with one device each send `messages`
// messages of `payloadBytes` to the devices of `receivers` other identities
// (message i goes to receiver i mod receivers), either as SendBatch calls of
// `batchSize` messages ("batch") or as single Send calls ("single"), with
// `inFlightPerSender` requests outstanding per sender (closed loop). Senders
// and receivers are spread over the instances (sender/receiver i talks to
// instance i mod instances), so most messages cross instances through the
// NATS wake-up. Receivers consume with inbox({ follow: true }); the SDK acks
// inside (every 256 messages, after 20 ms of quiet, and when the stream ends).
//
// Figures (BenchResult, as for the baselines in ./baselines.ts):
//  - msgsPerSec: messages / (first send start -> last message received AND
//    every send acknowledged);
//  - sendAck: per message, request start -> receipt (for a batch, every
//    message of it gets the batch's latency);
//  - endToEnd: per message, request start (float64 in payload bytes [0,8)) ->
//    handler called;
//  - peakRssMiB: this (load generator) process; serverPeakRssMiB: the relay
//    processes, summed (Postgres and NATS are not included).
// Correctness: every message is counted by its message id (and the index in
// its payload must agree); lost, duplicated and out-of-order deliveries, and
// what is left in the relay database after the receivers stop, go into the
// notes. A run with anything lost fails.
//
// Bounded: setup, the warm-up, the measured phase and cleanup each have a
// timeout; the relay processes are stopped (SIGTERM, then SIGKILL) and the
// database is dropped in every case. The relay processes also exit on their
// own when this process dies (their stdin closes).

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import pg from "pg";

import { RelayClient, type DeviceCredentials, type InboxMessage, type MessageStream, type OutgoingMessage } from "../../client/relay.js";
import { generateKeyPair } from "../../services/common/crypto.js";
import { SERVER_NODE_FLAGS } from "../../services/common/node-flags.js";
import { LatencyRecorder, MiB, PeakRssSampler, findPidsByName, nowMs, processCpuSeconds, readPayloadStamp } from "../support/stats.js";
import type { BenchResult } from "../support/stats.js";

export type RelayBenchOptions = {
  /** Messages in the measured phase. */
  messages: number;
  /** Payload bytes (min 12: send time + index). */
  payloadBytes: number;
  senders: number;
  receivers: number;
  /** "batch": SendBatch of batchSize messages; "single": one Send per message; "stream": one SDK sendStream() per sender, a message at a time (over SendStreamBatches, which the relay offers). */
  mode: "batch" | "single" | "stream";
  /** Messages per SendBatch (batch mode; default 32). */
  batchSize?: number;
  /** Requests (Send or SendBatch calls) outstanding per sender. */
  inFlightPerSender: number;
  /** Relay processes (default 2). */
  instances?: number;
  /** Unmeasured messages sent and received first through the same relays (default 0). */
  warmupMessages?: number;
  /** Bound of the measured phase in ms (default max(120 s, 20 ms x messages)). */
  timeoutMs?: number;
  /** Admin URL of the Postgres server (default postgres://postgres@127.0.0.1:5432/postgres). */
  pgUrl?: string;
  /** NATS server(s) (default 127.0.0.1:4222). */
  natsUrl?: string;
  /** Name of the throwaway database (default a random parley_bench_relay_*); it must not exist. */
  databaseName?: string;
  /** Postgres pool size of each relay process (default 10, as in services/common/db.ts). */
  relayPoolSize?: number;
  /** Run the relay processes with --cpu-prof into this directory. */
  cpuProfDir?: string;
  /** More Node options for the relay processes (e.g. --trace-gc). */
  relayNodeArgs?: string[];
  /** Count SQL statements in the relay processes (adds RelayBenchResult.sql). */
  countSql?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
};

export type SqlStat = { calls: number; totalMs: number };

export type RelayBenchResult = BenchResult & {
  /** Send/SendBatch calls in the measured phase. */
  requests: number;
  /** CPU seconds spent during the measured phase. */
  cpuSeconds: { relays: number; loadGenerator: number; postgres: number; nats: number };
  /** Statement counts summed over the relay processes (whole run: setup, warm-up and measured), with countSql. */
  sql?: Record<string, SqlStat>;
  /** Send/SendBatch calls over the whole run (to relate sql counts to). */
  totalRequests: number;
};

const DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_NATS_URL = "127.0.0.1:4222";
const SETUP_TIMEOUT_MS = 60_000;
const CLEANUP_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 12_000;
// Protocol of relay-instance.ts (not imported: that module runs on import).
const READY_PREFIX = "RELAY_READY ";
const SQL_STATS_PREFIX = "RELAY_SQL_STATS ";
const KEY_ENV = "PARLEY_BENCH_RELAY_KEY";
const RELAY_ID = "bench";

// ------------------------------------------------------------------ helpers

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

function split(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < total % parts ? 1 : 0));
}

function dbUrl(adminUrl: string, name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

function cpuOf(pids: number[]): number {
  return pids.reduce((s, p) => s + processCpuSeconds(p), 0);
}

/** Drops a database if it exists; never throws (reports instead). */
export async function dropBenchDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid database name ${name}`);
  const admin = new pg.Client({ connectionString: adminUrl, application_name: "parley-bench-cleanup" });
  admin.on("error", () => undefined);
  try {
    await withTimeout(
      (async () => {
        await admin.connect();
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      })(),
      CLEANUP_TIMEOUT_MS,
      () => "timed out",
    );
  } catch (err) {
    console.error(`[relay-bench] cleanup: drop database ${name} failed: ${(err as Error).message}`);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

// --------------------------------------------------------- relay processes

class RelayProcess {
  readonly exited: Promise<number | null>;
  sql: Record<string, SqlStat> | undefined;
  private constructor(
    readonly label: string,
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
      else child.once("exit", (code) => resolve(code));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static start(label: string, args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[], log: (line: string) => void): Promise<RelayProcess> {
    const script = fileURLToPath(new URL("./relay-instance.js", import.meta.url));
    const child = spawn(process.execPath, [...nodeArgs, script, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let proc: RelayProcess | undefined;
    const pending: { sql?: Record<string, SqlStat> } = {};
    return new Promise<RelayProcess>((resolve, reject) => {
      const tail: string[] = [];
      const remember = (line: string) => {
        if (/^\s+at /.test(line)) return; // stack frames: the log has them
        tail.push(line);
        if (tail.length > 20) tail.shift();
      };
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (line.startsWith(READY_PREFIX)) {
          const { port } = JSON.parse(line.slice(READY_PREFIX.length)) as { port: number };
          proc = new RelayProcess(label, child, port);
          resolve(proc);
        } else if (line.startsWith(SQL_STATS_PREFIX)) {
          pending.sql = JSON.parse(line.slice(SQL_STATS_PREFIX.length)) as Record<string, SqlStat>;
          if (proc) proc.sql = pending.sql;
        } else {
          remember(line);
          log(`[relay ${label}] ${line}`);
        }
      });
      createInterface({ input: child.stderr! }).on("line", (line) => {
        remember(line);
        log(`[relay ${label}] ${line}`);
      });
      child.stdin!.on("error", () => undefined);
      child.once("error", (err) => reject(err));
      child.once("exit", (code, signal) => {
        if (!proc) reject(new Error(`relay ${label} exited with ${signal ?? code} before it was ready: ${tail.join(" | ").slice(-800)}`));
      });
    });
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves when it is gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), STOP_GRACE_MS);
    try {
      await this.exited;
      // Give the stdout reader a moment to take the stats line.
      await new Promise((r) => setImmediate(r));
    } finally {
      clearTimeout(t);
    }
  }
}

// ------------------------------------------------------------------- phases

/** One sending round (warm-up or measured): counters, latencies, completion. */
class Phase {
  readonly sendAck: LatencyRecorder;
  readonly e2e: LatencyRecorder;
  private readonly seen: Uint8Array;
  next = 0;
  acked = 0;
  received = 0;
  duplicates = 0;
  mismatched = 0;
  duplicateReceipts = 0;
  requests = 0;
  startMs = 0;
  /** When every send was acknowledged (0 until then). */
  sendsDoneMs = 0;
  /** When the last message was received (0 until then). */
  lastReceivedMs = 0;
  aborted = false;
  readonly allReceived: Promise<void>;
  private resolveAll!: () => void;
  private rejectAll!: (err: Error) => void;

  constructor(
    readonly tag: string,
    readonly messages: number,
  ) {
    this.sendAck = new LatencyRecorder(messages);
    this.e2e = new LatencyRecorder(messages);
    this.seen = new Uint8Array(messages);
    this.allReceived = new Promise<void>((resolve, reject) => {
      this.resolveAll = resolve;
      this.rejectAll = reject;
    });
    this.allReceived.catch(() => undefined);
    if (messages === 0) this.resolveAll();
  }

  onReceive(index: number, payload: Uint8Array, now: number): void {
    if (index >= this.messages) {
      this.mismatched++;
      return;
    }
    if (payload.length < 12 || new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(8, true) !== index) this.mismatched++;
    if (this.seen[index]) {
      this.duplicates++;
      return;
    }
    this.seen[index] = 1;
    this.e2e.record(now - readPayloadStamp(payload));
    if (++this.received === this.messages) {
      this.lastReceivedMs = now;
      this.resolveAll();
    }
  }

  get done(): boolean {
    return this.received >= this.messages;
  }

  fail(err: unknown): void {
    this.aborted = true;
    this.rejectAll(err instanceof Error ? err : new Error(String(err)));
  }

  progress(): string {
    return `allocated ${this.next}/${this.messages}, acked ${this.acked}, received ${this.received}`;
  }
}

// -------------------------------------------------------------------- bench

type Party = { creds: DeviceCredentials; client: RelayClient; instance: number; stream?: MessageStream };

function validate(o: RelayBenchOptions) {
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`relay bench option ${name} must be an integer >= ${min}, got ${v}`);
  };
  int("messages", o.messages, 1);
  int("payloadBytes", o.payloadBytes, 12);
  int("senders", o.senders, 1);
  int("receivers", o.receivers, 1);
  int("inFlightPerSender", o.inFlightPerSender, 1);
  const batchSize = o.mode === "batch" ? (o.batchSize ?? 32) : 1;
  int("batchSize", batchSize, 1);
  const instances = o.instances ?? 2;
  int("instances", instances, 1);
  const warmupMessages = o.warmupMessages ?? 0;
  int("warmupMessages", warmupMessages, 0);
  const timeoutMs = o.timeoutMs ?? Math.max(120_000, o.messages * 20);
  int("timeoutMs", timeoutMs, 1);
  const relayPoolSize = o.relayPoolSize ?? 10;
  int("relayPoolSize", relayPoolSize, 1);
  if (o.mode !== "batch" && o.mode !== "single" && o.mode !== "stream") throw new RangeError(`relay bench mode must be batch, single or stream, got ${String(o.mode)}`);
  if (o.messages >= 2 ** 32) throw new RangeError("messages must be < 2^32");
  const databaseName = o.databaseName ?? `parley_bench_relay_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
  if (!/^[a-z_][a-z0-9_]*$/.test(databaseName)) throw new RangeError(`invalid database name ${databaseName}`);
  return { ...o, batchSize, instances, warmupMessages, timeoutMs, relayPoolSize, databaseName, pgUrl: o.pgUrl ?? DEFAULT_PG_URL, natsUrl: o.natsUrl ?? DEFAULT_NATS_URL };
}

export function relayBenchName(o: Pick<RelayBenchOptions, "mode" | "batchSize" | "inFlightPerSender">): string {
  if (o.mode === "stream") return `relay, SendStream, ${o.inFlightPerSender} in flight`;
  return o.mode === "batch" ? `relay, SendBatch ${o.batchSize ?? 32} x ${o.inFlightPerSender} in flight` : `relay, Send x ${o.inFlightPerSender} in flight`;
}

export async function runRelayBench(options: RelayBenchOptions): Promise<RelayBenchResult> {
  const o = validate(options);
  const log = o.log ?? ((line: string) => console.error(line));
  const runTag = randomBytes(3).toString("hex");
  const name = relayBenchName(o);
  const admin = new pg.Client({ connectionString: o.pgUrl, application_name: "parley-bench-relay-admin" });
  admin.on("error", (err) => log(`[relay-bench] admin connection error: ${err.message}`));
  let adminConnected = false;
  let dbCreated = false;
  const relays: RelayProcess[] = [];
  const parties: Party[] = [];
  const inboxAbort = new AbortController();
  const inboxes: Promise<void>[] = [];
  const phases = new Map<string, Phase>();
  const self = new PeakRssSampler("self");
  let relayRss: PeakRssSampler | undefined;
  const outOfOrder = { count: 0 };
  let reconnects = 0;
  let totalRequests = 0;

  try {
    // ---------------------------------------------------------------- setup
    const key = generateKeyPair();
    const senders: Party[] = [];
    const receivers: Party[] = [];
    const inboxReady: Promise<void>[] = [];
    const setup = async () => {
      await admin.connect();
      adminConnected = true;
      await admin.query(`CREATE DATABASE ${o.databaseName}`);
      dbCreated = true;
      const env = { ...process.env, [KEY_ENV]: key.privateKeyPem, PARLEY_LOG_LEVEL: process.env.BENCH_RELAY_LOG_LEVEL ?? "warn" };
      const args = ["--database-url", dbUrl(o.pgUrl, o.databaseName), "--nats-url", o.natsUrl, "--relay-id", RELAY_ID, "--pool", String(o.relayPoolSize)];
      if (o.countSql) args.push("--count-sql");
      // As a deployed relay runs (services/common/node-flags.ts), plus what the run asks for.
      const nodeArgs = [...SERVER_NODE_FLAGS, ...(o.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${o.cpuProfDir}`] : []), ...(o.relayNodeArgs ?? [])];
      // The first instance applies the migrations; the others start after it.
      for (let i = 0; i < o.instances; i++) {
        const start = RelayProcess.start(String.fromCharCode(65 + i), args, env, nodeArgs, log);
        // Track it for cleanup even if a sibling fails.
        relays.push(await start);
      }
      const addressesFor = (i: number) => relays.map((_, k) => relays[(i + k) % relays.length]!.address);

      const registrar = RelayClient.create({ addresses: [relays[0]!.address], deadlineMs: 15_000 });
      try {
        const make = async (role: "s" | "r", i: number): Promise<Party> => {
          const identityId = `bench-${runTag}-${role}${i}`;
          const deviceId = `${identityId}-d`;
          const identityKeys = generateKeyPair();
          const deviceKeys = generateKeyPair();
          await registrar.registerIdentity(identityId, identityKeys);
          await registrar.registerDevice(identityId, identityKeys.privateKeyPem, deviceId, deviceKeys.publicKey);
          const creds = { identityId, deviceId, privateKeyPem: deviceKeys.privateKeyPem };
          const instance = i % relays.length;
          const client = RelayClient.create({ addresses: addressesFor(instance), device: creds, relayPublicKey: key.publicKey, deadlineMs: 30_000 });
          const party = { creds, client, instance };
          parties.push(party);
          await client.authenticate();
          return party;
        };
        for (let i = 0; i < o.senders; i++) senders.push(await make("s", i));
        if (o.mode === "stream") for (const s of senders) s.stream = s.client.sendStream();
        for (let i = 0; i < o.receivers; i++) receivers.push(await make("r", i));
      } finally {
        registrar.close();
      }

      // Receivers: one follow stream each, dispatching to the phase by message id.
      for (const r of receivers) {
        let lastSeq = 0;
        let ready!: () => void;
        inboxReady.push(new Promise<void>((resolve) => (ready = resolve)));
        const handler = (m: InboxMessage) => {
          const now = nowMs();
          if (m.seq <= lastSeq) outOfOrder.count++;
          lastSeq = m.seq;
          // message id: <runTag>.<phase>.<index>
          const parts = m.messageId.split(".");
          const phase = parts.length === 3 && parts[0] === runTag ? phases.get(parts[1]!) : undefined;
          if (!phase) throw new Error(`receiver ${r.creds.deviceId} got a foreign message ${m.messageId}`);
          phase.onReceive(Number(parts[2]), m.payload, now);
        };
        inboxes.push(
          r.client
            .inbox(handler, {
              follow: true,
              signal: inboxAbort.signal,
              onBacklogComplete: () => ready(),
              onReconnect: (err) => {
                reconnects++;
                log(`[relay-bench] receiver ${r.creds.deviceId} reconnects: ${err.message}`);
              },
            })
            .catch((err: unknown) => {
              for (const p of phases.values()) p.fail(new Error(`receiver ${r.creds.deviceId} failed: ${(err as Error).message}`));
            }),
        );
      }
      await Promise.all(inboxReady);
    };
    await withTimeout(setup(), SETUP_TIMEOUT_MS, () => `relay bench setup timed out after ${SETUP_TIMEOUT_MS / 1000} s (Postgres at ${o.pgUrl}, NATS at ${o.natsUrl}?)`);

    const filler = Buffer.alloc(o.payloadBytes, 0x61);
    const runPhase = async (phase: Phase, timeoutMs: number) => {
      phases.set(phase.tag, phase);
      phase.startMs = nowMs();
      const counts = split(phase.messages, o.senders);
      const sending = Promise.all(
        senders.map(async (s, si) => {
          let left = counts[si]!;
          const worker = async () => {
            while (!phase.aborted && left > 0) {
              const n = Math.min(o.batchSize, left);
              left -= n;
              const t = nowMs();
              const msgs: OutgoingMessage[] = [];
              for (let k = 0; k < n; k++) {
                const index = phase.next++;
                const payload = Buffer.allocUnsafe(o.payloadBytes);
                filler.copy(payload, 12, 12);
                payload.writeDoubleLE(t, 0);
                payload.writeUInt32LE(index, 8);
                msgs.push({ to: [{ deviceId: receivers[index % receivers.length]!.creds.deviceId }], payload, messageId: `${runTag}.${phase.tag}.${index}` });
              }
              phase.requests++;
              totalRequests++;
              const receipts =
                o.mode === "batch" ? await s.client.sendBatch(msgs) : o.mode === "stream" ? [await s.stream!.send(msgs[0]!)] : [await s.client.send(msgs[0]!)];
              const ms = nowMs() - t;
              if (receipts.length !== n) throw new Error(`${receipts.length} receipts for ${n} messages`);
              for (const r of receipts) {
                if (r.duplicate) phase.duplicateReceipts++;
                phase.sendAck.record(ms);
                phase.acked++;
              }
            }
          };
          await Promise.all(Array.from({ length: Math.max(1, Math.min(o.inFlightPerSender, Math.ceil(left / o.batchSize))) }, worker));
        }),
      ).then(
        () => void (phase.sendsDoneMs = nowMs()),
        (err: unknown) => {
          phase.fail(new Error(`send failed: ${(err as Error).message}`));
          throw err;
        },
      );
      try {
        await withTimeout(Promise.all([sending, phase.allReceived]), timeoutMs, () => `relay bench (${phase.tag}) timed out after ${(timeoutMs / 1000).toFixed(1)} s: ${phase.progress()}`);
      } catch (err) {
        phase.aborted = true;
        throw err;
      }
      return (nowMs() - phase.startMs) / 1000;
    };

    // -------------------------------------------------------------- warm-up
    if (o.warmupMessages > 0) {
      log(`[relay-bench] ${name}: warm-up, ${o.warmupMessages} messages`);
      await runPhase(new Phase("w", o.warmupMessages), Math.max(120_000, o.warmupMessages * 20));
    }

    // ------------------------------------------------------------- measured
    log(`[relay-bench] ${name}: measuring, ${o.messages} messages`);
    const relayPids = relays.map((r) => r.pid);
    relayRss = new PeakRssSampler(relayPids);
    const natsPids = findPidsByName("nats-server");
    // Postgres backends may start during the run: count new ones from zero.
    const pgCpu0 = new Map(findPidsByName("postgres").map((p) => [p, processCpuSeconds(p)]));
    const cpu0 = { relays: cpuOf(relayPids), self: process.cpuUsage(), nats: cpuOf(natsPids) };
    self.start();
    relayRss.start();
    const measured = new Phase("m", o.messages);
    const seconds = await runPhase(measured, o.timeoutMs);
    const selfCpu = process.cpuUsage(cpu0.self);
    const cpu = {
      relays: cpuOf(relayPids) - cpu0.relays,
      loadGenerator: (selfCpu.user + selfCpu.system) / 1e6,
      postgres: findPidsByName("postgres").reduce((sum, p) => sum + processCpuSeconds(p) - (pgCpu0.get(p) ?? 0), 0),
      nats: cpuOf(natsPids) - cpu0.nats,
    };
    const peak = self.stop();
    const relayPeak = relayRss.stop();

    // Stop the receivers (the SDK acks what they handled), then look at what is left.
    inboxAbort.abort();
    await withTimeout(Promise.all(inboxes), CLEANUP_TIMEOUT_MS, () => "receivers did not stop").catch((err: Error) => log(`[relay-bench] ${err.message}`));
    const db = new pg.Client({ connectionString: dbUrl(o.pgUrl, o.databaseName), application_name: "parley-bench-relay-check" });
    db.on("error", () => undefined);
    let left = "?";
    let sentRows = "?";
    try {
      await db.connect();
      const r = await db.query<{ entries: string; depth: string; sent: string }>(
        "SELECT (SELECT count(*) FROM entries) AS entries, (SELECT COALESCE(sum(depth), 0) FROM queues) AS depth, (SELECT count(*) FROM sent_messages) AS sent",
      );
      left = r.rows[0]!.entries === r.rows[0]!.depth ? r.rows[0]!.entries : `${r.rows[0]!.entries} (queues.depth says ${r.rows[0]!.depth})`;
      sentRows = r.rows[0]!.sent;
    } catch (err) {
      log(`[relay-bench] check query failed: ${(err as Error).message}`);
    } finally {
      await db.end().catch(() => undefined);
    }

    const lost = measured.messages - measured.received;
    const notes = [
      `${o.senders} senders x ${o.inFlightPerSender} ${o.mode === "batch" ? `SendBatch(${o.batchSize})` : o.mode === "stream" ? "messages on one SendStream" : "Send"} in flight (${o.inFlightPerSender * o.batchSize} msgs), ${o.receivers} receivers, ${o.instances} relay processes`,
      `check by message id: ${measured.received}/${measured.messages} received, ${lost} lost, ${measured.duplicates} duplicates${measured.mismatched ? `, ${measured.mismatched} id/payload mismatches` : ""}${outOfOrder.count ? `, ${outOfOrder.count} out of order` : ""}${measured.duplicateReceipts ? `, ${measured.duplicateReceipts} duplicate receipts` : ""}${reconnects ? `, ${reconnects} stream reconnects` : ""}`,
      `all sends acked after ${((measured.sendsDoneMs - measured.startMs) / 1000).toFixed(2)} s, last message received after ${((measured.lastReceivedMs - measured.startMs) / 1000).toFixed(2)} s`,
      `relay DB after acks: ${left} entries left, ${sentRows} idempotency rows`,
      `CPU s: relays ${cpu.relays.toFixed(1)}, postgres ${cpu.postgres.toFixed(1)}, nats ${cpu.nats.toFixed(1)}, load gen ${cpu.loadGenerator.toFixed(1)}`,
      "server RSS = relay processes",
    ];
    if (lost > 0 || measured.mismatched > 0) throw new Error(`relay bench lost data: ${notes[1]}`);
    const result: RelayBenchResult = {
      name,
      messages: measured.messages,
      seconds,
      msgsPerSec: measured.messages / seconds,
      sendAck: measured.sendAck.percentiles(),
      endToEnd: measured.e2e.percentiles(),
      peakRssMiB: peak / MiB,
      serverPeakRssMiB: relayPeak / MiB,
      notes: notes.join("; "),
      requests: measured.requests,
      cpuSeconds: cpu,
      totalRequests,
    };

    // Stop the relays now so their SQL counts can be collected.
    for (const s of senders) await s.stream?.close();
    for (const p of parties) p.client.close();
    await Promise.all(relays.map((r) => r.stop()));
    if (o.countSql) {
      const sum: Record<string, SqlStat> = {};
      for (const r of relays) {
        for (const [k, v] of Object.entries(r.sql ?? {})) {
          const s = (sum[k] ??= { calls: 0, totalMs: 0 });
          s.calls += v.calls;
          s.totalMs += v.totalMs;
        }
      }
      result.sql = sum;
    }
    return result;
  } finally {
    for (const p of phases.values()) p.aborted = true;
    self.stop();
    relayRss?.stop();
    inboxAbort.abort();
    for (const p of parties) p.client.close();
    await Promise.all(relays.map((r) => r.stop().catch((err: Error) => log(`[relay-bench] cleanup: stop relay ${r.label}: ${err.message}`))));
    if (adminConnected) await admin.end().catch(() => undefined);
    if (dbCreated) await dropBenchDatabase(o.pgUrl, o.databaseName);
  }
}
