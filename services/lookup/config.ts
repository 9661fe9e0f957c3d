/** Lookup options: flags, environment variables and their defaults. */
import { duration, int, option, str } from "../common/config.js";

export const lookupTuningSpec = {
  dropAfter: option("--drop-after", "PARLEY_LOOKUP_DROP_AFTER", duration({ min: 100 }), 30_000, "Drop a channel instance that has not reported its load for this long"),
};

export const lookupConfigSpec = {
  natsUrl: option("--nats-url", "PARLEY_NATS_URL", str(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated"),
  relayPublicKey: option("--relay-public-key", "PARLEY_RELAY_PUBLIC_KEY", str({ pattern: /^[A-Za-z0-9+/]{43}=$/, expected: "a base64 raw 32-byte Ed25519 public key" }), undefined, "The relay's public key (base64), to verify session tokens"),
  host: option("--host", "PARLEY_HOST", str(), "0.0.0.0", "Address to listen on"),
  grpcPort: option("--grpc-port", "PARLEY_GRPC_PORT", int({ min: 0, max: 65535 }), 50053, "gRPC port"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 9092, "HTTP port (/metrics, /healthz, /readyz)"),
  shutdownGrace: option("--shutdown-grace", "PARLEY_SHUTDOWN_GRACE", duration(), 5_000, "Time in-flight calls get to finish on SIGTERM"),
  ...lookupTuningSpec,
};
