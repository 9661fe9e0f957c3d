/**
 * The RelayServer controller: level-triggered and idempotent. reconcile()
 * reads as its table of contents — an ordered list of named steps, each a
 * server-side apply of one or two builder outputs — run by one loop that
 * stops at the first failure and reports it (the step's name in the Degraded
 * condition). Status is written once, at the end, and only when it changed.
 *
 * Paired relays (role primary + secondary) add a Pair step: failover
 * (relay-failover.ts) decides which member is primary before the client
 * Service, whose selector follows it, is applied.
 *
 *   const controller = new RelayServerController({ kube, log, serviceMonitorsAvailable, requeue });
 *   await controller.reconcile(cr);   // throws after recording Degraded, so the queue retries
 */
import type { Logger } from "../../services/common/log.js";
import { API_VERSION, PAUSE_ANNOTATION, type RelayServer, type RelayServerStatus } from "../api/types.js";
import { relaySpecWithDefaults } from "../api/defaults.js";
import { KubeApiError, resourcePath, type KubeClient } from "../kube/client.js";
import { EventRecorder } from "../kube/events.js";
import {
  buildRelayAdminSecret,
  buildRelayConfigMap,
  buildRelayDeployment,
  buildRelayKeySecret,
  buildRelayPodDisruptionBudget,
  buildRelayReplicaService,
  buildRelayRole,
  buildRelayRoleBinding,
  buildRelayService,
  buildRelayServiceAccount,
  buildRelayServiceMonitor,
  relayNames,
} from "../specs/relay.js";
import { mergeConditions, sameJson, type ConditionInput } from "./conditions.js";
import { RelayAdminAccess } from "./relay-admin.js";
import { RelayFailover, type PairOutcome } from "./relay-failover.js";
import { RelayStatsPoller } from "./relay-stats.js";

export type ReconcileResult = "success" | "paused";

export interface RelayServerControllerDeps {
  kube: KubeClient;
  log: Logger;
  /** Whether the Prometheus Operator's ServiceMonitor CRD is installed (cached by the caller). */
  serviceMonitorsAvailable: () => Promise<boolean>;
  now?: () => Date;
  /** Queue a RelayServer again (health polling of pairs; the peer of a switched pair). */
  requeue?: (namespace: string, name: string, afterMs: number) => void;
  /** How the operator reaches relay admin APIs (default: Service DNS names, or the admin-address annotation). */
  admin?: RelayAdminAccess;
  events?: EventRecorder;
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
  private readonly failover: RelayFailover;
  /** Queue totals of standalone relays (pairs: the failover probe). */
  private readonly stats: RelayStatsPoller | undefined;

  constructor(private readonly deps: RelayServerControllerDeps) {
    this.now = deps.now ?? (() => new Date());
    const admin = deps.admin ?? new RelayAdminAccess(deps.kube);
    this.stats = deps.requeue ? new RelayStatsPoller(admin, deps.requeue) : undefined;
    this.failover = new RelayFailover({
      kube: deps.kube,
      admin,
      events: deps.events ?? new EventRecorder(deps.kube, deps.log, this.now),
      log: deps.log,
      now: this.now,
    });
  }

