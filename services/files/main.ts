/**
 * `parley files`: one file instance as its own process. Run several on one
 * shared storage directory.
 *
 *   parley files --storage-dir /data/files --file-token-secret … --nats-url nats://nats:4222
 */
import { NatsBus } from "../common/bus/nats.js";
import { systemClock } from "../common/clock.js";
import { loadConfig } from "../common/config.js";
import { startHttpServer } from "../common/http.js";
import type { Lifecycle } from "../common/lifecycle.js";
import { serviceProcess } from "../common/process.js";
import { filesConfigSpec, filesOptions } from "./config.js";
import { FilesService } from "./service.js";

export async function runFiles(argv: string[]): Promise<Lifecycle> {
  const cfg = loadConfig(filesConfigSpec, argv);
  return serviceProcess("files", async (life, log) => {
    const bus = await NatsBus.connect({ servers: cfg.natsUrl.split(","), name: `parley-files-${cfg.instanceId}`, onError: (err) => log.warn({ err }, "bus") });
    life.add("nats", () => bus.close());
    const files = await FilesService.create({ ...filesOptions(cfg.instanceId, cfg.fileTokenSecret, cfg.maxFileBytes, cfg), complianceStream: cfg.complianceStream, complianceArchiveDir: cfg.complianceArchiveDir || undefined }, { bus, clock: systemClock, log });
    await files.start();
    life.add("files", () => files.stop());
    const http = await startHttpServer({ host: cfg.host, port: cfg.httpPort, log, routes: [files.route], readiness: [files.readiness(), async () => (life.shuttingDown ? "shutting down" : undefined)] });
    life.add("http", () => http.close());
    log.info({ instanceId: cfg.instanceId, httpPort: http.port, storageDir: cfg.storageDir }, "files ready");
  });
}
