/** Channel options: flags, environment variables and their defaults. */
import { bytes, duration, int, option, str, url, type ConfigOf } from "../common/config.js";
import { complianceStreamOption } from "../common/compliance.js";
import type { ChannelOptions } from "./service.js";

const base64Key = str({ pattern: /^[A-Za-z0-9+/]{43}=$/, expected: "a base64 raw 32-byte Ed25519 public key" });

/** Behaviour options, shared by `parley channel` and `parley up`. */
export const channelTuningSpec = {
  loadReportInterval: option("--load-report-interval", "PARLEY_CHANNEL_LOAD_REPORT_INTERVAL", duration({ min: 100 }), 10_000, "How often the instance reports its load to lookups"),
  presenceHeartbeat: option("--presence-heartbeat", "PARLEY_CHANNEL_PRESENCE_HEARTBEAT", duration({ min: 100 }), 10_000, "How often an instance re-announces its online users"),
  presenceTtl: option("--presence-ttl", "PARLEY_CHANNEL_PRESENCE_TTL", duration({ min: 300 }), 30_000, "An instance's users go offline this long after its last heartbeat"),
  presenceThrottleThreshold: option("--presence-throttle-threshold", "PARLEY_CHANNEL_PRESENCE_THROTTLE_THRESHOLD", int({ min: 1 }), 200, "Above this many online users, presence changes are batched"),
  presenceThrottle: option("--presence-throttle", "PARLEY_CHANNEL_PRESENCE_THROTTLE", duration({ min: 100 }), 5000, "Batch interval of presence changes in large rooms"),
  fileTokenSecret: option("--file-token-secret", "PARLEY_FILE_TOKEN_SECRET", str({ pattern: /^.{16,}$/, expected: "at least 16 characters" }), undefined, "Secret shared with the file service to sign file tokens", true),
  fileTokenTtl: option("--file-token-ttl", "PARLEY_FILE_TOKEN_TTL", duration({ min: 1000 }), 5 * 60_000, "Lifetime of upload/download tokens"),
  maxFileBytes: option("--max-file-bytes", "PARLEY_MAX_FILE_BYTES", bytes(), 100 * 1024 * 1024, "Largest attachment"),
};

export const channelConfigSpec = {
  instanceId: option("--instance-id", "PARLEY_CHANNEL_INSTANCE_ID", str({ pattern: /^[a-z0-9][a-z0-9.-]{0,62}$/, expected: "a DNS-style name (a-z 0-9 . -)" }), undefined, "Unique name of this channel instance (the pod name)"),
  databaseUrl: option("--database-url", "PARLEY_CHAT_DATABASE_URL", url(["postgres", "postgresql"]), undefined, "Postgres URL of the chat database", true),
  natsUrl: option("--nats-url", "PARLEY_NATS_URL", str(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated"),
  relayPublicKey: option("--relay-public-key", "PARLEY_RELAY_PUBLIC_KEY", base64Key, undefined, "The relay's public key (base64), to verify session tokens"),
  host: option("--host", "PARLEY_HOST", str(), "0.0.0.0", "Address to listen on"),
  advertiseAddress: option("--advertise-address", "PARLEY_CHANNEL_ADVERTISE_ADDRESS", str(), "", "host:port clients use to reach this instance (default host:grpc-port)"),
  grpcPort: option("--grpc-port", "PARLEY_GRPC_PORT", int({ min: 0, max: 65535 }), 50052, "gRPC port"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 9091, "HTTP port (/metrics, /healthz, /readyz)"),
  fileServiceUrls: option("--file-service-urls", "PARLEY_FILE_SERVICE_URLS", str(), "", "Base URL(s) of the file service, comma-separated, handed to clients"),
  shutdownGrace: option("--shutdown-grace", "PARLEY_SHUTDOWN_GRACE", duration(), 10_000, "Time in-flight calls get to finish on SIGTERM"),
  complianceStream: complianceStreamOption(),
  ...channelTuningSpec,
};

export function channelOptions(instanceId: string, relayPublicKey: Uint8Array, fileServiceUrls: string[], cfg: ConfigOf<typeof channelTuningSpec>): ChannelOptions {
  return {
    instanceId,
    relayPublicKey,
    fileTokenSecret: cfg.fileTokenSecret,
    fileTokenTtlMs: cfg.fileTokenTtl,
    maxFileBytes: cfg.maxFileBytes,
    fileServiceUrls,
    loadReportIntervalMs: cfg.loadReportInterval,
    presence: { heartbeatMs: cfg.presenceHeartbeat, ttlMs: cfg.presenceTtl, throttleThreshold: cfg.presenceThrottleThreshold, throttleMs: cfg.presenceThrottle },
    gapWaitMs: 50,
  };
}