  async reconcile(cr: RelayServer): Promise<ReconcileResult> {
    if (cr.metadata.deletionTimestamp) {
      this.stats?.forget(cr.metadata.namespace, cr.metadata.name);
      return "success"; // owned objects go with it (owner references)
    }
    if (cr.metadata.annotations?.[PAUSE_ANNOTATION] === "true") {
      await this.writeStatus(cr, this.pausedStatus(cr));
      return "paused";
    }

    const { kube } = this.deps;
    const role = relaySpecWithDefaults(cr).role;
    const paired = role === "secondary" || (role === "primary" && cr.spec.secondary !== undefined);
    let deployment: DeploymentStatus | undefined;
    let pair: PairOutcome | undefined;
    const steps: Step[] = [
      { name: "ServiceAccount", run: async () => void (await kube.apply(buildRelayServiceAccount(cr))) },
      { name: "Rbac", run: async () => void (await kube.apply(buildRelayRole(cr)), await kube.apply(buildRelayRoleBinding(cr))) },
      { name: "KeySecret", run: () => this.ensureKeySecret(cr) },
      { name: "AdminSecret", run: () => this.ensureAdminSecret(cr) },
      { name: "Config", run: async () => void (await kube.apply(buildRelayConfigMap(cr))) },
      ...(paired ? [{ name: "ReplicaService", run: async () => void (await kube.apply(buildRelayReplicaService(cr))) }] : []),
      { name: "PodDisruptionBudget", run: async () => void (await kube.apply(buildRelayPodDisruptionBudget(cr))) },
      // After the config and the keys: the pods load one and mount the others.
      { name: "Deployment", run: async () => void (deployment = await kube.apply<DeploymentStatus>(buildRelayDeployment(cr))) },
      // Before the Service: the pair step settles which member is primary, and the Service selects it.
      ...(paired ? [{ name: "Pair", run: async () => void (pair = role === "secondary" ? await this.failover.forSecondary(cr) : await this.failover.forPrimary(cr)) }] : []),
      { name: "Service", run: async () => void (await kube.apply(buildRelayService(cr, pair?.servicePrimary))) },
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
    const queues = !paired && (deployment?.status?.readyReplicas ?? 0) > 0 ? this.stats?.queues(cr) : undefined;
    await this.writeStatus(cr, this.readyStatus(cr, deployment, pair, queues));
    if (pair) {
      const { namespace } = cr.metadata;
      for (const peer of pair.peers) this.deps.requeue?.(namespace, peer, 0);
      if (pair.requeueAfterMs !== undefined) this.deps.requeue?.(namespace, cr.metadata.name, pair.requeueAfterMs);
    }
    return "success";
  }

  /**
   * Generated once: an existing key (ours or one the user brought) is never
   * replaced. A secondary takes its primary's key instead (clients pin one key
   * per relay, and must keep it across a failover).
   */
  private async ensureKeySecret(cr: RelayServer): Promise<void> {
    const secretAt = (name: string) => this.deps.kube.get<{ data?: Record<string, string> }>(resourcePath("v1", "Secret", cr.metadata.namespace, relayNames({ metadata: { ...cr.metadata, name } }).keySecret));
    const existing = await secretAt(cr.metadata.name);
    let fromPrimary: { data?: Record<string, string> } | undefined;
    if (!existing?.data && cr.spec.role === "secondary") {
      const owners = await this.deps.kube.list<RelayServer>(resourcePath(API_VERSION, "RelayServer", cr.metadata.namespace));
      const owner = owners.items.find((r) => r.spec.role === "primary" && r.spec.secondary === cr.metadata.name);
      // Never a key of its own: it would differ from the primary's for good.
      if (!owner) throw new Error(`no RelayServer with role primary names ${cr.metadata.name} in spec.secondary yet; a secondary uses its primary's key`);
      fromPrimary = await secretAt(owner.metadata.name);
      if (!fromPrimary?.data) throw new Error(`waiting for the key of primary ${owner.metadata.name} (Secret ${relayNames(owner).keySecret}) to share it`);
    }
    const secret = buildRelayKeySecret(cr, existing);
    if (secret && fromPrimary?.data) secret.data = { ...fromPrimary.data };
    if (secret) await this.deps.kube.apply(secret);
  }

  private async ensureAdminSecret(cr: RelayServer): Promise<void> {
    const existing = await this.deps.kube.get<{ data?: Record<string, string> }>(resourcePath("v1", "Secret", cr.metadata.namespace, relayNames(cr).adminSecret));
    const secret = buildRelayAdminSecret(cr, existing);
    if (secret) await this.deps.kube.apply(secret);
  }

  private readyStatus(cr: RelayServer, deployment: DeploymentStatus | undefined, pair?: PairOutcome, queues?: RelayServerStatus["queues"]): RelayServerStatus {
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
    if (pair) conditions.push(...pair.conditions);
    const phase = pair?.phase ?? (rolledOut ? "Ready" : "Provisioning");
    const status = this.status(cr, phase, conditions, { instances: want, readyInstances: ready }, pair);
    if (queues) status.queues = queues;
    return status;
  }

  private degradedStatus(cr: RelayServer, reason: string, message: string): RelayServerStatus {
    const prev = cr.status?.conditions ?? [];
    const keep = (type: string, fallback: ConditionInput): ConditionInput => {
      const c = prev.find((p) => p.type === type);
      return c ? { type: c.type, status: c.status, reason: c.reason, message: c.message } : fallback;
    };
    // The pair's conditions (and their lastTransitionTime: the unhealthy-since) survive a failed step.
    const pairConditions = prev.filter((c) => ["Paired", "PrimaryHealthy", "Switchover"].includes(c.type)).map(({ type, status, reason, message }) => ({ type, status, reason, message }));
    return this.status(cr, "Degraded", [
      keep("Ready", { type: "Ready", status: "Unknown", reason: "ReconcileFailed", message }),
      { type: "Progressing", status: "True", reason, message },
      { type: "Degraded", status: "True", reason, message },
      ...pairConditions,
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

  private status(cr: RelayServer, phase: string, conditions: ConditionInput[], counts: { instances?: number; readyInstances?: number }, pair?: PairOutcome): RelayServerStatus {
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
    // A standalone relay or an unpaired primary serves as its own primary; a pair's is decided by failover.
    if (spec.role !== "secondary") {
      status.currentPrimary = prev.currentPrimary ?? cr.metadata.name;
      status.currentPrimaryTimestamp = prev.currentPrimaryTimestamp ?? now.toISOString().replace(/\.\d{3}Z$/, "Z");
    }
    for (const k of ["currentPrimary", "currentPrimaryTimestamp", "targetPrimary", "targetPrimaryTimestamp", "replicationLagSeconds", "queues"] as const) {
      const value = pair ? pair.status[k] : undefined;
      if (value !== undefined) (status as Record<string, unknown>)[k] = value;
      else if (prev[k] !== undefined && status[k] === undefined) (status as Record<string, unknown>)[k] = prev[k];
    }
    return status;
  }

  /**
   * Guarded by the resourceVersion read: if someone changed the object meanwhile
   * (a person setting status.targetPrimary), the write fails and the reconcile
   * runs again on the fresh object instead of overwriting their request.
   */
  private async writeStatus(cr: RelayServer, status: RelayServerStatus): Promise<void> {
    if (sameJson(cr.status ?? {}, status)) return;
    try {
      await this.deps.kube.applyStatus(cr, status, cr.metadata.resourceVersion);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) {
        this.deps.requeue?.(cr.metadata.namespace, cr.metadata.name, 0);
        return;
      }
      throw err;
    }
  }
}
