/**
 * The ComplianceSink controller, shaped like the others: reconcile() is an
 * ordered list of named steps, stopped at the first failure (named in the
 * Degraded condition); status is written once, at the end, when it changed.
 *
 * The status figures (staged records, oldest staged age, last export) come
 * from the running service's admin Status RPC, polled every STATUS_POLL_MS
 * while the sink exists. Deletion is the finalizer's (compliancesink-finalizer.ts).
 *
 *   const c = new ComplianceSinkController({ kube, log, serviceMonitorsAvailable, enqueue });
 *   await c.reconcile(cr);   c.forget(key);   c.close();
 */
import type { ComplianceStatus } from "../../generated/parley/v1/compliance.js";
import type { Logger } from "../../services/common/log.js";
import { API_VERSION, PAUSE_ANNOTATION, type ChatPool, type ComplianceSink, type ComplianceSinkStatus } from "../api/types.js";
import { Rechecks } from "../kube/rechecks.js";
import { resourcePath, type KubeClient } from "../kube/client.js";
import {
  buildComplianceAdminSecret,
  buildComplianceConfigMap,
  buildComplianceDeployment,
  buildComplianceOutputClaim,
  buildComplianceService,
  buildComplianceServiceAccount,
  buildComplianceServiceMonitor,
  complianceNames,
  type SinkInputs,
} from "../specs/compliance.js";
import type { KubeObject } from "../specs/meta.js";
import { sinkAdminAddress, withSinkAdmin } from "./compliance-admin.js";
import { addFinalizer, finalize, hasFinalizer } from "./compliancesink-finalizer.js";
import { mergeConditions, sameJson, type ConditionInput } from "./conditions.js";
import { resolveSinkInputs } from "./sink-pools.js";

export type ReconcileResult = "success" | "paused";

/** How often the service's figures are read into the status. */
export const STATUS_POLL_MS = 10_000;

export interface ComplianceSinkControllerDeps {
  kube: KubeClient;
  log: Logger;
  serviceMonitorsAvailable: () => Promise<boolean>;
  /** Queues a reconcile of "ComplianceSink/ns/name". */
  enqueue: (key: string) => void;
  now?: () => Date;
}

interface Rollout {
  metadata: { generation?: number };
  status?: { observedGeneration?: number; readyReplicas?: number; updatedReplicas?: number; availableReplicas?: number };
}

interface Polled {
  at: number;
  address: string;
  status?: ComplianceStatus;
  error: string;
}

