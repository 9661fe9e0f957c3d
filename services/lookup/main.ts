/**
 * `parley lookup`: one lookup replica as its own process. Run several; they
 * agree from the same load reports.
 *
 *   parley lookup --relay-public-key BASE64 --nats-url nats://nats:4222 --drop-after 30s
 */
import { NatsBus } from "../common/bus/nats.js";
import { systemClock } from "../common/clock.js";
import { loadConfig } from "../common/config.js";
import { startGrpcServer } from "../common/grpc.js";
import { startHttpServer } from "../common/http.js";
import type { Lifecycle } from "../common/lifecycle.js";
import { serviceProcess } from "../common/process.js";
import { lookupConfigSpec } from "./config.js";
import { LookupService } from "./service.js";

export async function runLookup(argv: string[]): Promise<Lifecycle> {
  const cfg = loadConfig(lookupConfigSpec, argv);
  return serviceProcess("lookup", async (life, log) => {
    const bus = await NatsBus.connect({ servers: cfg.natsUrl.split(","), name: "parley-lookup", onError: (err) => log.warn({ err }, "bus") });
    life.add("nats", () => bus.close());
    const lookup = LookupService.create({ dropAfterMs: cfg.dropAfter, relayPublicKey: Buffer.from(cfg.relayPublicKey, "base64") }, { bus, clock: systemClock, log });
    life.add("lookup", () => lookup.stop());
    const grpc = await startGrpcServer({ host: cfg.host, port: cfg.grpcPort, services: lookup.services });
    life.add("grpc", () => grpc.shutdown(cfg.shutdownGrace));
    const http = await startHttpServer({ host: cfg.host, port: cfg.httpPort, log, readiness: [lookup.readiness(), async () => (life.shuttingDown ? "shutting down" : undefined)] });
    life.add("http", () => http.close());
    log.info({ grpcPort: grpc.port, httpPort: http.port }, "lookup ready");
  });
}
