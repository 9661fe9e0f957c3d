/**
 * `parley up`: every service in one process, on an embedded Postgres server
 * and the in-process bus. Data (the Postgres cluster, the relay key, the
 * admin token) lives in one directory, so a restart keeps everything.
 *
 *   const up = await startUp({ dataDir: "parley-data", host: "127.0.0.1", grpcPort: 50051, httpPort: 9090, postgresPort: 0 });
 *   console.log(up.grpcAddress);
 *   await up.stop();
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { MemoryBus } from "../common/bus/memory.js";
import { systemClock } from "../common/clock.js";
import type { ConfigOf } from "../common/config.js";
import { createPool } from "../common/db.js";
import { startEmbeddedPostgres } from "../common/embedded-postgres.js";
import { startGrpcServer } from "../common/grpc.js";
import { startHttpServer } from "../common/http.js";
import { Lifecycle } from "../common/lifecycle.js";
import { logger } from "../common/log.js";
import { startDefaultMetrics } from "../common/metrics.js";
import { initTracing, shutdownTracing } from "../common/tracing.js";
import { relayOptions } from "../relay/config.js";
import { loadRelayKey } from "../relay/keys.js";
import { RelayService } from "../relay/service.js";
import { COMPLIANCE_STREAM } from "../common/compliance.js";
import { complianceOptions } from "../compliance/config.js";
import { ComplianceService } from "../compliance/service.js";
import { startChatServices } from "./chat.js";
import type { upConfigSpec } from "./config.js";

export interface UpHandle {
  grpcAddress: string;
  httpAddress: string;
  adminToken: string;
  relayId: string;
  relayPublicKey: Uint8Array;
  dataDir: string;
  lifecycle: Lifecycle;
  stop(): Promise<void>;
}

/** The admin token is made once and kept, so the CLI keeps working across restarts. */
function adminToken(dataDir: string): string {
  const file = join(dataDir, "admin-token");
  if (!existsSync(file)) writeFileSync(file, randomBytes(24).toString("base64url") + "\n", { mode: 0o600, flag: "wx" });
  return readFileSync(file, "utf8").trim();
}

export async function startUp(cfg: ConfigOf<typeof upConfigSpec>): Promise<UpHandle> {
  const log = logger("up");
  initTracing("up");
  startDefaultMetrics();
  const dataDir = resolve(cfg.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  const life = new Lifecycle(log);
  life.add("tracing", () => shutdownTracing());
  try {
    const pg = await startEmbeddedPostgres({ dataDir: join(dataDir, "postgres"), port: cfg.postgresPort, log: (line) => log.debug({ postgres: line }) });
    life.add("postgres", () => pg.stop());
    await pg.ensureDatabase("relay");
    const pool = createPool(pg.connectionString("relay"));
    life.add("relay pool", () => pool.end());
    const bus = new MemoryBus({ onError: (err) => log.warn({ err }, "bus") });
    life.add("bus", () => bus.close());

    const key = loadRelayKey(join(dataDir, "relay-key.pem"), true);
    const token = adminToken(dataDir);
    const relayId = "relay";
    const relay = await RelayService.create(relayOptions(relayId, token, cfg), { pool, bus, clock: systemClock, log: logger("relay"), key });
    relay.startJobs(cfg.purgeInterval);
    await pg.ensureDatabase("chat");
    const complianceArchiveDir = join(dataDir, "compliance", "archive");
    const chat = await startChatServices({ dataDir, connectionString: pg.connectionString("chat"), bus, relayPublicKey: key.publicKey, log, cfg, complianceArchiveDir });
    life.add("chat pool", () => chat.closePool());
    await pg.ensureDatabase("compliance");
    const compliancePool = createPool(pg.connectionString("compliance"));
    life.add("compliance pool", () => compliancePool.end());
    const compliance = await ComplianceService.create(
      complianceOptions({ ...cfg, outputDir: join(dataDir, "compliance", "out"), archiveDir: complianceArchiveDir, complianceStream: COMPLIANCE_STREAM, consumer: "parley-compliance", adminToken: token }),
      { pool: compliancePool, bus, clock: systemClock, log: logger("compliance") },
    );
    life.add("compliance", () => compliance.stop());

    const grpc = await startGrpcServer({ host: cfg.host, port: cfg.grpcPort, services: [...relay.services, ...chat.services, ...compliance.services] });
    life.add("grpc", () => grpc.shutdown(cfg.shutdownGrace));
    life.add("relay", () => relay.stop());
    const http = await startHttpServer({
      host: cfg.host,
      port: cfg.httpPort,
      log,
      routes: [...chat.routes, relay.adminPage()],
      readiness: [relay.readiness(), ...chat.readiness, compliance.readiness(), async () => (life.shuttingDown ? "shutting down" : undefined)],
    });
    life.add("http", () => http.close());
    await chat.start(`${cfg.host}:${grpc.port}`, `http://${cfg.host}:${http.port}`);
    await compliance.start();
    life.add("chat", () => chat.stop());
    return {
      grpcAddress: `${cfg.host}:${grpc.port}`,
      httpAddress: `${cfg.host}:${http.port}`,
      adminToken: token,
      relayId,
      relayPublicKey: key.publicKey,
      dataDir,
      lifecycle: life,
      stop: () => life.shutdown(),
    };
  } catch (err) {
    await life.shutdown();
    throw err;
  }
}
