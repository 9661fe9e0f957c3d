/** Options of `parley up`. */
import { int, option, str } from "../common/config.js";
import { complianceTuningSpec } from "../compliance/config.js";
import { relayTuningSpec } from "../relay/config.js";
import { upChatSpec } from "./chat.js";

export const upConfigSpec = {
  dataDir: option("--data-dir", "PARLEY_DATA_DIR", str(), "parley-data", "Directory for the embedded Postgres cluster, keys and tokens"),
  host: option("--host", "PARLEY_HOST", str(), "127.0.0.1", "Address to listen on"),
  grpcPort: option("--grpc-port", "PARLEY_GRPC_PORT", int({ min: 0, max: 65535 }), 50051, "gRPC port of every service"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 9090, "HTTP port (/metrics, /healthz, /readyz)"),
  postgresPort: option("--postgres-port", "PARLEY_POSTGRES_PORT", int({ min: 0, max: 65535 }), 0, "Port of the embedded Postgres (0 picks a free one)"),
  ...relayTuningSpec,
  ...upChatSpec,
  ...complianceTuningSpec,
};
