/**
 * Kubernetes Events (events.k8s.io/v1) about a custom resource: what the
 * operator did and why, shown by `kubectl describe` and `kubectl events`.
 * Best effort: an Event that cannot be written is logged, never fatal.
 *
 *   await recordEvent(kube, log, cr, { type: "Normal", reason: "FinalExport", action: "Export", note: "wrote batch …" });
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "../../services/common/log.js";
import type { ObjectMeta } from "../api/types.js";
import { resourcePath, type KubeClient } from "../kube/client.js";

export interface EventInput {
  type: "Normal" | "Warning";
  reason: string;
  action: string;
  note: string;
}

const INSTANCE = `${hostname()}-${process.pid}`;

export async function recordEvent(kube: KubeClient, log: Logger, regarding: { apiVersion: string; kind: string; metadata: ObjectMeta }, e: EventInput): Promise<void> {
  const { name: objectName, namespace, uid } = regarding.metadata;
  const name = `${objectName}.${Date.now().toString(16)}${randomBytes(2).toString("hex")}`;
  const event = {
    apiVersion: "events.k8s.io/v1",
    kind: "Event",
    metadata: { name, namespace },
    eventTime: new Date().toISOString().replace(/Z$/, "000Z"),
    reportingController: "parley.dev/operator",
    reportingInstance: INSTANCE,
    type: e.type,
    reason: e.reason,
    action: e.action,
    note: e.note.slice(0, 1024),
    regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name: objectName, namespace, uid },
  };
  try {
    await kube.request("POST", resourcePath("events.k8s.io/v1", "Event", namespace), event);
  } catch (err) {
    log.warn({ object: `${regarding.kind}/${namespace}/${objectName}`, reason: e.reason, err: (err as Error).message }, "could not record an Event");
  }
}
