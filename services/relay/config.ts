/** Relay options: flags, environment variables and their defaults. */
import { hostname } from "node:os";
import { bool, bytes, duration, int, oneOf, option, str, url, type ConfigOf } from "../common/config.js";
import type { RelayOptions } from "./service.js";

/** Behaviour options, shared by `parley relay` and `parley up`. */
export const relayTuningSpec = {
  retention: option("--retention", "PARLEY_RELAY_RETENTION", duration({ min: 60_000 }), 30 * 86_400_000, "Purge queued messages older than this"),
  purgeInterval: option("--purge-interval", "PARLEY_RELAY_PURGE_INTERVAL", duration({ min: 1000 }), 60_000, "How often the retention purge runs"),
  maxMessageBytes: option("--max-message-bytes", "PARLEY_RELAY_MAX_MESSAGE_BYTES", bytes(), 1024 * 1024, "Largest payload accepted"),
  maxQueueMessages: option("--max-queue-messages", "PARLEY_RELAY_MAX_QUEUE_MESSAGES", int({ min: 1 }), 100_000, "Quota: messages per queue"),
  maxQueueBytes: option("--max-queue-bytes", "PARLEY_RELAY_MAX_QUEUE_BYTES", bytes(), 1024 ** 3, "Quota: payload bytes per queue"),
  maxBatchMessages: option("--max-batch-messages", "PARLEY_RELAY_MAX_BATCH_MESSAGES", int({ min: 1, max: 10_000 }), 1000, "Most messages in one SendBatch, and unsettled on one SendStream"),
  maxRecipients: option("--max-recipients", "PARLEY_RELAY_MAX_RECIPIENTS", int({ min: 1, max: 10_000 }), 1000, "Most recipients of one message"),
  sessionTtl: option("--session-ttl", "PARLEY_RELAY_SESSION_TTL", duration({ min: 1000 }), 15 * 60_000, "Lifetime of a session token"),
  challengeTtl: option("--challenge-ttl", "PARLEY_RELAY_CHALLENGE_TTL", duration({ min: 1000 }), 60_000, "Time to answer an authentication challenge"),
  shutdownGrace: option("--shutdown-grace", "PARLEY_SHUTDOWN_GRACE", duration(), 10_000, "Time in-flight calls get to finish on SIGTERM"),
};

export const relayConfigSpec = {
  relayId: option("--relay-id", "PARLEY_RELAY_ID", str({ pattern: /^[a-z0-9][a-z0-9.-]{0,62}$/, expected: "a DNS-style name (a-z 0-9 . -)" }), "relay", "Name clients see and tokens carry"),
  databaseUrl: option("--database-url", "PARLEY_RELAY_DATABASE_URL", url(["postgres", "postgresql"]), undefined, "Postgres URL of the relay database", true),
  natsUrl: option("--nats-url", "PARLEY_NATS_URL", str(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated"),
  host: option("--host", "PARLEY_HOST", str(), "0.0.0.0", "Address to listen on"),
  grpcPort: option("--grpc-port", "PARLEY_GRPC_PORT", int({ min: 0, max: 65535 }), 50051, "gRPC port"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 9090, "HTTP port (/metrics, /healthz, /readyz)"),
  keyFile: option("--relay-key-file", "PARLEY_RELAY_KEY_FILE", str(), "/var/run/parley/relay-key/private.pem", "PEM file with the relay's Ed25519 private key"),
  createKey: option("--create-key", "PARLEY_RELAY_CREATE_KEY", bool(), false, "Generate the key file if it does not exist"),
  adminToken: option("--admin-token", "PARLEY_ADMIN_TOKEN", str(), "", "Bearer token for the admin API (empty disables it)", true),
  ...relayTuningSpec,
  role: option("--role", "PARLEY_RELAY_ROLE", oneOf("standalone", "primary", "secondary"), "standalone",
    "standalone (no change stream), primary (claims the relay if no replica holds it) or secondary (warm standby; see `parley relay promote`)"),
  replicaName: option("--replica-name", "PARLEY_RELAY_REPLICA_NAME", str({ pattern: /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, expected: "a name (A-Z a-z 0-9 . _ -)" }), hostname(),
    "This replica's name in the change stream (unique among the relay's replicas)"),
  primaryStream: option("--primary-stream", "PARLEY_RELAY_PRIMARY_STREAM", str({ pattern: /^[A-Za-z0-9_-]{0,64}$/, expected: "a JetStream stream name" }), "",
    "JetStream stream of the relay's changes (default PARLEY_RELAY_<relay id>)"),
  changeRetention: option("--change-retention", "PARLEY_RELAY_CHANGE_RETENTION", duration({ min: 60_000 }), 7 * 86_400_000,
    "Keep changes in the stream this long (a replica further behind rebuilds from a peer)"),
};

export function relayOptions(relayId: string, adminToken: string, cfg: ConfigOf<typeof relayTuningSpec>): RelayOptions {
  return {
    relayId,
    adminToken,
    retentionMs: cfg.retention,
    sessionTtlMs: cfg.sessionTtl,
    challengeTtlMs: cfg.challengeTtl,
    limits: {
      maxMessageBytes: cfg.maxMessageBytes,
      maxQueueMessages: cfg.maxQueueMessages,
      maxQueueBytes: cfg.maxQueueBytes,
      maxBatchMessages: cfg.maxBatchMessages,
      maxRecipients: cfg.maxRecipients,
    },
  };
}
