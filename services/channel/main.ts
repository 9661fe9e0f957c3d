/**
 * `parley channel`: one channel instance as its own process (a pod), on the
 * chat database and NATS JetStream.
 *
 *   parley channel --instance-id channel-0 --database-url postgres://…/chat \
 *     --relay-public-key BASE64 --file-token-secret … --nats-url nats://nats:4222
 */
import { hostname } from "node:os";
import { NatsBus } from "../common/bus/nats.js";
import { systemClock } from "../common/clock.js";
import { loadConfig } from "../common/config.js";
import { createPool } from "../common/db.js";
import { startGrpcServer } from "../common/grpc.js";
import { startHttpServer } from "../common/http.js";
import type { Lifecycle } from "../common/lifecycle.js";
import { serviceProcess } from "../common/process.js";
import { channelConfigSpec, channelOptions } from "./config.js";
import { ChannelService } from "./service.js";

export async function runChannel(argv: string[]): Promise<Lifecycle> {
  const cfg = loadConfig(channelConfigSpec, argv);
  return serviceProcess("channel", async (life, log) => {
    const pool = createPool(cfg.databaseUrl, 20);
    life.add("postgres pool", () => pool.end());
    const bus = await NatsBus.connect({ servers: cfg.natsUrl.split(","), name: `parley-channel-${cfg.instanceId}`, onError: (err) => log.warn({ err }, "bus") });
    life.add("nats", () => bus.close());
    const urls = cfg.fileServiceUrls.split(",").map((s) => s.trim()).filter(Boolean);
    const channel = await ChannelService.create({ ...channelOptions(cfg.instanceId, Buffer.from(cfg.relayPublicKey, "base64"), urls, cfg), complianceStream: cfg.complianceStream }, { pool, bus, clock: systemClock, log });
    const grpc = await startGrpcServer({ host: cfg.host, port: cfg.grpcPort, services: channel.services });
    // Closers run in reverse: the channel reports itself down and ends its
    // sessions, then the gRPC server finishes in-flight calls, then bus and pool close.
    life.add("grpc", () => grpc.shutdown(cfg.shutdownGrace));
    life.add("channel", () => channel.stop());
    const host = cfg.host === "0.0.0.0" ? hostname() : cfg.host;
    channel.start(cfg.advertiseAddress || `${host}:${grpc.port}`);
    const http = await startHttpServer({
      host: cfg.host,
      port: cfg.httpPort,
      log,
      readiness: [channel.readiness(), async () => (life.shuttingDown ? "shutting down" : undefined)],
    });
    life.add("http", () => http.close());
    log.info({ instanceId: cfg.instanceId, grpcPort: grpc.port, httpPort: http.port }, "channel ready");
  });
}
