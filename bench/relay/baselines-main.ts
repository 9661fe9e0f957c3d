// Runs the relay-benchmark baselines (NATS JetStream, Postgres, RabbitMQ)
// and prints the result table.
//
//   node dist/bench/relay/baselines-main.js
//
// Environment (all optional):
//   BENCH_MESSAGES=20000 BENCH_PAYLOAD_BYTES=1024 BENCH_SENDERS=4
//   BENCH_IN_FLIGHT=32 BENCH_RECEIVERS=1 BENCH_CONSUMER_BATCH=256
//   BENCH_TIMEOUT_MS=<per run> BENCH_ONLY=nats,postgres,rabbitmq
//   BENCH_RABBIT_QUEUE_TYPE=classic|quorum
//   BENCH_NATS_URL, BENCH_PG_URL, BENCH_AMQP_URL
//   BENCH_ISOLATE=1   run each baseline in its own child process (default),
//                     so peak RSS of one run is not inflated by the previous;
//                     0 runs them in this process one after the other
//   BENCH_WARMUP=2000  messages of an unmeasured warm-up run (same process,
//                      fresh stream/queue/database) before each measured run;
//                      0 disables
//   BENCH_REPEAT=3     measured runs per baseline; the run with the median
//                      msgs/s is reported, with the range in its notes
//   BENCH_MARKDOWN_OUT=<path>  also write the Markdown table there
//
// Exit status 1 if any baseline failed (the others are still reported).

import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { runNatsBaseline, runPostgresBaseline, runRabbitBaseline } from "./baselines.js";
import type { BaselineOptions } from "./baselines.js";
import { envInt } from "../support/env.js";
import { EMPTY_PERCENTILES, printTable } from "../support/stats.js";
import type { BenchResult } from "../support/stats.js";

const RESULT_PREFIX = "BENCH_RESULT_JSON ";

type Kind = "nats" | "postgres" | "rabbitmq";
const KINDS: Kind[] = ["nats", "postgres", "rabbitmq"];

function optionsFromEnv(kind: Kind): BaselineOptions {
  const url = { nats: process.env.BENCH_NATS_URL, postgres: process.env.BENCH_PG_URL, rabbitmq: process.env.BENCH_AMQP_URL }[kind];
  const queueType = process.env.BENCH_RABBIT_QUEUE_TYPE;
  if (queueType !== undefined && queueType !== "classic" && queueType !== "quorum") {
    throw new Error(`BENCH_RABBIT_QUEUE_TYPE must be classic or quorum, got ${JSON.stringify(queueType)}`);
  }
  return {
    messages: envInt("BENCH_MESSAGES", 20000),
    payloadBytes: envInt("BENCH_PAYLOAD_BYTES", 1024),
    senders: envInt("BENCH_SENDERS", 4),
    inFlightPerSender: envInt("BENCH_IN_FLIGHT", 32),
    receivers: envInt("BENCH_RECEIVERS", 1),
    consumerBatch: envInt("BENCH_CONSUMER_BATCH", 256),
    ...(process.env.BENCH_TIMEOUT_MS ? { timeoutMs: envInt("BENCH_TIMEOUT_MS", 60000) } : {}),
    ...(queueType ? { rabbitQueueType: queueType } : {}),
    ...(url ? { url } : {}),
  };
}

/** Unmeasured warm-up (JIT, connections, server caches), then the measured run. */
async function runWarm(kind: Kind): Promise<BenchResult> {
  const warmup = envInt("BENCH_WARMUP", 2000, 0);
  if (warmup > 0) await runOne(kind, warmup);
  return runOne(kind);
}

function runOne(kind: Kind, messages?: number): Promise<BenchResult> {
  const opts = { ...optionsFromEnv(kind), ...(messages !== undefined ? { messages } : {}) };
  switch (kind) {
    case "nats":
      return runNatsBaseline(opts);
    case "postgres":
      return runPostgresBaseline(opts);
    case "rabbitmq":
      return runRabbitBaseline(opts);
  }
}

