/**
 * The ChatPool controller, shaped like the RelayServer one: reconcile() is an
 * ordered list of named steps (server-side applies of specs/chat.ts builders),
 * stopped at the first failure (named in the Degraded condition); status is
 * written once, at the end, when it changed.
 *
 * The channel StatefulSet's replicas come from decideScale() (chat-scaling.ts):
 * spec.channel.replicas when /scale set it, else the load the instances report
 * on the pool's NATS (chat-load.ts). Instances to remove are drained first —
 * told over NATS to end their sessions and take no new ones — and replicas drop
 * only once they report no sessions. While a plan is under way (draining, a
 * cooldown) the controller requeues the pool itself.
 *
 *   const c = new ChatPoolController({ kube, log, serviceMonitorsAvailable, enqueue });
 *   await c.reconcile(cr);   c.forget(key);   await c.close();
 */
import type { Logger } from "../../services/common/log.js";
import { chatPoolSpecWithDefaults } from "../api/defaults.js";
import { API_VERSION, PAUSE_ANNOTATION, type ChatPool, type ChatPoolStatus, type ComplianceSink } from "../api/types.js";
import { Rechecks } from "../kube/rechecks.js";
import { resourcePath, type KubeClient } from "../kube/client.js";
import {
  buildChannelConfigMap,
  buildChannelService,
  buildChannelStatefulSet,
  buildChatPodDisruptionBudgets,
  buildChatServiceAccount,
  buildChatServiceMonitor,
  buildFilesClaim,
  buildFilesConfigMap,
  buildFilesDeployment,
  buildFilesService,
  buildFileTokenSecret,
  buildLookupConfigMap,
  buildLookupDeployment,
  buildLookupService,
  channelSelector,
  chatNames,
} from "../specs/chat.js";
import { relayNames } from "../specs/relay.js";
import { ChatLoadMonitor, type HeardReport } from "./chat-load.js";
import { decideScale, type ScaleDecision } from "./chat-scaling.js";
import { mergeConditions, sameJson, type ConditionInput } from "./conditions.js";
import { archivingSink } from "./sink-pools.js";

export type ReconcileResult = "success" | "paused";

export interface ChatPoolControllerDeps {
  kube: KubeClient;
  log: Logger;
  serviceMonitorsAvailable: () => Promise<boolean>;
  /** Queues a reconcile of "ChatPool/ns/name" (load changes, plans under way). */
  enqueue: (key: string) => void;
  monitor?: ChatLoadMonitor;
  now?: () => Date;
}

interface Rollout {
  metadata: { generation?: number };
  spec?: { replicas?: number };
  status?: { observedGeneration?: number; readyReplicas?: number; availableReplicas?: number; updatedReplicas?: number };
}

/** While a plan is under way, look again this often even if no report changes. */
const PLAN_RECHECK_MS = 2000;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const durationMs = (d: string) => {
  const m = /^(\d+)(ms|s|m|h)$/.exec(d);
  return m ? Number(m[1]) * UNITS[m[2]!]! : 120_000;
};

export const chatPoolKey = (cr: Pick<ChatPool, "metadata">) => `ChatPool/${cr.metadata.namespace}/${cr.metadata.name}`;

export class ChatPoolController {
  private readonly now: () => Date;
  readonly monitor: ChatLoadMonitor;
  private readonly rechecks: Rechecks;

  constructor(private readonly deps: ChatPoolControllerDeps) {
    this.now = deps.now ?? (() => new Date());
    this.rechecks = new Rechecks(deps.enqueue);
    this.monitor = deps.monitor ?? new ChatLoadMonitor({ log: deps.log, onChange: deps.enqueue });
  }

  /** The pool is gone: stop listening to its load. */
  forget(key: string): void {
    this.monitor.forget(key);
    this.rechecks.forget(key);
  }

  async close(): Promise<void> {
    this.rechecks.close();
    await this.monitor.close();
  }