export const complianceSinkKey = (cr: Pick<ComplianceSink, "metadata">) => `ComplianceSink/${cr.metadata.namespace}/${cr.metadata.name}`;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export class ComplianceSinkController {
  private readonly now: () => Date;
  private readonly rechecks: Rechecks;
  private readonly polls = new Map<string, Polled>();

  constructor(private readonly deps: ComplianceSinkControllerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.rechecks = new Rechecks(deps.enqueue);
  }

  forget(key: string): void {
    this.rechecks.forget(key);
    this.polls.delete(key);
  }

  /**
   * The service's figures, read at most once per STATUS_POLL_MS: writing the
   * status queues the sink again, and a fresh oldest-age every time would
   * make that a loop.
   */
  private async poll(key: string, cr: ComplianceSink): Promise<Polled> {
    const last = this.polls.get(key);
    const now = this.now().getTime();
    if (last && last.address === sinkAdminAddress(cr) && now - last.at < STATUS_POLL_MS - 500) return last;
    const p: Polled = { at: now, address: sinkAdminAddress(cr), error: "" };
    await withSinkAdmin(this.deps.kube, cr, (a) => a.status()).then((s) => void (p.status = s), (err: Error) => void (p.error = err.message));
    this.polls.set(key, p);
    return p;
  }

  close(): void {
    this.rechecks.close();
  }

  async reconcile(cr: ComplianceSink): Promise<ReconcileResult> {
    const key = complianceSinkKey(cr);
    const { kube, log } = this.deps;
    if (cr.metadata.deletionTimestamp) {
      await finalize(cr, { kube, log, now: this.now, recheck: (ms) => this.rechecks.after(key, ms) });
      return "success";
    }
    if (cr.metadata.annotations?.[PAUSE_ANNOTATION] === "true") {
      await this.writeStatus(cr, this.pausedStatus(cr));
      return "paused";
    }
    // First, before anything exists that the final export would need.
    if (!hasFinalizer(cr)) await addFinalizer(kube, cr);

    const ns = cr.metadata.namespace;
    const names = complianceNames(cr);
    const apply = async (obj: KubeObject | undefined) => void (obj && (await kube.apply(obj)));
    let inputs: SinkInputs | undefined;
    let deployment: Rollout | undefined;
    let polled: Polled | undefined;
    const steps: Array<{ name: string; run: () => Promise<void> }> = [
      { name: "ChatPools", run: async () => void (inputs = await this.resolveInputs(cr)) },
      { name: "ServiceAccount", run: () => apply(buildComplianceServiceAccount(cr)) },
      { name: "AdminSecret", run: async () => apply(buildComplianceAdminSecret(cr, await kube.get(resourcePath("v1", "Secret", ns, names.adminSecret)))) },
      { name: "Config", run: () => apply(buildComplianceConfigMap(cr, inputs!)) },
      { name: "Service", run: () => apply(buildComplianceService(cr)) },
      { name: "OutputClaim", run: () => apply(buildComplianceOutputClaim(cr)) },
      { name: "XsltConfigMap", run: () => this.checkXslt(cr) },
      // After the config, the token and the claims: the pod loads, reads and mounts them.
      { name: "Deployment", run: async () => void (deployment = await kube.apply<Rollout>(buildComplianceDeployment(cr, inputs!))) },
      { name: "ServiceMonitor", run: async () => void ((await this.deps.serviceMonitorsAvailable()) && (await apply(buildComplianceServiceMonitor(cr)))) },
      // Not a failure of the reconcile: a service starting up, or down, shows in Ready.
      { name: "ServiceStatus", run: async () => void (polled = await this.poll(key, cr)) },
    ];
    for (const step of steps) {
      try {
        await step.run();
      } catch (err) {
        const message = `${step.name}: ${(err as Error).message}`;
        log.warn({ complianceSink: `${ns}/${cr.metadata.name}`, step: step.name, err: (err as Error).message }, "reconcile step failed");
        await this.writeStatus(cr, this.degradedStatus(cr, `${step.name}Failed`, message)).catch(() => {});
        throw new Error(`ComplianceSink ${ns}/${cr.metadata.name}: ${message}`, { cause: err });
      }
    }
    this.rechecks.after(key, STATUS_POLL_MS);
    await this.writeStatus(cr, this.readyStatus(cr, deployment, polled!.status, polled!.error));
    return "success";
  }

  private async resolveInputs(cr: ComplianceSink): Promise<SinkInputs> {
    const ns = cr.metadata.namespace;
    const pools = new Map<string, ChatPool | undefined>();
    for (const p of cr.spec.chatPools) pools.set(p, await this.deps.kube.get<ChatPool>(resourcePath(API_VERSION, "ChatPool", ns, p)));
    const sinks = (await this.deps.kube.list<ComplianceSink>(resourcePath(API_VERSION, "ComplianceSink", ns))).items;
    return resolveSinkInputs(cr, pools, sinks);
  }

  /** A missing stylesheet would leave the pod stuck in ContainerCreating: say so here instead. */
  private async checkXslt(cr: ComplianceSink): Promise<void> {
    const ref = cr.spec.format?.xsltConfigMapRef;
    if (cr.spec.format?.type !== "xslt" || !ref) return;
    const key = ref.key ?? "transform.xslt";
    const cm = await this.deps.kube.get<{ data?: Record<string, string> }>(resourcePath("v1", "ConfigMap", cr.metadata.namespace, ref.name));
    if (!cm) throw new Error(`ConfigMap ${ref.name} (spec.format.xsltConfigMapRef) does not exist`);
    if (cm.data?.[key] === undefined) throw new Error(`ConfigMap ${ref.name} has no key ${key} (spec.format.xsltConfigMapRef.key)`);
  }


  private readyStatus(cr: ComplianceSink, d: Rollout | undefined, service: ComplianceStatus | undefined, unreachable: string): ComplianceSinkStatus {
    const rolledOut = (d?.status?.observedGeneration ?? 0) >= (d?.metadata.generation ?? 1) && (d?.status?.readyReplicas ?? 0) >= 1 && (d?.status?.updatedReplicas ?? 0) >= 1;
    const deployment = complianceNames(cr).deployment;
    const exportError = service?.lastError ? `; the last export error: ${service.lastError}` : "";
    const ready: ConditionInput = !rolledOut
      ? { type: "Ready", status: "False", reason: "InstanceNotReady", message: `waiting for Deployment ${deployment} to roll out` }
      : service
        ? { type: "Ready", status: "True", reason: "Exporting", message: `${service.stagedRecords} records staged, exported every ${Math.round(service.conversationIntervalMs / 1000)}s${exportError}` }
        : { type: "Ready", status: "False", reason: "AdminUnreachable", message: `the compliance service at ${sinkAdminAddress(cr)} does not answer: ${unreachable}` };
    const status = this.status(cr, ready.status === "True" ? "Ready" : "Provisioning", [
      ready,
      rolledOut
        ? { type: "Progressing", status: "False", reason: "Reconciled", message: "all objects match the spec" }
        : { type: "Progressing", status: "True", reason: "RollingOut", message: `waiting for Deployment ${deployment} to roll out` },
      { type: "Degraded", status: "False", reason: "Reconciled", message: "the last reconcile succeeded" },
    ]);
    if (service) {
      status.stagedCount = service.stagedRecords;
      status.oldestStagedAgeSeconds = Math.round(service.oldestStagedAgeSeconds);
      status.lastExportTime = service.lastExportAtMs ? iso(service.lastExportAtMs) : cr.status?.lastExportTime;
    }
    return status;
  }

  private degradedStatus(cr: ComplianceSink, reason: string, message: string): ComplianceSinkStatus {
    const ready = cr.status?.conditions?.find((c) => c.type === "Ready");
    return this.status(cr, "Degraded", [
      ready ? { type: "Ready", status: ready.status, reason: ready.reason, message: ready.message } : { type: "Ready", status: "Unknown", reason: "ReconcileFailed", message },
      { type: "Progressing", status: "True", reason, message },
      { type: "Degraded", status: "True", reason, message },
    ]);
  }

  private pausedStatus(cr: ComplianceSink): ComplianceSinkStatus {
    const prev = (cr.status?.conditions ?? []).filter((c) => c.type !== "Progressing").map(({ type, status, reason, message }) => ({ type, status, reason, message }));
    const message = `annotation ${PAUSE_ANNOTATION}=true: the operator leaves this ComplianceSink and its objects alone`;
    return this.status(cr, "Paused", [...prev, { type: "Progressing", status: "False", reason: "Paused", message }]);
  }

  /** Figures from the service are kept from the last status until it answers again. */
  private status(cr: ComplianceSink, phase: string, conditions: ConditionInput[]): ComplianceSinkStatus {
    const prev = cr.status ?? {};
    return {
      observedGeneration: cr.metadata.generation,
      phase,
      stagedCount: prev.stagedCount,
      oldestStagedAgeSeconds: prev.oldestStagedAgeSeconds,
      lastExportTime: prev.lastExportTime,
      conditions: mergeConditions(prev.conditions, conditions, cr.metadata.generation, this.now()),
    };
  }

  private async writeStatus(cr: ComplianceSink, status: ComplianceSinkStatus): Promise<void> {
    if (sameJson(cr.status ?? {}, status)) return;
    await this.deps.kube.applyStatus(cr, status);
  }
}