function failed(kind: Kind, err: unknown): BenchResult {
  return {
    name: kind,
    messages: 0,
    seconds: NaN,
    msgsPerSec: NaN,
    sendAck: { ...EMPTY_PERCENTILES },
    endToEnd: { ...EMPTY_PERCENTILES },
    peakRssMiB: NaN,
    notes: `FAILED: ${err instanceof Error ? err.message : String(err)}`,
  };
}

/** Runs one baseline in a child process (this script with BENCH_CHILD=kind). */
function runIsolated(kind: Kind): Promise<BenchResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_CHILD: kind },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d: string) => (out += d));
    child.on("error", (err) => resolve(failed(kind, err)));
    child.on("close", (code, signal) => {
      const line = out.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
      if (line) resolve(JSON.parse(line.slice(RESULT_PREFIX.length)) as BenchResult);
      else resolve(failed(kind, new Error(`child exited with ${signal ?? code}: ${out.trim().slice(-500)}`)));
    });
  });
}

/** The run with the median msgs/s; notes the range when there are several. */
function median(runs: BenchResult[]): BenchResult {
  if (runs.length === 1) return runs[0]!;
  const sorted = [...runs].sort((a, b) => a.msgsPerSec - b.msgsPerSec);
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const range = `median of ${runs.length} runs (${sorted.map((r) => Math.round(r.msgsPerSec)).join(", ")} msgs/s)`;
  return { ...mid, notes: mid.notes ? `${mid.notes}; ${range}` : range };
}

async function main(): Promise<void> {
  const child = process.env.BENCH_CHILD as Kind | undefined;
  if (child) {
    try {
      const r = await runWarm(child);
      process.stdout.write(RESULT_PREFIX + JSON.stringify(r) + "\n");
    } catch (err) {
      process.stdout.write(RESULT_PREFIX + JSON.stringify(failed(child, err)) + "\n");
      process.exitCode = 1;
    }
    return;
  }

  const only = (process.env.BENCH_ONLY ?? KINDS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const k of only) if (!KINDS.includes(k as Kind)) throw new Error(`BENCH_ONLY: unknown baseline ${k} (known: ${KINDS.join(", ")})`);
  const isolate = process.env.BENCH_ISOLATE !== "0";
  const o = optionsFromEnv("nats");
  console.log(
    `baselines: ${o.messages} messages x ${o.payloadBytes} B, ${o.senders} senders x ${o.inFlightPerSender} in flight, ` +
      `${o.receivers} receiver(s)${isolate ? ", one process per baseline" : ""}`,
  );

  const repeat = envInt("BENCH_REPEAT", 3);
  const results: BenchResult[] = [];
  for (const kind of only as Kind[]) {
    const runs: BenchResult[] = [];
    for (let i = 0; i < repeat; i++) {
      console.log(`running ${kind}${repeat > 1 ? ` (${i + 1}/${repeat})` : ""} ...`);
      const r = isolate ? await runIsolated(kind) : await runWarm(kind).catch((err: unknown) => failed(kind, err));
      if (r.notes?.startsWith("FAILED")) {
        console.error(`${kind}: ${r.notes}`);
        runs.length = 0;
        runs.push(r);
        break;
      }
      console.log(`  ${Math.round(r.msgsPerSec)} msgs/s, ack p50 ${r.sendAck.p50.toFixed(2)} ms, e2e p50 ${r.endToEnd.p50.toFixed(2)} ms`);
      runs.push(r);
    }
    results.push(median(runs));
  }
  console.log("");
  const md = printTable(results);
  if (process.env.BENCH_MARKDOWN_OUT) writeFileSync(process.env.BENCH_MARKDOWN_OUT, md);
  if (results.some((r) => r.notes?.startsWith("FAILED"))) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
