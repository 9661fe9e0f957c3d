/**
 * The operator benchmark's world: one real etcd + kube-apiserver (test/support's
 * control plane, CRDs installed), the operator as a process scoped to one
 * namespace, and an Observer that watches a namespace the way a user would
 * (custom resources until Ready, owned objects as they appear) while playing
 * the Deployment/StatefulSet controllers and kubelets, which this control
 * plane does not have: every Deployment or StatefulSet is marked rolled out
 * (status patched: all replicas ready) as soon as it appears or changes —
 * what test/operator does by hand. The time that took is measured, so it can
 * be told apart from the operator's.
 */
import { readFileSync } from "node:fs";
import { KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import { API_VERSION } from "../../operator/api/types.js";
import { KubeClient, resourcePath } from "../../operator/kube/client.js";
import { WatchSupervisor } from "../../operator/kube/watch.js";
import { INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER } from "../../operator/specs/meta.js";
import { logger } from "../../services/common/log.js";
import { startControlPlane, type ControlPlane } from "../../test/support/controlplane.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../../test/support/operator.js";
import { waitFor } from "../../test/support/wait.js";
import { LatencyRecorder, MiB, nowMs } from "../support/stats.js";
import { isReady, isRolledOut, rolledOutStatus, type Workload } from "./workloads.js";

export const BENCH_FIELD_MANAGER = "parley-bench";

export interface Cluster {
  cp: ControlPlane;
  kube: KubeClient;
  kubeConfig: KubeConfig;
  /** Creates a namespace (unique names: each round gets a fresh one). */
  namespace(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** Operator processes still running: stop() ends them too (an interrupted run). */
const operators = new Set<OperatorProcess>();

export async function startCluster(): Promise<Cluster> {
  // A /16 for Services: the test default (/24) holds 254 ClusterIPs, fewer than 500 RelayServers need.
  const cp = await startControlPlane({ apiserverArgs: ["--service-cluster-ip-range=10.96.0.0/16"] });
  try {
    await cp.kubectl(["apply", "-f", CRDS_DIR]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/relayservers.parley.dev", "crd/chatpools.parley.dev", "--timeout=60s"]);
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(cp.kubeconfig);
    const kube = await KubeClient.fromKubeConfig(kubeConfig, 60_000);
    // The CRDs are served once discovery lists them; the first apply would 404 before.
    await waitFor("parley.dev served", async () => (await kube.list(resourcePath(API_VERSION, "RelayServer", "default")).catch(() => undefined)) !== undefined, 30_000, 200);
    return {
      cp,
      kube,
      kubeConfig,
      async namespace(name) {
        await kube.request("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
        return name;
      },
      async stop() {
        for (const op of operators) await op.proc.stop("SIGKILL").catch(() => {});
        await cp.stop();
      },
    };
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

/** Server-side apply under the benchmark's own field manager (a user's `kubectl apply --server-side`). */
export function applyAsUser<T = KubernetesObject>(kube: KubeClient, obj: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): Promise<T> {
  return kube.request<T>("PATCH", `${resourcePath(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name)}?fieldManager=${BENCH_FIELD_MANAGER}&force=true`, obj, "application/apply-patch+yaml");
}

export interface Memory {
  rssMiB: number;
  hwmMiB: number;
}

/** VmRSS and VmHWM (peak RSS) of a process, from /proc. */
export function readMemory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMiB: (kib("VmRSS") * 1024) / MiB, hwmMiB: (kib("VmHWM") * 1024) / MiB };
}

export interface RunningOperator {
  op: OperatorProcess;
  pid: number;
  /** Sum of parley_operator_reconciles_total for a kind, by result. */
  reconciles(kind: string): Promise<{ success: number; error: number }>;
  stop(): Promise<void>;
}

/** `parley operator` reconciling one namespace, no leader election (a single replica: nothing to wait for). */
export async function runOperator(cluster: Cluster, namespace: string, workers: number): Promise<RunningOperator> {
  const op = await startOperator(cluster.cp, ["--namespace", namespace, "--leader-elect=false", "--workers", String(workers)]);
  operators.add(op);
  await waitFor("operator ready (watches listed)", async () => (await op.http("/readyz")).status === 200, 30_000, 50);
  return {
    op,
    pid: op.proc.child.pid!,
    async reconciles(kind) {
      return {
        success: await op.metric("parley_operator_reconciles_total", { kind, result: "success" }),
        error: await op.metric("parley_operator_reconciles_total", { kind, result: "error" }),
      };
    },
    async stop() {
      await op.proc.stop("SIGTERM").catch(() => op.proc.stop("SIGKILL"));
      operators.delete(op);
    },
  };
}

/**
 * Watches one namespace: when each custom resource of a workload became Ready,
 * when the last of its owned objects appeared, and plays the workload
 * controllers (see the file comment).
 */
export class Observer {
  readonly createdAt = new Map<string, number>();
  readonly readyAt = new Map<string, number>();
  /** Deployment/StatefulSet first seen in a state not rolled out → its status patch answered. */
  readonly playerLatency = new LatencyRecorder();
  private readonly seen = new Map<string, Set<string>>();
  private readonly patching = new Set<string>();
  private readonly firstSeen = new Map<string, number>();
  private readonly supervisor: WatchSupervisor;
  private playerErrors = 0;
  private stopped = false;

  constructor(private readonly kube: KubeClient, kubeConfig: KubeConfig, private readonly namespace: string, workload: Workload, private readonly objectsPerResource: number) {
    const log = logger("bench-observer");
    this.supervisor = new WatchSupervisor({ kubeConfig, client: kube, log });
    this.supervisor.watch(workload.kind.toLowerCase(), resourcePath(API_VERSION, workload.kind, namespace), {}, (type, cr) => {
      const name = cr.metadata?.name;
      if (type !== "delete" && name && !this.readyAt.has(name) && isReady(cr as never)) this.readyAt.set(name, nowMs());
    });
    for (const { apiVersion, kind } of workload.ownedKinds) {
      this.supervisor.watch(kind.toLowerCase(), resourcePath(apiVersion, kind, namespace), { labelSelector: `${MANAGED_BY_LABEL}=${MANAGER}` }, (type, obj) => {
        if (type === "delete") return;
        this.owned(kind, obj);
        if (kind === "Deployment" || kind === "StatefulSet") this.play(apiVersion, kind, obj);
      });
    }
  }

  async synced(): Promise<void> {
    await waitFor("observer watches listed", () => this.supervisor.allSynced, 30_000, 20);
  }

  get errors(): number {
    return this.playerErrors;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.supervisor.stop();
  }

  private owned(kind: string, obj: KubernetesObject): void {
    const instance = obj.metadata?.labels?.[INSTANCE_LABEL];
    if (!instance || this.createdAt.has(instance)) return;
    let names = this.seen.get(instance);
    if (!names) this.seen.set(instance, (names = new Set()));
    names.add(`${kind}/${obj.metadata!.name}`);
    if (names.size >= this.objectsPerResource) this.createdAt.set(instance, nowMs());
  }

  private play(apiVersion: string, kind: string, obj: KubernetesObject): void {
    const o = obj as KubernetesObject & { spec?: { replicas?: number }; status?: { observedGeneration?: number; readyReplicas?: number } };
    const name = o.metadata!.name!;
    const key = `${kind}/${name}/${o.metadata?.generation}`;
    if (isRolledOut(o) || this.patching.has(key)) return;
    this.patching.add(key);
    const t0 = this.firstSeen.get(key) ?? nowMs();
    this.firstSeen.set(key, t0);
    const path = `${resourcePath(apiVersion, kind, this.namespace, name)}/status`;
    this.kube
      .request("PATCH", path, { status: rolledOutStatus(o) }, "application/merge-patch+json")
      .then(() => this.playerLatency.recordSince(t0))
      .catch(() => {
        // Throttled or conflicting: try again from a fresh read (no further event may come for it).
        this.playerErrors++;
        this.patching.delete(key);
        setTimeout(() => {
          if (this.stopped) return;
          this.kube.get<KubernetesObject>(resourcePath(apiVersion, kind, this.namespace, name)).then((fresh) => fresh && this.play(apiVersion, kind, fresh), () => this.play(apiVersion, kind, obj));
        }, 200);
      });
  }
}
