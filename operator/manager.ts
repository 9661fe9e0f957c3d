/**
 * Runs the controllers while this replica leads: the watches (custom
 * resources, and everything the operator owns, selected by its managed-by
 * label), one work queue keyed "Kind/namespace/name", and a periodic resync.
 * An event on an owned object queues its owner, so drift is repaired by the
 * same reconcile that created the object.
 *
 *   const m = OperatorManager.start({ kube, kubeConfig, log, namespace: "", resyncMs: 600_000 });
 *   ...; await m.stop();
 */
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "../services/common/log.js";
import { API_VERSION, type ChatPool, type ComplianceSink, type RelayServer } from "./api/types.js";
import { ChatPoolController } from "./controllers/chatpool.js";
import { ComplianceSinkController } from "./controllers/compliancesink.js";
import { SinkPoolLinks } from "./controllers/sink-pools.js";
import { RelayServerController } from "./controllers/relayserver.js";
import { KubeApiError, resourcePath, type KubeClient } from "./kube/client.js";
import { WorkQueue } from "./kube/queue.js";
import { WatchSupervisor, type SupervisedWatch } from "./kube/watch.js";
import { managedObjects, queueDepth, reconcileDuration, reconcilesTotal, watchRestarts } from "./metrics.js";
import { MANAGED_BY_LABEL, MANAGER } from "./specs/meta.js";

export interface ManagerOptions {
  kube: KubeClient;
  kubeConfig: KubeConfig;
  log: Logger;
  /** "" watches every namespace. */
  namespace: string;
  resyncMs: number;
  workers?: number;
  maxWatchBackoffMs?: number;
}

/** Kinds the operator owns, watched so that drift queues the owner. */
const OWNED: Array<{ apiVersion: string; kind: string }> = [
  { apiVersion: "apps/v1", kind: "Deployment" },
  { apiVersion: "v1", kind: "Service" },
  { apiVersion: "v1", kind: "ConfigMap" },
  { apiVersion: "v1", kind: "Secret" },
  { apiVersion: "v1", kind: "ServiceAccount" },
  { apiVersion: "policy/v1", kind: "PodDisruptionBudget" },
  { apiVersion: "apps/v1", kind: "StatefulSet" },
  { apiVersion: "v1", kind: "PersistentVolumeClaim" },
];

const SERVICE_MONITOR_CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com";

export class OperatorManager {
  private readonly watches: WatchSupervisor;
  private readonly queue: WorkQueue;
  private readonly relayServers: SupervisedWatch<KubernetesObject>;
  private readonly owned: Array<{ kind: string; watch: SupervisedWatch<KubernetesObject> }> = [];
  private readonly relayController: RelayServerController;
  private readonly chatPools: SupervisedWatch<KubernetesObject>;
  private readonly chatController: ChatPoolController;
  private readonly sinks: SupervisedWatch<KubernetesObject>;
  private readonly sinkController: ComplianceSinkController;
  private readonly sinkPoolLinks = new SinkPoolLinks();
  private readonly timers: NodeJS.Timeout[] = [];
  private monitorsCache: { at: number; available: boolean } | undefined;

  private constructor(private readonly opts: ManagerOptions) {
    const { log } = opts;
    this.relayController = new RelayServerController({
      kube: opts.kube,
      log,
      serviceMonitorsAvailable: () => this.serviceMonitorsAvailable(),
      // Relay pairs poll their members' health, and a switchover queues the peer.
      requeue: (namespace, name, afterMs) => (afterMs > 0 ? this.queue.addAfter(`RelayServer/${namespace}/${name}`, afterMs) : this.queue.add(`RelayServer/${namespace}/${name}`)),
    });
    this.chatController = new ChatPoolController({ kube: opts.kube, log, serviceMonitorsAvailable: () => this.serviceMonitorsAvailable(), enqueue: (key) => this.queue.add(key) });
    this.sinkController = new ComplianceSinkController({ kube: opts.kube, log, serviceMonitorsAvailable: () => this.serviceMonitorsAvailable(), enqueue: (key) => this.queue.add(key) });
    this.queue = new WorkQueue((key) => this.process(key), {
      workers: opts.workers ?? 2,
      onResult: (key, result, err) => {
        if (result === "error") log.warn({ key, err: (err as Error).message }, "reconcile failed; retrying with backoff");
      },
    });
    this.watches = new WatchSupervisor({
      kubeConfig: opts.kubeConfig,
      client: opts.kube,
      log,
      maxBackoffMs: opts.maxWatchBackoffMs,
      onRestart: (watch) => watchRestarts.inc({ watch }),
    });
    this.relayServers = this.watches.watch("relayservers", resourcePath(API_VERSION, "RelayServer", opts.namespace), {}, (_type, obj) => this.queue.add(keyOf("RelayServer", obj)));
    this.chatPools = this.watches.watch("chatpools", resourcePath(API_VERSION, "ChatPool", opts.namespace), {}, (_type, obj) => this.queue.add(keyOf("ChatPool", obj)));
    // A sink naming pools changes their file pods (the archive folder): queue the namespace's pools too.
    this.sinks = this.watches.watch("compliancesinks", resourcePath(API_VERSION, "ComplianceSink", opts.namespace), {}, (type, obj) => {
      this.queue.add(keyOf("ComplianceSink", obj));
      if (!this.sinkPoolLinks.changed(type, obj as ComplianceSink)) return;
      for (const pool of this.chatPools.cache.list(obj.metadata?.namespace)) this.queue.add(keyOf("ChatPool", pool));
    });
    for (const { apiVersion, kind } of OWNED) {
      const watch = this.watches.watch(kind.toLowerCase(), resourcePath(apiVersion, kind, opts.namespace), { labelSelector: `${MANAGED_BY_LABEL}=${MANAGER}` }, (_type, obj) => {
        const owner = obj.metadata?.ownerReferences?.find((r) => r.controller && r.apiVersion === API_VERSION);
        if (owner && obj.metadata?.namespace) this.queue.add(`${owner.kind}/${obj.metadata.namespace}/${owner.name}`);
      });
      this.owned.push({ kind, watch });
    }
    // Level-triggered: a resync reconciles everything even if an event was missed.
    this.timers.push(setInterval(() => this.resync(), opts.resyncMs));
    this.timers.push(setInterval(() => this.updateGauges(), 1000));
    for (const t of this.timers) t.unref();
  }

