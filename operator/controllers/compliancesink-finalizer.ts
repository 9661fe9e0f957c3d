/**
 * The ComplianceSink finalizer `parley.dev/final-export`: before a sink goes,
 * its service exports everything staged (ComplianceAdmin.exportNow), so the
 * last interval's records reach the output volume, and only then is the
 * finalizer removed. While the service is unreachable or the export fails the
 * controller retries with the queue's backoff, saying so in the FinalExport
 * condition; after the bounded wait (parley.dev/final-export-timeout, 10m) it
 * gives up with a Warning Event — the records stay in the staging database,
 * where a sink on the same database exports them. parley.dev/skip-final-export:
 * "true" lets a sink whose service is gone for good go at once.
 *
 * Deletion must be in the background (kubectl's default): a foreground
 * deletion removes the Deployment first, and the final export has no one to run it.
 */
import type { Logger } from "../../services/common/log.js";
import { FINAL_EXPORT_FINALIZER, FINAL_EXPORT_TIMEOUT_ANNOTATION, SKIP_FINAL_EXPORT_ANNOTATION, type ComplianceSink, type ComplianceSinkStatus } from "../api/types.js";
import { objectPath, resourcePath, type KubeClient } from "../kube/client.js";
import { complianceNames } from "../specs/compliance.js";
import { withSinkAdmin } from "./compliance-admin.js";
import { mergeConditions, type ConditionInput } from "./conditions.js";
import { EventRecorder } from "../kube/events.js";

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
/** One export attempt may take this long (a big last batch). */
const EXPORT_ATTEMPT_MS = 5 * 60_000;
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000 };

export function finalExportTimeoutMs(cr: ComplianceSink): number {
  const m = /^(\d+)(s|m|h)$/.exec(cr.metadata.annotations?.[FINAL_EXPORT_TIMEOUT_ANNOTATION] ?? "");
  return m ? Number(m[1]) * UNITS[m[2]!]! : DEFAULT_TIMEOUT_MS;
}

export interface FinalizerDeps {
  kube: KubeClient;
  log: Logger;
  now: () => Date;
  /** Look again at this sink after ms (the deadline, when the queue's backoff would overshoot it). */
  recheck: (afterMs: number) => void;
}

export const hasFinalizer = (cr: ComplianceSink) => (cr.metadata as { finalizers?: string[] }).finalizers?.includes(FINAL_EXPORT_FINALIZER) ?? false;

/** Added before the sink creates anything, so no sink with a Deployment lacks it. */
export async function addFinalizer(kube: KubeClient, cr: ComplianceSink): Promise<void> {
  const current = (cr.metadata as { finalizers?: string[] }).finalizers;
  const ops = current ? [{ op: "add", path: "/metadata/finalizers/-", value: FINAL_EXPORT_FINALIZER }] : [{ op: "add", path: "/metadata/finalizers", value: [FINAL_EXPORT_FINALIZER] }];
  await kube.request("PATCH", objectPath(cr), [{ op: "test", path: "/metadata/resourceVersion", value: cr.metadata.resourceVersion }, ...ops], "application/json-patch+json");
}

async function removeFinalizer(kube: KubeClient, cr: ComplianceSink): Promise<void> {
  const list = (cr.metadata as { finalizers?: string[] }).finalizers ?? [];
  const i = list.indexOf(FINAL_EXPORT_FINALIZER);
  if (i < 0) return;
  // The test makes a concurrent change to the list fail the patch (retried) instead of removing someone else's entry.
  const path = `/metadata/finalizers/${i}`;
  await kube.request("PATCH", objectPath(cr), [{ op: "test", path, value: FINAL_EXPORT_FINALIZER }, { op: "remove", path }], "application/json-patch+json");
}

/** Runs the final export (or gives up, or skips) and removes the finalizer; throws to be retried. */
export async function finalize(cr: ComplianceSink, deps: FinalizerDeps): Promise<void> {
  if (!hasFinalizer(cr)) return;
  const { kube, log } = deps;
  const sink = `${cr.metadata.namespace}/${cr.metadata.name}`;
  const event = (type: "Normal" | "Warning", reason: string, note: string) => new EventRecorder(kube, log).record(cr, { type, reason, action: "FinalExport", note });

  if (cr.metadata.annotations?.[SKIP_FINAL_EXPORT_ANNOTATION] === "true") {
    await event("Warning", "FinalExportSkipped", `annotation ${SKIP_FINAL_EXPORT_ANNOTATION}=true: deleted without a final export; staged records stay in the staging database`);
    return removeFinalizer(kube, cr);
  }
  if (!(await kube.get(resourcePath("apps/v1", "Deployment", cr.metadata.namespace, complianceNames(cr).deployment)))) {
    // Refused before it ran (a missing pool, say), or its Deployment was removed: no service to flush.
    await event("Normal", "FinalExportNotNeeded", `Deployment ${complianceNames(cr).deployment} does not exist: no compliance service ran for this sink to flush`);
    return removeFinalizer(kube, cr);
  }
  const deadline = Date.parse(cr.metadata.deletionTimestamp!) + finalExportTimeoutMs(cr);
  try {
    const r = await withSinkAdmin(kube, cr, (admin) => admin.exportNow(EXPORT_ATTEMPT_MS));
    const note = r.batchId ? `final export wrote batch ${r.batchId}: ${r.conversations} conversations, ${r.records} records, ${r.files.length} files` : "final export: nothing was staged";
    log.info({ complianceSink: sink, batchId: r.batchId, records: r.records }, note);
    await event("Normal", "FinalExport", note);
    await removeFinalizer(kube, cr);
  } catch (err) {
    const reason = (err as Error).message;
    const now = deps.now().getTime();
    if (now >= deadline) {
      const note = `final export abandoned after ${Math.round(finalExportTimeoutMs(cr) / 1000)}s (${reason}); staged records stay in the staging database, where a sink on the same database exports them`;
      log.warn({ complianceSink: sink }, note);
      await event("Warning", "FinalExportAbandoned", note);
      return removeFinalizer(kube, cr);
    }
    const left = Math.ceil((deadline - now) / 1000);
    await writeFinalExportCondition(kube, cr, deps.now(), { type: "FinalExport", status: "False", reason: "Retrying", message: `final export failed: ${reason}; retrying for up to ${left}s more` }).catch(() => {});
    if ((cr.status?.conditions ?? []).every((c) => c.type !== "FinalExport")) await event("Warning", "FinalExportRetrying", `final export failed: ${reason}; retrying for up to ${left}s`);
    deps.recheck(deadline - now + 100);
    throw new Error(`final export of ComplianceSink ${sink}: ${reason}`, { cause: err });
  }
}

async function writeFinalExportCondition(kube: KubeClient, cr: ComplianceSink, now: Date, c: ConditionInput): Promise<void> {
  const others = (cr.status?.conditions ?? []).filter((x) => x.type !== c.type).map(({ type, status, reason, message }) => ({ type, status, reason, message }));
  const status: ComplianceSinkStatus = { ...cr.status, phase: "Deleting", conditions: mergeConditions(cr.status?.conditions, [...others, c], cr.metadata.generation, now) };
  await kube.applyStatus(cr, status);
}
