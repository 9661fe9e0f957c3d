/** File service options: flags, environment variables and their defaults. */
import { bytes, duration, int, option, str, type ConfigOf } from "../common/config.js";
import { complianceStreamOption } from "../common/compliance.js";
import type { FilesOptions } from "./service.js";

export const filesTuningSpec = {
  storageDir: option("--storage-dir", "PARLEY_FILES_STORAGE_DIR", str(), "/var/lib/parley/files", "Directory shared by all file instances (RWX volume)"),
  fileRetention: option("--file-retention", "PARLEY_FILES_RETENTION", duration(), 0, "Delete files older than this (0 keeps them)"),
  fileRetentionInterval: option("--file-retention-interval", "PARLEY_FILES_RETENTION_INTERVAL", duration({ min: 1000 }), 3_600_000, "How often the retention job runs"),
};

export const filesConfigSpec = {
  instanceId: option("--instance-id", "PARLEY_FILES_INSTANCE_ID", str({ pattern: /^[a-z0-9][a-z0-9.-]{0,62}$/, expected: "a DNS-style name (a-z 0-9 . -)" }), "files", "Name of this file instance"),
  natsUrl: option("--nats-url", "PARLEY_NATS_URL", str(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated"),
  host: option("--host", "PARLEY_HOST", str(), "0.0.0.0", "Address to listen on"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 8080, "HTTP port (file API, /metrics, /healthz, /readyz)"),
  fileTokenSecret: option("--file-token-secret", "PARLEY_FILE_TOKEN_SECRET", str({ pattern: /^.{16,}$/, expected: "at least 16 characters" }), undefined, "Secret shared with the channel service to check file tokens", true),
  maxFileBytes: option("--max-file-bytes", "PARLEY_MAX_FILE_BYTES", bytes(), 100 * 1024 * 1024, "Largest attachment"),
  complianceStream: complianceStreamOption(),
  complianceArchiveDir: option("--compliance-archive-dir", "PARLEY_COMPLIANCE_ARCHIVE_DIR", str(), "", "Directory shared with the compliance service where every upload is also kept (empty: off)"),
  ...filesTuningSpec,
};

export function filesOptions(instanceId: string, fileTokenSecret: string, maxFileBytes: number, cfg: ConfigOf<typeof filesTuningSpec>): FilesOptions {
  return { instanceId, storageDir: cfg.storageDir, fileTokenSecret, maxFileBytes, retentionMs: cfg.fileRetention, retentionIntervalMs: cfg.fileRetentionInterval };
}
