/**
 * Kubernetes Events (events.k8s.io/v1) about a custom resource: what the
 * operator did and why, for `kubectl describe` / `kubectl get events`.
 * Recording is best effort: a lost Event must never fail a reconcile.
 *
 *   const events = new EventRecorder(kube, log);
 *   await events.record(cr, { type: "Normal", reason: "SwitchedOver", action: "Promote", note: "…" });
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Logger } from "../../services/common/log.js";
import { resourcePath, type KubeClient } from "./client.js";

export const REPORTING_CONTROLLER = "parley.dev/operator";

export interface EventInput {
  type: "Normal" | "Warning";
  /** UpperCamelCase, machine-readable (e.g. FailoverStarted). */
  reason: string;
  /** What the operator did or failed to do (e.g. Promote). */
  action: string;
  /** Human-readable, at most 1 kB. */
  note: string;
}

export interface Regarding {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid: string };
}

/** MicroTime: RFC 3339 with exactly six fractional digits. */
const microTime = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export class EventRecorder {
  private readonly instance = `${hostname()}_${process.pid}`;

  constructor(private readonly kube: KubeClient, private readonly log: Logger, private readonly now: () => Date = () => new Date()) {}

  async record(about: Regarding, e: EventInput): Promise<void> {
    const { name, namespace, uid } = about.metadata;
    const event = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: `${name}.${randomBytes(8).toString("hex")}`, namespace },
      eventTime: microTime(this.now()),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.instance.slice(0, 128),
      action: e.action,
      reason: e.reason,
      type: e.type,
      note: e.note.slice(0, 1024),
      regarding: { apiVersion: about.apiVersion, kind: about.kind, name, namespace, uid },
    };
    this.log.info({ object: `${about.kind}/${namespace}/${name}`, reason: e.reason, type: e.type, note: e.note }, "event");
    try {
      await this.kube.request("POST", resourcePath("events.k8s.io/v1", "Event", namespace), event);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, reason: e.reason }, "could not record an Event");
    }
  }
}
