// The relay benchmark and, in the same run and with the same workload, its
// three baselines (raw NATS JetStream, raw Postgres, RabbitMQ durable queue);
// prints one side-by-side table and records it in bench/RESULTS.md.
//
//   npm run bench:relay        (= node dist/bench/relay/main.js)
//
// Every measurement runs in a fresh child process (this script with
// BENCH_MAIN_JOB set), after an unmeasured warm-up in that process, so the
// load generator's peak RSS and JIT state do not carry over between rows.
// The relay rows start two relay processes of their own (relay-instance.ts).
//
// Jobs: one relay row per mode (BENCH_MODES), and for each mode the three
// baselines with the same number of unacknowledged messages per sender:
// batch mode keeps BENCH_IN_FLIGHT SendBatch calls of BENCH_BATCH messages
// outstanding (8 x 32 = 256 messages), so its baselines run with 256 in
// flight (Postgres: 256-row INSERTs), and adds a second relay row with the
// same 256 messages outstanding in larger SendBatch calls (BENCH_LARGE_BATCH:
// 2 x 128); single mode keeps BENCH_IN_FLIGHT Send calls (8 messages), so its
// baselines run with 8 in flight; stream mode adds a row to each: one
// SendStream per sender with the same number of messages unsettled.
//
// Environment (all optional):
//   BENCH_MESSAGES=100000 BENCH_PAYLOAD_BYTES=1024 BENCH_SENDERS=4 BENCH_RECEIVERS=4
//     (100k: a measured phase of several seconds on this machine; in runs of 20k (~3 s)
//     ramp-up weighed so much that the same relay code measured 5,345 msgs/s at 20k
//     and 7,652-7,863 at 60k)
//   BENCH_BATCH=32 BENCH_IN_FLIGHT=8 (requests per sender)
//   BENCH_LARGE_BATCH=128         second batch row: SendBatch of 128, 256/128 = 2 in flight (0: no such row)
//   BENCH_MODES=batch,single,stream  relay modes (SendBatch / Send / SendStream)
//   BENCH_ONLY=relay,nats,postgres,rabbitmq
//   BENCH_REPEAT=1                measured runs per row; the median (by msgs/s) is reported
//   BENCH_WARMUP=40000            warm-up messages before each measured run (0: none). Long enough for
//                                 the relays' JIT to settle: their per-group code tiers up over tens of
//                                 thousands of messages (SendBatch 32 x 8, 100k measured: 15.9-16.2k msgs/s
//                                 after 2,000, 17.8-18.5k after 40,000; RabbitMQ the same after either)
//   BENCH_TIMEOUT_MS              bound of each measured phase (relay default max(120 s, 20 ms x messages))
//   BENCH_CONSUMER_BATCH=256      baselines: JetStream pull batch / RabbitMQ prefetch / Postgres rows per DELETE
//   BENCH_RABBIT_QUEUE_TYPE=classic|quorum
//   BENCH_RELAY_INSTANCES=2 BENCH_RELAY_POOL=10 (Postgres pool per relay process)
//   BENCH_PG_URL, BENCH_NATS_URL, BENCH_AMQP_URL
//   BENCH_COUNT_SQL=1             count SQL statements in the relay processes and print them
//   BENCH_CPU_PROF_DIR=<dir>      run the relay processes with --cpu-prof into <dir>
//   BENCH_RELAY_NODE_ARGS="..."   more Node options for the relay processes (space-separated, e.g. --trace-gc)
//   BENCH_RESULTS_FILE=bench/RESULTS.md   where the section is written; BENCH_WRITE_RESULTS=0 skips it
//
// Exit status 1 if any row failed (the others are still reported).

import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";

import pg from "pg";
import amqp from "amqplib";
import { connect as natsConnect } from "@nats-io/transport-node";

