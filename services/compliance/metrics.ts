/** The compliance service's Prometheus metrics (names used by the Helm chart's alerts and dashboard). */
import { Counter, Gauge, Histogram, metric } from "../common/metrics.js";

export function complianceMetrics() {
  return {
    staged: metric("parley_compliance_staged_records", () => new Gauge({ name: "parley_compliance_staged_records", help: "Records in staging, not yet exported" })),
    oldestAge: metric("parley_compliance_oldest_staged_age_seconds", () => new Gauge({ name: "parley_compliance_oldest_staged_age_seconds", help: "Age of the oldest staged record (0 when none)" })),
    lastExport: metric("parley_compliance_last_export_timestamp_seconds", () => new Gauge({ name: "parley_compliance_last_export_timestamp_seconds", help: "When the last export finished (Unix seconds, 0: none yet)" })),
    exportLag: metric("parley_compliance_export_lag_seconds", () => new Gauge({ name: "parley_compliance_export_lag_seconds", help: "How far exports are behind: age of the oldest staged record beyond one conversation interval (0 when on time)" })),
    collected: metric("parley_compliance_records_collected_total", () => new Counter({ name: "parley_compliance_records_collected_total", help: "Records taken from the compliance stream, by result", labelNames: ["result"] })),
    files: metric("parley_compliance_files_written_total", () => new Counter({ name: "parley_compliance_files_written_total", help: "Files written to the output directory, by kind", labelNames: ["kind"] })),
    bytes: metric("parley_compliance_bytes_written_total", () => new Counter({ name: "parley_compliance_bytes_written_total", help: "Bytes written to the output directory" })),
    errors: metric("parley_compliance_errors_total", () => new Counter({ name: "parley_compliance_errors_total", help: "Errors, by stage (collect, export, xslt, eml, attachment, cleanup)", labelNames: ["stage"] })),
    exportSeconds: metric("parley_compliance_export_seconds", () => new Histogram({ name: "parley_compliance_export_seconds", help: "Time to write one batch", buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] })),
    batchesAwaitingPickup: metric("parley_compliance_batches_awaiting_pickup", () => new Gauge({ name: "parley_compliance_batches_awaiting_pickup", help: "Batches in the output directory not yet picked up" })),
  };
}

export type ComplianceMetrics = ReturnType<typeof complianceMetrics>;
