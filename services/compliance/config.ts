/** Compliance service options: flags, environment variables and their defaults. */
import { bool, duration, int, option, str, url, type ConfigOf } from "../common/config.js";
import { complianceStreamOption } from "../common/compliance.js";
import type { ComplianceOptions } from "./service.js";

/** Behaviour options, shared by `parley compliance` and `parley up`. */
export const complianceTuningSpec = {
  conversationInterval: option("--conversation-interval", "PARLEY_COMPLIANCE_CONVERSATION_INTERVAL", duration({ min: 1000 }), 15 * 60_000, "How often staged records are exported, one file per conversation"),
  xslt: option("--xslt", "PARLEY_COMPLIANCE_XSLT", str(), "", "XSLT stylesheet applied to each XML export (empty: none)"),
  xsltExtension: option("--xslt-extension", "PARLEY_COMPLIANCE_XSLT_EXTENSION", str({ pattern: /^[a-z0-9]{1,8}$/, expected: "a file extension such as xml or csv" }), "xml", "Extension of the XSLT output files"),
  eml: option("--eml", "PARLEY_COMPLIANCE_EML", bool(), false, "Also write one RFC 5322 message (.eml) per conversation"),
  emlFrom: option("--eml-from", "PARLEY_COMPLIANCE_EML_FROM", str(), "Parley compliance <compliance@parley.invalid>", "From: of the .eml files"),
  emlTo: option("--eml-to", "PARLEY_COMPLIANCE_EML_TO", str(), "archive@parley.invalid", "To: of the .eml files"),
  pickupRetention: option("--pickup-retention", "PARLEY_COMPLIANCE_PICKUP_RETENTION", duration(), 7 * 86_400_000, "Batches not marked picked up are removed after this long (0 keeps them)"),
  stagingBatchSize: option("--staging-batch-size", "PARLEY_COMPLIANCE_STAGING_BATCH_SIZE", int({ min: 1, max: 10_000 }), 500, "Most records staged per commit"),
  stagingBatchDelay: option("--staging-batch-delay", "PARLEY_COMPLIANCE_STAGING_BATCH_DELAY", duration(), 20, "Longest a record waits for its staging commit"),
};

export const complianceConfigSpec = {
  databaseUrl: option("--database-url", "PARLEY_COMPLIANCE_DATABASE_URL", url(["postgres", "postgresql"]), undefined, "Postgres URL of the staging database (its own database)", true),
  natsUrl: option("--nats-url", "PARLEY_NATS_URL", str(), "nats://127.0.0.1:4222", "NATS server(s), comma-separated"),
  complianceStream: complianceStreamOption(),
  consumer: option("--consumer", "PARLEY_COMPLIANCE_CONSUMER", str({ pattern: /^[A-Za-z0-9_-]{1,64}$/, expected: "a JetStream consumer name (A-Z a-z 0-9 _ -)" }), "parley-compliance", "Durable consumer name on the compliance stream"),
  outputDir: option("--output-dir", "PARLEY_COMPLIANCE_OUTPUT_DIR", str(), "/var/lib/parley/compliance/out", "Where batches are written for pickup"),
  archiveDir: option("--archive-dir", "PARLEY_COMPLIANCE_ARCHIVE_DIR", str(), "", "Where the file service keeps uploads for us (its --compliance-archive-dir; empty: attachments not archived)"),
  host: option("--host", "PARLEY_HOST", str(), "0.0.0.0", "Address to listen on"),
  grpcPort: option("--grpc-port", "PARLEY_GRPC_PORT", int({ min: 0, max: 65535 }), 50054, "gRPC port (ComplianceAdmin)"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 9094, "HTTP port (/metrics, /healthz, /readyz)"),
  adminToken: option("--admin-token", "PARLEY_ADMIN_TOKEN", str(), "", "Bearer token for the admin API (empty disables it)", true),
  shutdownGrace: option("--shutdown-grace", "PARLEY_SHUTDOWN_GRACE", duration(), 30_000, "Time a running export gets to finish on SIGTERM"),
  ...complianceTuningSpec,
};

export function complianceOptions(cfg: ConfigOf<typeof complianceTuningSpec> & { outputDir: string; archiveDir: string; complianceStream: string; consumer: string; adminToken: string }): ComplianceOptions {
  return {
    stream: cfg.complianceStream,
    consumer: cfg.consumer,
    outputDir: cfg.outputDir,
    archiveDir: cfg.archiveDir,
    adminToken: cfg.adminToken,
    conversationIntervalMs: cfg.conversationInterval,
    xslt: cfg.xslt ? { stylesheet: cfg.xslt, extension: cfg.xsltExtension } : undefined,
    eml: cfg.eml ? { from: cfg.emlFrom, to: cfg.emlTo, domain: "parley.invalid" } : undefined,
    pickupRetentionMs: cfg.pickupRetention,
    stagingBatchSize: cfg.stagingBatchSize,
    stagingBatchDelayMs: cfg.stagingBatchDelay,
  };
}