import { runNatsBaseline, runPostgresBaseline, runRabbitBaseline } from "./baselines.js";
import type { BaselineOptions } from "./baselines.js";
import { dropBenchDatabase, relayBenchName, runRelayBench } from "./relay-bench.js";
import type { RelayBenchOptions, RelayBenchResult, SqlStat } from "./relay-bench.js";
import { envInt, envList } from "../support/env.js";
import { EMPTY_PERCENTILES, printTable } from "../support/stats.js";
import type { BenchResult } from "../support/stats.js";

const RESULT_PREFIX = "BENCH_MAIN_RESULT ";
const JOB_ENV = "BENCH_MAIN_JOB";
const SECTION_BEGIN = "<!-- bench:relay:begin -->";
const SECTION_END = "<!-- bench:relay:end -->";
const CHILD_GRACE_MS = 15_000;

type BaselineKind = "nats" | "postgres" | "rabbitmq";
type Mode = "batch" | "single" | "stream";

type Job =
  | { kind: "relay"; label: string; mode: Mode; opts: RelayBenchOptions & { databaseName: string; pgUrl: string }; warmup: number }
  | { kind: BaselineKind; label: string; mode: Mode; opts: BaselineOptions; warmup: number };

// -------------------------------------------------------------- environment

function config() {
  const queueType = process.env.BENCH_RABBIT_QUEUE_TYPE;
  if (queueType !== undefined && queueType !== "" && queueType !== "classic" && queueType !== "quorum") {
    throw new Error(`BENCH_RABBIT_QUEUE_TYPE must be classic or quorum, got ${JSON.stringify(queueType)}`);
  }
  return {
    messages: envInt("BENCH_MESSAGES", 100000),
    payloadBytes: envInt("BENCH_PAYLOAD_BYTES", 1024, 12),
    senders: envInt("BENCH_SENDERS", 4),
    receivers: envInt("BENCH_RECEIVERS", 4),
    batch: envInt("BENCH_BATCH", 32),
    inFlight: envInt("BENCH_IN_FLIGHT", 8),
    largeBatch: envInt("BENCH_LARGE_BATCH", 128, 0),
    modes: envList<Mode>("BENCH_MODES", ["batch", "single", "stream"]),
    only: envList("BENCH_ONLY", ["relay", "nats", "postgres", "rabbitmq"] as const),
    repeat: envInt("BENCH_REPEAT", 1),
    warmup: envInt("BENCH_WARMUP", 40000, 0),
    timeoutMs: process.env.BENCH_TIMEOUT_MS ? envInt("BENCH_TIMEOUT_MS", 0) : undefined,
    consumerBatch: envInt("BENCH_CONSUMER_BATCH", 256),
    rabbitQueueType: (queueType || "classic") as "classic" | "quorum",
    instances: envInt("BENCH_RELAY_INSTANCES", 2),
    relayPool: envInt("BENCH_RELAY_POOL", 10),
    pgUrl: process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres",
    natsUrl: process.env.BENCH_NATS_URL || "127.0.0.1:4222",
    amqpUrl: process.env.BENCH_AMQP_URL || "amqp://guest:guest@127.0.0.1:5672",
    countSql: process.env.BENCH_COUNT_SQL === "1",
    cpuProfDir: process.env.BENCH_CPU_PROF_DIR || undefined,
    relayNodeArgs: (process.env.BENCH_RELAY_NODE_ARGS ?? "").split(" ").filter(Boolean),
    resultsFile: process.env.BENCH_RESULTS_FILE || fileURLToPath(new URL("../../../bench/RESULTS.md", import.meta.url)),
    writeResults: process.env.BENCH_WRITE_RESULTS !== "0",
  };
}
type Config = ReturnType<typeof config>;

/**
 * Workloads by messages outstanding per sender: batch mode's (BENCH_BATCH x
 * BENCH_IN_FLIGHT = 256) and single mode's (BENCH_IN_FLIGHT = 8). Each has its
 * relay rows (stream mode adds a SendStream row to each) and the baselines
 * with the same number unacknowledged.
 */