  async reconcile(cr: ChatPool): Promise<ReconcileResult> {
    const key = chatPoolKey(cr);
    if (cr.metadata.deletionTimestamp) {
      this.forget(key);
      return "success";
    }
    if (cr.metadata.annotations?.[PAUSE_ANNOTATION] === "true") {
      await this.writeStatus(cr, this.pausedStatus(cr));
      return "paused";
    }
    const spec = chatPoolSpecWithDefaults(cr.spec);
    this.monitor.watch(key, spec.nats.url, cr.metadata.name);

    const { kube } = this.deps;
    const ns = cr.metadata.namespace;
    const names = chatNames(cr);
    const apply = async (obj: Parameters<KubeClient["apply"]>[0] | undefined) => void (obj && (await kube.apply(obj)));
    let channel: Rollout | undefined;
    let lookup: Rollout | undefined;
    let files: Rollout | undefined;
    let decision: ScaleDecision | undefined;
    let archived = false;
    const steps: Array<{ name: string; run: () => Promise<void> }> = [
      { name: "RelayKey", run: () => this.checkRelayKey(cr) },
      { name: "ServiceAccount", run: () => apply(buildChatServiceAccount(cr)) },
      { name: "FileTokenSecret", run: async () => apply(buildFileTokenSecret(cr, await kube.get(resourcePath("v1", "Secret", ns, names.fileTokenSecret)))) },
      // Before the files config: a ComplianceSink archiving the pool gives the file pods an archive folder.
      { name: "ComplianceSink", run: async () => void (archived = await this.archivedBySink(cr)) },
      { name: "Config", run: async () => void (await apply(buildChannelConfigMap(cr)), await apply(buildLookupConfigMap(cr)), await apply(buildFilesConfigMap(cr, archived))) },
      { name: "Services", run: async () => void (await apply(buildChannelService(cr)), await apply(buildLookupService(cr)), await apply(buildFilesService(cr))) },
      { name: "FilesClaim", run: () => apply(buildFilesClaim(cr)) },
      { name: "PodDisruptionBudgets", run: async () => void (await Promise.all(buildChatPodDisruptionBudgets(cr).map((p) => apply(p)))) },
      { name: "Lookup", run: async () => void (lookup = await kube.apply<Rollout>(buildLookupDeployment(cr))) },
      { name: "Files", run: async () => void (files = await kube.apply<Rollout>(buildFilesDeployment(cr, archived))) },
      {
        name: "Channel",
        run: async () => {
          // What the operator decided last (status.instances), so a hand edit of the StatefulSet is drift, put right.
          const current = cr.status?.instances ?? (await kube.get<Rollout>(resourcePath("apps/v1", "StatefulSet", ns, names.channel)))?.spec?.replicas;
          decision = this.decide(cr, current);
          this.sendCommands(key, cr, decision);
          channel = await kube.apply<Rollout>(buildChannelStatefulSet(cr, decision.replicas));
          if (current !== undefined && current !== decision.replicas) {
            this.deps.log.info({ chatPool: `${ns}/${cr.metadata.name}`, from: current, to: decision.replicas, reason: decision.reason }, decision.message);
          }
        },
      },
      { name: "ServiceMonitor", run: async () => void ((await this.deps.serviceMonitorsAvailable()) && (await apply(buildChatServiceMonitor(cr)))) },
    ];

    for (const step of steps) {
      try {
        await step.run();
      } catch (err) {
        const message = `${step.name}: ${(err as Error).message}`;
        this.deps.log.warn({ chatPool: `${ns}/${cr.metadata.name}`, step: step.name, err: (err as Error).message }, "reconcile step failed");
        await this.writeStatus(cr, this.degradedStatus(cr, `${step.name}Failed`, message)).catch(() => {});
        throw new Error(`ChatPool ${ns}/${cr.metadata.name}: ${message}`, { cause: err });
      }
    }
    const d = decision!;
    // A plan under way needs another look even if no report changes: a drain
    // soon, a cooldown when it ends. (Unknown load: the monitor calls when it knows.)
    if (d.replicas !== d.target) this.rechecks.after(key, PLAN_RECHECK_MS);
    else if (d.reason === "Cooldown") this.rechecks.after(key, this.cooldownLeftMs(cr) + 100);
    await this.writeStatus(cr, this.readyStatus(cr, d, channel, lookup, files));
    return "success";
  }