  static start(opts: ManagerOptions): OperatorManager {
    return new OperatorManager(opts);
  }

  /** Ready once every watch has listed: the queue has seen every existing object. */
  get synced(): boolean {
    return this.watches.allSynced;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.watches.stop();
    await this.queue.stop();
    await this.chatController.close();
    this.sinkController.close();
  }

  private resync(): void {
    for (const obj of this.relayServers.cache.list()) this.queue.add(keyOf("RelayServer", obj));
    for (const obj of this.chatPools.cache.list()) this.queue.add(keyOf("ChatPool", obj));
    for (const obj of this.sinks.cache.list()) this.queue.add(keyOf("ComplianceSink", obj));
  }

  private updateGauges(): void {
    queueDepth.set(this.queue.length);
    for (const { kind, watch } of this.owned) managedObjects.set({ kind }, watch.cache.list().length);
  }

  private async process(key: string): Promise<void> {
    const [kind, namespace, name] = key.split("/") as [string, string, string];
    const end = reconcileDuration.startTimer({ kind });
    try {
      if (kind === "ChatPool") return void (await this.processChatPool(key, namespace, name));
      if (kind === "ComplianceSink") return void (await this.processSink(key, namespace, name));
      if (kind !== "RelayServer") return;
      // Fresh from the API, not the cache: the status we wrote last must be the one we compare with.
      const cr = await this.opts.kube.get<RelayServer>(resourcePath(API_VERSION, kind, namespace, name));
      if (!cr) return; // deleted: its objects follow through owner references
      const result = await this.relayController.reconcile(cr);
      reconcilesTotal.inc({ kind, result });
    } catch (err) {
      reconcilesTotal.inc({ kind, result: "error" });
      throw err;
    } finally {
      end();
    }
  }

  private async processChatPool(key: string, namespace: string, name: string): Promise<void> {
    const cr = await this.opts.kube.get<ChatPool>(resourcePath(API_VERSION, "ChatPool", namespace, name));
    if (!cr) return this.chatController.forget(key);
    reconcilesTotal.inc({ kind: "ChatPool", result: await this.chatController.reconcile(cr) });
  }

  private async processSink(key: string, namespace: string, name: string): Promise<void> {
    const cr = await this.opts.kube.get<ComplianceSink>(resourcePath(API_VERSION, "ComplianceSink", namespace, name));
    if (!cr) return this.sinkController.forget(key);
    reconcilesTotal.inc({ kind: "ComplianceSink", result: await this.sinkController.reconcile(cr) });
  }

  private async serviceMonitorsAvailable(): Promise<boolean> {
    if (this.monitorsCache && Date.now() - this.monitorsCache.at < 60_000) return this.monitorsCache.available;
    try {
      const available = (await this.opts.kube.get(SERVICE_MONITOR_CRD)) !== undefined;
      this.monitorsCache = { at: Date.now(), available };
      return available;
    } catch (err) {
      // Forbidden: the operator may not read CRDs; then it does not create monitors.
      if (err instanceof KubeApiError && err.status === 403) return false;
      throw err;
    }
  }
}

const keyOf = (kind: string, obj: KubernetesObject) => `${kind}/${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