function jobs(c: Config): Job[] {
  type Shape = { mode: Mode; batchSize: number; inFlight: number };
  const workloads: Array<{ messagesInFlight: number; shapes: Shape[] }> = [];
  if (c.modes.includes("batch")) {
    const messagesInFlight = c.batch * c.inFlight;
    const shapes: Shape[] = [{ mode: "batch", batchSize: c.batch, inFlight: c.inFlight }];
    // The same messages outstanding per sender in fewer, larger requests.
    if (c.largeBatch > c.batch && messagesInFlight % c.largeBatch === 0) shapes.push({ mode: "batch", batchSize: c.largeBatch, inFlight: messagesInFlight / c.largeBatch });
    workloads.push({ messagesInFlight, shapes });
  }
  if (c.modes.includes("single")) workloads.push({ messagesInFlight: c.inFlight, shapes: [{ mode: "single", batchSize: 1, inFlight: c.inFlight }] });
  if (c.modes.includes("stream")) {
    if (!workloads.length) workloads.push({ messagesInFlight: c.batch * c.inFlight, shapes: [] }, { messagesInFlight: c.inFlight, shapes: [] });
    for (const w of workloads) w.shapes.push({ mode: "stream", batchSize: 1, inFlight: w.messagesInFlight });
  }
  const out: Job[] = [];
  for (const { messagesInFlight, shapes } of workloads) {
    for (const shape of c.only.includes("relay") ? shapes : []) {
      const opts = {
        messages: c.messages,
        payloadBytes: c.payloadBytes,
        senders: c.senders,
        receivers: c.receivers,
        mode: shape.mode,
        batchSize: shape.batchSize,
        inFlightPerSender: shape.inFlight,
        instances: c.instances,
        warmupMessages: c.warmup,
        pgUrl: c.pgUrl,
        natsUrl: c.natsUrl,
        databaseName: "", // chosen per run (runIsolated)
        relayPoolSize: c.relayPool,
        countSql: c.countSql,
        ...(c.cpuProfDir ? { cpuProfDir: c.cpuProfDir } : {}),
        ...(c.relayNodeArgs.length ? { relayNodeArgs: c.relayNodeArgs } : {}),
        ...(c.timeoutMs ? { timeoutMs: c.timeoutMs } : {}),
      };
      out.push({ kind: "relay", label: relayBenchName(opts), mode: shape.mode, opts, warmup: c.warmup });
    }
    for (const kind of ["nats", "postgres", "rabbitmq"] as const) {
      if (!c.only.includes(kind)) continue;
      const url = { nats: c.natsUrl, postgres: c.pgUrl, rabbitmq: c.amqpUrl }[kind];
      const opts: BaselineOptions = {
        messages: c.messages,
        payloadBytes: c.payloadBytes,
        senders: c.senders,
        inFlightPerSender: messagesInFlight,
        receivers: c.receivers,
        consumerBatch: c.consumerBatch,
        rabbitQueueType: c.rabbitQueueType,
        url: kind === "nats" && !/^\w+:\/\//.test(url) ? `nats://${url}` : url,
        ...(c.timeoutMs ? { timeoutMs: c.timeoutMs } : {}),
      };
      const name = { nats: "nats-jetstream", postgres: "postgres-batched", rabbitmq: `rabbitmq-${c.rabbitQueueType}` }[kind];
      out.push({ kind, label: `${name}, ${messagesInFlight} in flight`, mode: shapes[0]?.mode ?? "batch", opts, warmup: c.warmup });
    }
  }
  return out;
}

// ---------------------------------------------------------------- child side

async function runJob(job: Job): Promise<BenchResult> {
  switch (job.kind) {
    case "relay":
      return runRelayBench(job.opts); // warms up inside, through the same relay processes
    case "nats":
    case "postgres":
    case "rabbitmq": {
      const run = { nats: runNatsBaseline, postgres: runPostgresBaseline, rabbitmq: runRabbitBaseline }[job.kind];
      if (job.warmup > 0) await run({ ...job.opts, messages: job.warmup, sampleServer: false });
      return run(job.opts);
    }
  }
}

