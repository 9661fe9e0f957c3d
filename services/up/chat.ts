/**
 * The chat pool inside `parley up`: one channel instance, one lookup and one
 * file instance sharing the process's gRPC server (channel, lookup) and HTTP
 * port (files under /v1/files/), on the embedded `chat` database and the
 * in-process bus. The file token secret is made once and kept in the data
 * directory.
 *
 *   const chat = await startChatServices({ dataDir, connectionString, bus, relayPublicKey, log, cfg });
 *   // grpc services: chat.services; http routes: chat.routes; then chat.start(grpcAddress, httpUrl)
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Bus } from "../common/bus/types.js";
import { systemClock } from "../common/clock.js";
import type { ConfigOf } from "../common/config.js";
import { createPool } from "../common/db.js";
import type { BoundService } from "../common/grpc.js";
import type { ReadinessCheck, Route } from "../common/http.js";
import { logger, type Logger } from "../common/log.js";
import { channelOptions, channelTuningSpec } from "../channel/config.js";
import { ChannelService } from "../channel/service.js";
import { filesOptions, filesTuningSpec } from "../files/config.js";
import { FilesService } from "../files/service.js";
import { lookupTuningSpec } from "../lookup/config.js";
import { LookupService } from "../lookup/service.js";

const { fileTokenSecret: _secret, ...chatTuning } = channelTuningSpec;
/** Chat options of `parley up` (the file token secret is generated instead). */
export const upChatSpec = { ...chatTuning, ...lookupTuningSpec, ...filesTuningSpec };

export interface ChatServices {
  services: BoundService[];
  routes: Route[];
  readiness: ReadinessCheck[];
  start(grpcAddress: string, httpUrl: string): Promise<void>;
  /** Ends sessions and jobs; register before the gRPC server's closer… */
  stop(): Promise<void>;
  /** …and this one before it, so in-flight calls still have the database. */
  closePool(): Promise<void>;
}

function fileTokenSecret(dataDir: string): string {
  const file = join(dataDir, "file-token-secret");
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString("base64url") + "\n", { mode: 0o600, flag: "wx" });
  return readFileSync(file, "utf8").trim();
}

export async function startChatServices(opts: {
  dataDir: string;
  connectionString: string;
  bus: Bus;
  relayPublicKey: Uint8Array;
  log: Logger;
  cfg: ConfigOf<typeof upChatSpec>;
  /** Where the file service keeps uploads for the compliance service. */
  complianceArchiveDir: string;
}): Promise<ChatServices> {
  const { cfg } = opts;
  const secret = fileTokenSecret(opts.dataDir);
  const pool = createPool(opts.connectionString);
  // Filled in by start(), once the HTTP port is known; the channel hands it to clients.
  const fileUrls: string[] = [];
  const channel = await ChannelService.create(
    channelOptions("up", opts.relayPublicKey, fileUrls, { ...cfg, fileTokenSecret: secret }),
    { pool, bus: opts.bus, clock: systemClock, log: logger("channel") },
  );
  const lookup = LookupService.create({ dropAfterMs: cfg.dropAfter, relayPublicKey: opts.relayPublicKey }, { bus: opts.bus, clock: systemClock, log: logger("lookup") });
  const storageDir = cfg.storageDir === filesTuningSpec.storageDir.default ? join(opts.dataDir, "files") : cfg.storageDir;
  const files = await FilesService.create({ ...filesOptions("up", secret, cfg.maxFileBytes, { ...cfg, storageDir }), complianceArchiveDir: opts.complianceArchiveDir }, { bus: opts.bus, clock: systemClock, log: logger("files") });
  return {
    services: [...channel.services, ...lookup.services],
    routes: [files.route],
    readiness: [channel.readiness(), files.readiness()],
    start: async (grpcAddress, httpUrl) => {
      fileUrls.push(httpUrl);
      channel.start(grpcAddress);
      await files.start();
    },
    stop: async () => {
      await channel.stop();
      lookup.stop();
      await files.stop();
    },
    closePool: () => pool.end(),
  };
}
