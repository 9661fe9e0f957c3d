// One relay instance as its own process, for the relay benchmark only
// (bench/relay/relay-bench.ts starts two of them so their CPU and memory are
// measured apart from the load generator). It wires services/relay/service.ts
// directly: NATS bus + Postgres pool + gRPC server, no HTTP port, no tracing.
//
//   PARLEY_BENCH_RELAY_KEY="<pkcs8 pem>" node dist/bench/relay/relay-instance.js \
//     --database-url postgres://postgres@127.0.0.1:5432/db --nats-url 127.0.0.1:4222 \
//     [--port 0] [--relay-id bench] [--pool 10] [--count-sql]
//
// Prints `RELAY_READY {"port":N,"pid":P}` on stdout once it accepts calls.
// Stops gracefully on SIGTERM/SIGINT, and also when stdin closes (the parent
// died), so an aborted benchmark never leaves a relay behind. With
// --count-sql it patches pg.Client#query to count statements and prints
// `RELAY_SQL_STATS {...}` on stdout before exiting. (This module runs on
// import: relay-bench.ts repeats its three protocol constants.)

import { parseArgs } from "node:util";
import pg from "pg";

import { NatsBus } from "../../services/common/bus/nats.js";
import { systemClock } from "../../services/common/clock.js";
import { publicKeyFromPem } from "../../services/common/crypto.js";
import { createPool } from "../../services/common/db.js";
import { startGrpcServer } from "../../services/common/grpc.js";
import { logger } from "../../services/common/log.js";
import { RelayService } from "../../services/relay/service.js";

const READY_PREFIX = "RELAY_READY ";
const SQL_STATS_PREFIX = "RELAY_SQL_STATS ";
const KEY_ENV = "PARLEY_BENCH_RELAY_KEY";

type SqlStat = { calls: number; totalMs: number };

/** Counts pg statements by a short normalised prefix of their text. */
function instrumentPg(): () => Record<string, SqlStat> {
  const stats = new Map<string, SqlStat>();
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0];
    const text = typeof first === "string" ? first : typeof first === "object" && first !== null && "text" in first ? String((first as { text: unknown }).text) : "?";
    const key = text.replace(/\s+/g, " ").trim().slice(0, 70);
    const s = stats.get(key) ?? { calls: 0, totalMs: 0 };
    stats.set(key, s);
    s.calls++;
    const started = performance.now();
    const done = () => void (s.totalMs += performance.now() - started);
    const last = args.length - 1;
    if (typeof args[last] === "function") {
      // Callback form (what pg.Pool#query uses).
      const cb = args[last] as (...a: unknown[]) => unknown;
      args[last] = (...a: unknown[]) => {
        done();
        return cb(...a);
      };
      return original.apply(this, args);
    }
    const res = original.apply(this, args);
    if (res && typeof (res as Promise<unknown>).then === "function") {
      (res as Promise<unknown>).then(done, done);
    }
    return res;
  };
  return () => Object.fromEntries([...stats].sort((a, b) => b[1].calls - a[1].calls));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "database-url": { type: "string" },
      "nats-url": { type: "string", default: "127.0.0.1:4222" },
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      "relay-id": { type: "string", default: "bench" },
      pool: { type: "string", default: "10" },
      "count-sql": { type: "boolean", default: false },
    },
    strict: true,
  });
  const databaseUrl = values["database-url"];
  if (!databaseUrl) throw new Error("--database-url is required");
  const port = Number(values.port);
  const poolSize = Number(values.pool);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535, got ${values.port}`);
  if (!Number.isInteger(poolSize) || poolSize < 1) throw new Error(`--pool must be a positive integer, got ${values.pool}`);
  const privateKeyPem = process.env[KEY_ENV];
  if (!privateKeyPem) throw new Error(`${KEY_ENV} must hold the relay's Ed25519 private key (PKCS#8 PEM)`);
  const sqlStats = values["count-sql"] ? instrumentPg() : undefined;

  const log = logger("relay-bench");
  const pool = createPool(databaseUrl, poolSize);
  const bus = await NatsBus.connect({ servers: values["nats-url"]!.split(","), name: `parley-bench-relay-${process.pid}`, onError: (err) => log.warn({ err }, "bus") });
  const relay = await RelayService.create(
    {
      relayId: values["relay-id"]!,
      adminToken: "bench-admin-token",
      retentionMs: 30 * 86_400_000,
      sessionTtlMs: 60 * 60_000,
      challengeTtlMs: 60_000,
      // Generous quotas: a lagging receiver must not turn into RESOURCE_EXHAUSTED.
      limits: { maxMessageBytes: 1024 * 1024, maxQueueMessages: 10_000_000, maxQueueBytes: 64 * 1024 ** 3, maxBatchMessages: 10_000, maxRecipients: 1000 },
    },
    { pool, bus, clock: systemClock, log, key: { privateKeyPem, publicKey: publicKeyFromPem(privateKeyPem) } },
  );
  const grpc = await startGrpcServer({ host: values.host, port, services: relay.services, maxMessageBytes: 64 * 1024 * 1024 });

  let stopping: Promise<void> | undefined;
  const stop = (why: string) => {
    stopping ??= (async () => {
      const force = setTimeout(() => {
        console.error(`relay-instance ${process.pid}: shutdown (${why}) took too long; exiting`);
        process.exit(1);
      }, 10_000);
      force.unref();
      try {
        await relay.stop();
        await grpc.shutdown(2000);
        await bus.close();
        await pool.end();
      } catch (err) {
        console.error(`relay-instance ${process.pid}: shutdown error: ${(err as Error).message}`);
      }
      if (sqlStats) process.stdout.write(SQL_STATS_PREFIX + JSON.stringify(sqlStats()) + "\n");
      clearTimeout(force);
      // Let stdout flush, then exit normally (so --cpu-prof writes its profile).
      process.exitCode = 0;
      setImmediate(() => process.exit());
    })();
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  // The parent holds our stdin open; EOF means it is gone.
  process.stdin.on("end", () => stop("stdin closed"));
  process.stdin.on("error", () => stop("stdin error"));
  process.stdin.resume();

  process.stdout.write(READY_PREFIX + JSON.stringify({ port: grpc.port, pid: process.pid }) + "\n");
}

main().catch((err: unknown) => {
  console.error(`relay-instance: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