async function childMain(raw: string): Promise<void> {
  const job = JSON.parse(raw) as Job;
  try {
    const r = await runJob(job);
    process.stdout.write(RESULT_PREFIX + JSON.stringify({ ...r, name: job.label }) + "\n");
  } catch (err) {
    process.stdout.write(RESULT_PREFIX + JSON.stringify(failed(job.label, err)) + "\n");
    process.exitCode = 1;
  }
}

// --------------------------------------------------------------- parent side

function failed(name: string, err: unknown): BenchResult {
  return {
    name,
    messages: 0,
    seconds: NaN,
    msgsPerSec: NaN,
    sendAck: { ...EMPTY_PERCENTILES },
    endToEnd: { ...EMPTY_PERCENTILES },
    peakRssMiB: NaN,
    notes: `FAILED: ${err instanceof Error ? err.message : String(err)}`,
  };
}

/** Upper bound of one child: setup, warm-up, measured phase, cleanup. */
function jobTimeoutMs(job: Job): number {
  const measured = job.kind === "relay" ? (job.opts.timeoutMs ?? Math.max(120_000, job.opts.messages * 20)) : (job.opts.timeoutMs ?? Math.max(60_000, job.opts.messages * 3));
  const warm = job.warmup > 0 ? Math.max(120_000, job.warmup * 20) : 0;
  return measured + warm + 180_000;
}

function runIsolated(template: Job): Promise<BenchResult> {
  // A fresh database per run, named here so that it can be dropped here if the child dies.
  const job: Job =
    template.kind === "relay"
      ? { ...template, opts: { ...template.opts, databaseName: `parley_bench_relay_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}` } }
      : template;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, [JOB_ENV]: JSON.stringify(job) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => (out += d));
    const limit = jobTimeoutMs(job);
    const timer = setTimeout(() => {
      timedOut = true;
      console.error(`${job.label}: no result after ${Math.round(limit / 1000)} s; stopping it`);
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), CHILD_GRACE_MS).unref();
    }, limit);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve(failed(job.label, err));
    });
    child.on("close", async (code, signal) => {
      clearTimeout(timer);
      // A killed relay child cannot drop its database; its relay processes exit
      // by themselves when their stdin closes.
      if (job.kind === "relay" && (timedOut || code !== 0)) await dropBenchDatabase(job.opts.pgUrl, job.opts.databaseName);
      const line = out.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
      if (line) resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as BenchResult);
      else resolve(failed(job.label, new Error(`${timedOut ? "timed out; " : ""}child exited with ${signal ?? code}: ${out.trim().slice(-500)}`)));
    });
  });
}

/** The run with the median msgs/s; notes the range when there are several. */
function median(runs: BenchResult[]): BenchResult {
  const ok = runs.filter((r) => !r.notes?.startsWith("FAILED"));
  if (ok.length === 0) return runs[runs.length - 1]!;
  if (ok.length === 1 && runs.length === 1) return ok[0]!;
  const sorted = [...ok].sort((a, b) => a.msgsPerSec - b.msgsPerSec);
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
  let range = `median of ${ok.length} runs (${sorted.map((r) => Math.round(r.msgsPerSec)).join(", ")} msgs/s)`;
  if (ok.length < runs.length) range += `; ${runs.length - ok.length} run(s) failed`;
  return { ...mid, notes: mid.notes ? `${mid.notes}; ${range}` : range };
}

function printSql(r: RelayBenchResult): void {
  if (!r.sql) return;
  const perReq = (n: number) => (n / Math.max(1, r.totalRequests)).toFixed(2);
  console.log(`\nSQL statements in the relay processes, ${r.name} (whole run: ${r.totalRequests} send requests incl. warm-up):`);
  console.log("   calls  per send  mean ms  statement");
  for (const [text, s] of Object.entries(r.sql as Record<string, SqlStat>)) {
    if (s.calls < 10) continue;
    console.log(`${String(s.calls).padStart(8)}  ${perReq(s.calls).padStart(8)}  ${(s.totalMs / s.calls).toFixed(2).padStart(7)}  ${text}`);
  }
}

