/**
 * `parley compliance`: the compliance service as its own process. One per
 * compliance stream (several would share the durable consumer and take turns
 * exporting; that is safe, but gains nothing).
 *
 *   parley compliance --database-url postgres://…/compliance --output-dir /archive/out \
 *     --archive-dir /data/files/compliance --conversation-interval 15m --xslt /etc/parley/actiance.xsl
 */
import { NatsBus } from "../common/bus/nats.js";
import { systemClock } from "../common/clock.js";
import { loadConfig } from "../common/config.js";
import { createPool } from "../common/db.js";
import { startGrpcServer } from "../common/grpc.js";
import { startHttpServer } from "../common/http.js";
import type { Lifecycle } from "../common/lifecycle.js";
import { serviceProcess } from "../common/process.js";
import { complianceConfigSpec, complianceOptions } from "./config.js";
import { ComplianceService } from "./service.js";

export async function runCompliance(argv: string[]): Promise<Lifecycle> {
  const cfg = loadConfig(complianceConfigSpec, argv);
  return serviceProcess("compliance", async (life, log) => {
    const pool = createPool(cfg.databaseUrl);
    life.add("postgres pool", () => pool.end());
    const bus = await NatsBus.connect({ servers: cfg.natsUrl.split(","), name: "parley-compliance", onError: (err) => log.warn({ err }, "bus") });
    life.add("nats", () => bus.close());
    const compliance = await ComplianceService.create(complianceOptions(cfg), { pool, bus, clock: systemClock, log });
    // Closers run in reverse: HTTP and gRPC stop, then collection stages what
    // it took and a running export finishes, then bus and pool close.
    life.add("compliance", () => compliance.stop());
    await compliance.start();
    const grpc = await startGrpcServer({ host: cfg.host, port: cfg.grpcPort, services: compliance.services });
    life.add("grpc", () => grpc.shutdown(cfg.shutdownGrace));
    const http = await startHttpServer({ host: cfg.host, port: cfg.httpPort, log, readiness: [compliance.readiness(), async () => (life.shuttingDown ? "shutting down" : undefined)] });
    life.add("http", () => http.close());
    log.info({ grpcPort: grpc.port, httpPort: http.port, outputDir: compliance.output.dir }, "compliance ready");
  });
}
