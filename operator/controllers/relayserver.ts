/**
 * The RelayServer controller: level-triggered and idempotent. reconcile()
 * reads as its table of contents — an ordered list of named steps, each a
 * server-side apply of one or two builder outputs — run by one loop that
 * stops at the first failure and reports it (the step's name in the Degraded
 * condition). Status is written once, at the end, and only when it changed.
 *
 *   const controller = new RelayServerController({ kube, log, serviceMonitorsAvailable });
 *   await controller.reconcile(cr);   // throws after recording Degraded, so the queue retries
 */
import type { Logger } from "../../services/common/log.js";
import { PAUSE_ANNOTATION, type RelayServer, type RelayServerStatus } from "../api/types.js";
import { relaySpecWithDefaults } from "../api/defaults.js";
import { resourcePath, type KubeClient } from "../kube/client.js";
import {
  buildRelayConfigMap,
  buildRelayDeployment,
  buildRelayKeySecret,
  buildRelayPodDisruptionBudget,
  buildRelayRole,
  buildRelayRoleBinding,
  buildRelayService,
  buildRelayServiceAccount,
  buildRelayServiceMonitor,
  relayNames,
} from "../specs/relay.js";
import { mergeConditions, sameJson, type ConditionInput } from "./conditions.js";

export type ReconcileResult = "success" | "paused";

export interface RelayServerControllerDeps {
  kube: KubeClient;
  log: Logger;
  /** Whether the Prometheus Operator's ServiceMonitor CRD is installed (cached by the caller). */
  serviceMonitorsAvailable: () => Promise<boolean>;
  now?: () => Date;
}

interface DeploymentStatus {
  metadata: { generation?: number };
  spec?: { replicas?: number };
  status?: { observedGeneration?: number; readyReplicas?: number; availableReplicas?: number; updatedReplicas?: number };
}

interface Step {
  name: string;
  run: () => Promise<void>;
}

export class RelayServerController {
  private readonly now: () => Date;