async function versions(c: Config): Promise<string[]> {
  const bounded = <T>(p: Promise<T>) => Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000).unref())]);
  const pgVersion = bounded(
    (async () => {
      const client = new pg.Client({ connectionString: c.pgUrl });
      client.on("error", () => undefined);
      try {
        await client.connect();
        return (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version;
      } finally {
        await client.end().catch(() => undefined);
      }
    })(),
  ).catch(() => undefined);
  const natsVersion = bounded(
    (async () => {
      const nc = await natsConnect({ servers: c.natsUrl });
      try {
        return nc.info?.version;
      } finally {
        await nc.close();
      }
    })(),
  ).catch(() => undefined);
  const rabbitVersion = bounded(
    (async () => {
      const conn = await amqp.connect(c.amqpUrl);
      try {
        return String(conn.connection.serverProperties.version ?? "");
      } finally {
        await conn.close();
      }
    })(),
  ).catch(() => undefined);
  const [p, n, r] = await Promise.all([pgVersion, natsVersion, rabbitVersion]);
  return [`Node ${process.versions.node}`, `PostgreSQL ${p ?? "?"}`, `NATS ${n ?? "?"}`, `RabbitMQ ${r ?? "?"}`];
}

/** The checked-out commit, "+dirty" when the work tree has changes; undefined outside git. */
function gitRevision(): string | undefined {
  const cwd = fileURLToPath(new URL("../../..", import.meta.url));
  try {
    const rev = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim();
    return dirty ? `${rev}+dirty` : rev;
  } catch {
    return undefined;
  }
}

function command(): string {
  const vars = Object.keys(process.env)
    .filter((k) => k.startsWith("BENCH_") && k !== JOB_ENV)
    .sort()
    .map((k) => `${k}=${/^[\w.,:/@-]*$/.test(process.env[k]!) ? process.env[k] : JSON.stringify(process.env[k])}`);
  return [...vars, "node dist/bench/relay/main.js"].join(" ");
}

const HEADER = `# Benchmark results

Each section is written by one benchmark script and replaced when it runs
again; the command, date and machine are recorded with each table.
`;

const HOW_TO_READ = `How to read the table (latencies in ms, memory in MiB):

- **msgs/s**: durable messages per second end to end: first send to the moment the last message has been received *and* every send acknowledged. Higher is better.
- **ack p50/p99**: per message, send start to the durable acknowledgement the sender gets (relay receipt after the Postgres commit, JetStream PubAck, RabbitMQ publisher confirm, Postgres COMMIT). Every message of a batch gets the batch's latency.
- **e2e p50/p99/max**: per message, send start (a timestamp in the payload) to the receiving code being handed the message.
- **peak RSS**: the load generator (all senders and receivers, one process). **server RSS**: the system under test: for relay rows the two relay processes summed (their Postgres and NATS not included); for baselines the broker or database processes (Postgres as summed Pss).
- **notes**: workload shape; the loss/duplicate check (every message counted by id); for relay rows when the sends finished versus the last delivery, what was left in the relay database after the receivers stopped, and CPU seconds spent in the measured phase by the relays, Postgres, NATS and the load generator.
- Rows are grouped by workload: a relay row, then the baselines with the same number of unacknowledged messages per sender. All processes share the machine (and the machine is shared with other work: see the load average), so compare rows of one table, not across runs.
`;

function writeSection(file: string, section: string): void {
  const block = `${SECTION_BEGIN}\n${section.trimEnd()}\n${SECTION_END}\n`;
  let text = existsSync(file) ? readFileSync(file, "utf8") : HEADER;
  const begin = text.indexOf(SECTION_BEGIN);
  const end = text.indexOf(SECTION_END);
  if (begin >= 0 && end > begin) text = text.slice(0, begin) + block + text.slice(end + SECTION_END.length).replace(/^\n/, "");
  else text = `${text.trimEnd()}\n\n${block}`;
  writeFileSync(file, text);
}