  private decide(cr: ChatPool, current: number | undefined): ScaleDecision {
    const s = chatPoolSpecWithDefaults(cr.spec);
    const lastScale = cr.status?.lastScaleTime ? Date.parse(cr.status.lastScaleTime) : undefined;
    return decideScale({
      min: s.channel.minInstances,
      max: s.channel.maxInstances,
      targetUsersPerInstance: s.channel.targetUsersPerInstance,
      manualReplicas: s.channel.replicas,
      current,
      instances: this.monitor.instances(chatPoolKey(cr)),
      lastScaleAtMs: lastScale,
      nowMs: this.now().getTime(),
      cooldownMs: durationMs(s.channel.scaleCooldown),
    });
  }

  private sendCommands(key: string, cr: ChatPool, d: ScaleDecision): void {
    const pod = (o: number) => `${chatNames(cr).channel}-${o}`;
    for (const o of d.drain) this.monitor.command(key, pod(o), "drain");
    for (const o of d.resume) this.monitor.command(key, pod(o), "resume");
    if (d.drain.length) this.deps.log.info({ chatPool: `${cr.metadata.namespace}/${cr.metadata.name}`, drain: d.drain.map(pod) }, "draining channel instances before scale-in");
  }

  private cooldownLeftMs(cr: ChatPool): number {
    const last = cr.status?.lastScaleTime ? Date.parse(cr.status.lastScaleTime) : 0;
    return Math.max(0, last + durationMs(chatPoolSpecWithDefaults(cr.spec).channel.scaleCooldown) - this.now().getTime());
  }


  /** Whether a ComplianceSink names this pool (sink-pools.ts: one sink archives a pool's attachments). */
  private async archivedBySink(cr: ChatPool): Promise<boolean> {
    const sinks = await this.deps.kube.list<ComplianceSink>(resourcePath(API_VERSION, "ComplianceSink", cr.metadata.namespace));
    return archivingSink(cr.metadata.name, sinks.items) !== undefined;
  }

  /** The pods read the relay's public key from its Secret: say so clearly when it is missing. */
  private async checkRelayKey(cr: ChatPool): Promise<void> {
    if (!cr.spec.relay) throw new Error("spec.relay must name the RelayServer whose key signs the sessions chat clients present");
    const secret = relayNames({ metadata: { name: cr.spec.relay } } as never).keySecret;
    if (!(await this.deps.kube.get(resourcePath("v1", "Secret", cr.metadata.namespace, secret)))) {
      throw new Error(`Secret ${secret} (the key of RelayServer ${cr.spec.relay}) does not exist yet`);
    }
  }

  private readyStatus(cr: ChatPool, d: ScaleDecision, channel?: Rollout, lookup?: Rollout, files?: Rollout): ChatPoolStatus {
    const s = chatPoolSpecWithDefaults(cr.spec);
    const rolled = (r: Rollout | undefined, want: number) =>
      (r?.status?.observedGeneration ?? 0) >= (r?.metadata.generation ?? 1) && (r?.status?.readyReplicas ?? 0) >= want && (r?.status?.updatedReplicas ?? 0) >= want;
    const ready = channel?.status?.readyReplicas ?? 0;
    const waiting = [
      !rolled(channel, d.replicas) && `${ready} of ${d.replicas} channel instances ready`,
      !rolled(lookup, s.lookup.replicas) && `${lookup?.status?.readyReplicas ?? 0} of ${s.lookup.replicas} lookup replicas ready`,
      !rolled(files, s.files.replicas) && `${files?.status?.readyReplicas ?? 0} of ${s.files.replicas} file instances ready`,
    ].filter((x): x is string => typeof x === "string");
    const allReady = waiting.length === 0;
    const scaling = d.replicas !== d.target;
    const conditions: ConditionInput[] = [
      allReady
        ? { type: "Ready", status: "True", reason: "InstancesReady", message: `${ready} of ${d.replicas} channel instances ready; lookup and files ready` }
        : { type: "Ready", status: "False", reason: "InstancesNotReady", message: waiting.join("; ") },
      scaling || !allReady
        ? { type: "Progressing", status: "True", reason: scaling ? "Draining" : "RollingOut", message: scaling ? d.message : `waiting: ${waiting.join("; ")}` }
        : { type: "Progressing", status: "False", reason: "Reconciled", message: "all objects match the spec" },
      { type: "Degraded", status: "False", reason: "Reconciled", message: "the last reconcile succeeded" },
      { type: "Scaling", status: d.reason === "LoadUnknown" ? "Unknown" : "True", reason: d.reason, message: d.reason === "LoadUnknown" ? this.loadUnknownMessage(cr, d) : d.message },
    ];
    const status = this.status(cr, allReady ? (scaling ? "Scaling" : "Ready") : "Provisioning", conditions, d.replicas, ready);
    status.totalUsers = d.totalUsers;
    status.load = this.loadStatus(cr, d.replicas);
    const prevInstances = cr.status?.instances;
    if (prevInstances !== undefined && prevInstances !== d.replicas) status.lastScaleTime = this.now().toISOString().replace(/\.\d{3}Z$/, "Z");
    return status;
  }

