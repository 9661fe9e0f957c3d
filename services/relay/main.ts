/**
 * `parley relay`: one relay instance as its own process (a pod), on a
 * Postgres server and NATS JetStream.
 */
import { NatsBus } from "../common/bus/nats.js";
import { systemClock } from "../common/clock.js";
import { loadConfig } from "../common/config.js";
import { createPool } from "../common/db.js";
import { startGrpcServer } from "../common/grpc.js";
import { startHttpServer } from "../common/http.js";
import type { Lifecycle } from "../common/lifecycle.js";
import { serviceProcess } from "../common/process.js";
import { relayConfigSpec, relayOptions } from "./config.js";
import { loadRelayKey } from "./keys.js";
import { RelayService } from "./service.js";
import { ChangeStream, defaultStreamName } from "./replication/change-stream.js";

export async function runRelay(argv: string[]): Promise<Lifecycle> {
  const cfg = loadConfig(relayConfigSpec, argv);
  return serviceProcess("relay", async (life, log) => {
    const key = loadRelayKey(cfg.keyFile, cfg.createKey);
    const pool = createPool(cfg.databaseUrl);
    life.add("postgres pool", () => pool.end());
    const bus = await NatsBus.connect({ servers: cfg.natsUrl.split(","), name: `parley-relay-${cfg.relayId}`, onError: (err) => log.warn({ err }, "bus") });
    life.add("nats", () => bus.close());
    const replicated = cfg.role !== "standalone";
    const changes = replicated
      ? await ChangeStream.connect({ servers: cfg.natsUrl.split(","), relayId: cfg.relayId, name: cfg.primaryStream || defaultStreamName(cfg.relayId), maxAgeMs: cfg.changeRetention })
      : undefined;
    if (changes) life.add("change stream", () => changes.close());
    const options = { ...relayOptions(cfg.relayId, cfg.adminToken, cfg), ...(replicated ? { replication: { role: cfg.role as "primary" | "secondary", replicaName: cfg.replicaName } } : {}) };
    const relay = await RelayService.create(options, { pool, bus, clock: systemClock, log, key, changes });
    relay.startJobs(cfg.purgeInterval);
    const grpc = await startGrpcServer({ host: cfg.host, port: cfg.grpcPort, services: relay.services, maxMessageBytes: cfg.maxMessageBytes + 64 * 1024 });
    // Closers run in reverse: first the relay ends its streams, then the gRPC
    // server lets in-flight calls finish, then bus and pool close.
    life.add("grpc", () => grpc.shutdown(cfg.shutdownGrace));
    life.add("relay", () => relay.stop());
    const http = await startHttpServer({
      host: cfg.host,
      port: cfg.httpPort,
      log,
      readiness: [relay.readiness(), async () => (life.shuttingDown ? "shutting down" : undefined)],
      routes: [relay.adminPage()],
    });
    life.add("http", () => http.close());
    log.info({ relayId: cfg.relayId, role: relay.replica?.role ?? "standalone", grpcPort: grpc.port, httpPort: http.port }, "relay ready");
  });
}