  constructor(private readonly deps: RelayServerControllerDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async reconcile(cr: RelayServer): Promise<ReconcileResult> {
    if (cr.metadata.deletionTimestamp) return "success"; // owned objects go with it (owner references)
    if (cr.metadata.annotations?.[PAUSE_ANNOTATION] === "true") {
      await this.writeStatus(cr, this.pausedStatus(cr));
      return "paused";
    }

    const { kube } = this.deps;
    let deployment: DeploymentStatus | undefined;
    const steps: Step[] = [
      { name: "ServiceAccount", run: async () => void (await kube.apply(buildRelayServiceAccount(cr))) },
      { name: "Rbac", run: async () => void (await kube.apply(buildRelayRole(cr)), await kube.apply(buildRelayRoleBinding(cr))) },
      { name: "KeySecret", run: () => this.ensureKeySecret(cr) },
      { name: "Config", run: async () => void (await kube.apply(buildRelayConfigMap(cr))) },
      { name: "Service", run: async () => void (await kube.apply(buildRelayService(cr))) },
      { name: "PodDisruptionBudget", run: async () => void (await kube.apply(buildRelayPodDisruptionBudget(cr))) },
      // After the config and the key: the pods load one and mount the other.
      { name: "Deployment", run: async () => void (deployment = await kube.apply<DeploymentStatus>(buildRelayDeployment(cr))) },
      { name: "ServiceMonitor", run: async () => void ((await this.deps.serviceMonitorsAvailable()) && (await kube.apply(buildRelayServiceMonitor(cr)))) },
    ];

    for (const step of steps) {
      try {
        await step.run();
      } catch (err) {
        const message = `${step.name}: ${(err as Error).message}`;
        this.deps.log.warn({ relayServer: `${cr.metadata.namespace}/${cr.metadata.name}`, step: step.name, err: (err as Error).message }, "reconcile step failed");
        // Best effort: the step's error (thrown below, logged and retried by the queue) is the one that matters.
        await this.writeStatus(cr, this.degradedStatus(cr, `${step.name}Failed`, message)).catch(() => {});
        throw new Error(`RelayServer ${cr.metadata.namespace}/${cr.metadata.name}: ${message}`, { cause: err });
      }
    }
    await this.writeStatus(cr, this.readyStatus(cr, deployment));
    return "success";
  }

  /** Generated once: an existing key (ours or one the user brought) is never replaced. */
  private async ensureKeySecret(cr: RelayServer): Promise<void> {
    const existing = await this.deps.kube.get<{ data?: Record<string, string> }>(resourcePath("v1", "Secret", cr.metadata.namespace, relayNames(cr).keySecret));
    const secret = buildRelayKeySecret(cr, existing);
    if (secret) await this.deps.kube.apply(secret);
  }

  private readyStatus(cr: RelayServer, deployment: DeploymentStatus | undefined): RelayServerStatus {
    const spec = relaySpecWithDefaults(cr);
    const want = spec.replicas;
    const ready = deployment?.status?.readyReplicas ?? 0;
    const rolledOut =
      (deployment?.status?.observedGeneration ?? 0) >= (deployment?.metadata.generation ?? 1) &&
      (deployment?.status?.updatedReplicas ?? 0) >= want &&
      (deployment?.status?.availableReplicas ?? 0) >= want &&
      ready >= want;
    const conditions: ConditionInput[] = rolledOut
      ? [
          { type: "Ready", status: "True", reason: "InstancesReady", message: `${ready} of ${want} relay instances ready` },
          { type: "Progressing", status: "False", reason: "Reconciled", message: "all objects match the spec" },
          { type: "Degraded", status: "False", reason: "Reconciled", message: "the last reconcile succeeded" },
        ]
      : [
          { type: "Ready", status: "False", reason: "InstancesNotReady", message: `${ready} of ${want} relay instances ready` },
          { type: "Progressing", status: "True", reason: "RollingOut", message: `waiting for Deployment ${relayNames(cr).deployment} to roll out` },
          { type: "Degraded", status: "False", reason: "Reconciled", message: "the last reconcile succeeded" },
        ];
    return this.status(cr, rolledOut ? "Ready" : "Provisioning", conditions, { instances: want, readyInstances: ready });
  }

  private degradedStatus(cr: RelayServer, reason: string, message: string): RelayServerStatus {
    const prev = cr.status?.conditions ?? [];
    const keep = (type: string, fallback: ConditionInput): ConditionInput => {
      const c = prev.find((p) => p.type === type);
      return c ? { type: c.type, status: c.status, reason: c.reason, message: c.message } : fallback;
    };
    return this.status(cr, "Degraded", [
      keep("Ready", { type: "Ready", status: "Unknown", reason: "ReconcileFailed", message }),
      { type: "Progressing", status: "True", reason, message },
      { type: "Degraded", status: "True", reason, message },
    ], { instances: cr.status?.instances, readyInstances: cr.status?.readyInstances });
  }

  private pausedStatus(cr: RelayServer): RelayServerStatus {
    const prev = (cr.status?.conditions ?? []).filter((c) => c.type !== "Progressing").map(({ type, status, reason, message }) => ({ type, status, reason, message }));
    const message = `annotation ${PAUSE_ANNOTATION}=true: the operator leaves this RelayServer and its objects alone`;
    return this.status(cr, "Paused", [...prev, { type: "Progressing", status: "False", reason: "Paused", message }], {
      instances: cr.status?.instances,
      readyInstances: cr.status?.readyInstances,
    });
  }

  private status(cr: RelayServer, phase: string, conditions: ConditionInput[], counts: { instances?: number; readyInstances?: number }): RelayServerStatus {
    const now = this.now();
    const spec = relaySpecWithDefaults(cr);
    const prev = cr.status ?? {};
    const status: RelayServerStatus = {
      observedGeneration: cr.metadata.generation,
      phase,
      instances: counts.instances,
      readyInstances: counts.readyInstances,
      conditions: mergeConditions(prev.conditions, conditions, cr.metadata.generation, now),
    };
    // A standalone relay or a primary serves as its own primary until failover (not in this slice) says otherwise.
    if (spec.role !== "secondary") {
      status.currentPrimary = prev.currentPrimary ?? cr.metadata.name;
      status.currentPrimaryTimestamp = prev.currentPrimaryTimestamp ?? now.toISOString().replace(/\.\d{3}Z$/, "Z");
    }
    for (const k of ["targetPrimary", "targetPrimaryTimestamp", "replicationLagSeconds", "queues"] as const) {
      if (prev[k] !== undefined) (status as Record<string, unknown>)[k] = prev[k];
    }
    return status;
  }

  private async writeStatus(cr: RelayServer, status: RelayServerStatus): Promise<void> {
    if (sameJson(cr.status ?? {}, status)) return;
    await this.deps.kube.applyStatus(cr, status);
  }
}