  private loadUnknownMessage(cr: ChatPool, d: ScaleDecision): string {
    return this.monitor.connectionProblem(chatPoolKey(cr)) ?? d.message;
  }

  private loadStatus(cr: ChatPool, replicas: number): ChatPoolStatus["load"] {
    const reports: HeardReport[] = this.monitor.instances(chatPoolKey(cr)) ?? [];
    return reports
      .filter((r) => r.ordinal < replicas)
      .map((r) => ({ instance: r.instance, users: r.users, sessions: r.sessions, healthy: r.healthy, reportedAt: new Date(r.sentAtMs).toISOString().replace(/\.\d{3}Z$/, "Z") }));
  }

  private degradedStatus(cr: ChatPool, reason: string, message: string): ChatPoolStatus {
    const prev = cr.status?.conditions ?? [];
    const keep = (type: string, fallback: ConditionInput): ConditionInput => {
      const c = prev.find((p) => p.type === type);
      return c ? { type: c.type, status: c.status, reason: c.reason, message: c.message } : fallback;
    };
    const status = this.status(cr, "Degraded", [
      keep("Ready", { type: "Ready", status: "Unknown", reason: "ReconcileFailed", message }),
      { type: "Progressing", status: "True", reason, message },
      { type: "Degraded", status: "True", reason, message },
      keep("Scaling", { type: "Scaling", status: "Unknown", reason: "ReconcileFailed", message }),
    ], cr.status?.instances, cr.status?.readyInstances);
    return { ...status, totalUsers: cr.status?.totalUsers, load: cr.status?.load };
  }

  private pausedStatus(cr: ChatPool): ChatPoolStatus {
    const prev = (cr.status?.conditions ?? []).filter((c) => c.type !== "Progressing").map(({ type, status, reason, message }) => ({ type, status, reason, message }));
    const message = `annotation ${PAUSE_ANNOTATION}=true: the operator leaves this ChatPool and its objects alone`;
    const status = this.status(cr, "Paused", [...prev, { type: "Progressing", status: "False", reason: "Paused", message }], cr.status?.instances, cr.status?.readyInstances);
    return { ...status, totalUsers: cr.status?.totalUsers, load: cr.status?.load };
  }

  private status(cr: ChatPool, phase: string, conditions: ConditionInput[], instances: number | undefined, readyInstances: number | undefined): ChatPoolStatus {
    return {
      observedGeneration: cr.metadata.generation,
      phase,
      instances,
      readyInstances,
      selector: channelSelector(cr),
      lastScaleTime: cr.status?.lastScaleTime,
      conditions: mergeConditions(cr.status?.conditions, conditions, cr.metadata.generation, this.now()),
    };
  }

  private async writeStatus(cr: ChatPool, status: ChatPoolStatus): Promise<void> {
    if (sameJson(cr.status ?? {}, status)) return;
    await this.deps.kube.applyStatus(cr, status);
  }
}