async function main(): Promise<void> {
  const rawJob = process.env[JOB_ENV];
  if (rawJob) return childMain(rawJob);

  const c = config();
  const list = jobs(c);
  if (list.length === 0) throw new Error("nothing to run (BENCH_MODES / BENCH_ONLY)");
  const started = new Date();
  const loadAtStart = os.loadavg()[0]!;
  console.log(
    `relay benchmark: ${c.messages} messages x ${c.payloadBytes} B, ${c.senders} senders, ${c.receivers} receivers, ` +
      `modes ${c.modes.join("+")} (batch ${c.batch}${c.largeBatch ? ` and ${c.largeBatch}` : ""}, ${c.batch * c.inFlight} messages in flight per sender), ` +
      `${c.repeat} run(s) per row, warm-up ${c.warmup}`,
  );

  const runs = new Map<string, BenchResult[]>(list.map((j) => [j.label, []]));
  // Repeats go round the whole list, so slow drift of the machine hits every row alike.
  for (let rep = 0; rep < c.repeat; rep++) {
    for (const job of list) {
      console.log(`running ${job.label}${c.repeat > 1 ? ` (${rep + 1}/${c.repeat})` : ""} ...`);
      const r = await runIsolated(job);
      if (r.notes?.startsWith("FAILED")) console.error(`  ${job.label}: ${r.notes}`);
      else console.log(`  ${Math.round(r.msgsPerSec)} msgs/s, ack p50 ${r.sendAck.p50.toFixed(2)} ms, e2e p50 ${r.endToEnd.p50.toFixed(2)} ms`);
      if (job.kind === "relay") printSql(r as RelayBenchResult);
      runs.get(job.label)!.push(r);
    }
  }
  const results = list.map((j) => median(runs.get(j.label)!));
  console.log("");
  const md = printTable(results);

  if (c.writeResults) {
    const machine = `${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim() ?? "?"}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}`;
    const section = [
      "## Relay (bench/relay)",
      "",
      `- Date: ${started.toISOString().replace(/\.\d+Z$/, "Z")}${gitRevision() ? `, code at ${gitRevision()}` : ""}`,
      `- Machine: ${machine}; ${(await versions(c)).join(", ")}; load average ${loadAtStart.toFixed(2)} at start, ${os.loadavg()[0]!.toFixed(2)} at end (other work on the machine skews the figures)`,
      `- Command: \`${command()}\` (\`npm run bench:relay\` after \`npm run build\`)`,
      `- Workload: ${c.messages} messages of ${c.payloadBytes} B; ${c.senders} senders (one identity/device each), ${c.receivers} receivers ` +
        `(one device each, message i to receiver i mod ${c.receivers}); relay: ${c.instances} relay processes on one fresh Postgres database + NATS, ` +
        `senders and receivers spread over them, receivers on inbox({follow: true}); ` +
        `${c.inFlight} requests in flight per sender (SendBatch of ${c.batch}, or Send)` +
        `${c.largeBatch ? `, and ${(c.batch * c.inFlight) / c.largeBatch} SendBatch of ${c.largeBatch} (the same messages outstanding)` : ""}` +
        `${c.modes.includes("stream") ? `; SendStream: one stream per sender with as many messages unsettled as the other rows of its workload` : ""}; baselines with the same number of unacknowledged messages per sender ` +
        `and ${c.receivers} consumers; ${c.warmup} warm-up messages before each measured run; ${c.repeat} run(s) per row${c.repeat > 1 ? " (median by msgs/s)" : ""}.`,
      "",
      md,
      HOW_TO_READ,
    ].join("\n");
    writeSection(c.resultsFile, section);
    console.log(`\nwrote ${c.resultsFile}`);
  }
  if (results.some((r) => r.notes?.startsWith("FAILED"))) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
