/**
 * One round of the reconcile benchmark: N custom resources of one kind applied
 * at once to a fresh namespace, then per resource apply → all owned objects
 * created, and apply → status Ready.
 *
 * - operatorRound: the operator (a process scoped to the namespace) does the
 *   work; the Observer sees the objects appear and the status turn Ready, and
 *   plays the workload controllers.
 * - baselineRound: no operator. The benchmark itself sends the requests one
 *   ideal reconcile would: after the same apply of all N resources, per
 *   resource the controller's reads, a server-side apply of each object the
 *   operator creates (same builders, same field manager), the rollout status
 *   (as the Observer patches it) and the Ready status — with as many resources
 *   in parallel as the operator has workers. The difference is the operator's
 *   own cost: watch delivery, queueing, the reconcile that runs before the
 *   rollout and the one after it, status comparisons.
 */
import { randomBytes } from "node:crypto";
import type { KubeClient } from "../../operator/kube/client.js";
import { resourcePath } from "../../operator/kube/client.js";
import { waitFor } from "../../test/support/wait.js";
import { LatencyRecorder, nowMs, type Percentiles } from "../support/stats.js";
import { applyAsUser, Observer, runOperator, type Cluster, type RunningOperator } from "./cluster.js";
import { rolledOutStatus, WORKLOADS, type CustomResource, type Kind, type Workload, type WorkloadOptions } from "./workloads.js";

export interface RoundOptions extends WorkloadOptions {
  /** Operator --workers, and the baseline's parallelism. */
  workers: number;
  /** Custom-resource applies in flight at once. */
  applyConcurrency: number;
  timeoutMs?: number;
}

export interface RoundResult {
  who: "operator" | "baseline";
  kind: Kind;
  count: number;
  objectsEach: number;
  created: Percentiles;
  ready: Percentiles;
  /** First apply → last resource Ready. */
  wallMs: number;
  notes: string[];
}

/** Runs fn over items with at most `limit` in flight. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

const names = (kind: Kind, count: number) => Array.from({ length: count }, (_, i) => `${kind === "RelayServer" ? "relay" : "pool"}-${i}`);
const freshNamespace = (cluster: Cluster, who: string, kind: Kind, count: number) => cluster.namespace(`bench-${who}-${kind.toLowerCase()}-${count}-${randomBytes(3).toString("hex")}`);
const defaultTimeout = (count: number) => Math.max(120_000, count * 600);

/** How many objects the operator creates per resource of this kind. */
export function objectsPerResource(w: Workload, opts: WorkloadOptions): number {
  const cr = w.resource("probe", "probe", opts);
  cr.metadata.uid = "00000000-0000-0000-0000-000000000000";
  return w.objects(cr).length;
}

function latencies(starts: Map<string, number>, ends: Map<string, number>): Percentiles {
  const rec = new LatencyRecorder(starts.size);
  for (const [name, start] of starts) {
    const end = ends.get(name);
    if (end !== undefined) rec.record(end - start);
  }
  return rec.percentiles();
}

async function applyAll(kube: KubeClient, w: Workload, ns: string, count: number, opts: RoundOptions): Promise<{ starts: Map<string, number>; created: Map<string, CustomResource> }> {
  const starts = new Map<string, number>();
  const created = new Map<string, CustomResource>();
  await forEachLimited(names(w.kind, count), opts.applyConcurrency, async (name) => {
    starts.set(name, nowMs());
    created.set(name, await applyAsUser<CustomResource>(kube, w.resource(name, ns, opts)));
  });
  return { starts, created };
}

/**
 * The operator converges `count` fresh resources. hooks.started runs once the
 * operator is ready and before the applies, hooks.converged once all are Ready
 * and before it stops (the memory section reads /proc in both).
 */
export async function operatorRound(
  cluster: Cluster,
  kind: Kind,
  count: number,
  opts: RoundOptions,
  hooks: { started?: (op: RunningOperator) => Promise<void>; converged?: (op: RunningOperator) => Promise<void> } = {},
): Promise<RoundResult> {
  const w = WORKLOADS[kind];
  const objectsEach = objectsPerResource(w, opts);
  const ns = await freshNamespace(cluster, "op", kind, count);
  await w.prepare(cluster.kube, ns);
  const observer = new Observer(cluster.kube, cluster.kubeConfig, ns, w, objectsEach);
  let op: RunningOperator | undefined;
  try {
    await observer.synced();
    op = await runOperator(cluster, ns, opts.workers);
    await hooks.started?.(op);
    const t0 = nowMs();
    const { starts } = await applyAll(cluster.kube, w, ns, count, opts);
    await waitFor(`${count} ${kind}s Ready`, () => observer.readyAt.size >= count && observer.createdAt.size >= count, opts.timeoutMs ?? defaultTimeout(count), 20).catch((err: Error) => {
      const warnings = op!.op.proc.output.split("\n").filter((l) => /"level":(40|50|"warn"|"error")/.test(l));
      throw new Error(`${err.message}: ${observer.createdAt.size} with all objects, ${observer.readyAt.size} Ready; the operator's last warnings:\n${warnings.slice(-5).join("\n")}`);
    });
    const wallMs = Math.max(...observer.readyAt.values()) - t0;
    // The counter moves just after the Ready status is written: read it once it has stopped moving.
    let reconciles = await op.reconciles(kind);
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const again = await op.reconciles(kind);
      if (again.success === reconciles.success && again.error === reconciles.error) break;
      reconciles = again;
    }
    const player = observer.playerLatency.percentiles();
    await hooks.converged?.(op);
    return {
      who: "operator",
      kind,
      count,
      objectsEach,
      created: latencies(starts, observer.createdAt),
      ready: latencies(starts, observer.readyAt),
      wallMs,
      notes: [
        `${reconciles.success} reconciles${reconciles.error ? `, ${reconciles.error} failed and retried` : ""} (${(reconciles.success / count).toFixed(1)} per resource)`,
        `rollout status played in p50 ${player.p50.toFixed(0)} / max ${player.max.toFixed(0)} ms after the workload appeared${observer.errors ? ` (${observer.errors} patch retries)` : ""}`,
      ],
    };
  } finally {
    await op?.stop();
    await observer.stop();
  }
}

/** The same object set, applied by the benchmark itself with the operator's parallelism (see the file comment). */
export async function baselineRound(cluster: Cluster, kind: Kind, count: number, opts: RoundOptions): Promise<RoundResult> {
  const w = WORKLOADS[kind];
  const { kube } = cluster;
  const ns = await freshNamespace(cluster, "base", kind, count);
  await w.prepare(kube, ns);
  const t0 = nowMs();
  const { starts, created } = await applyAll(kube, w, ns, count, opts);
  const createdAt = new Map<string, number>();
  const readyAt = new Map<string, number>();
  let objectsEach = 0;
  let requests = 0;
  await forEachLimited([...created.values()], opts.workers, async (cr) => {
    for (const path of w.reads(cr)) await kube.get(path), requests++;
    const objects = w.objects(cr);
    objectsEach = objects.length;
    const rollouts: Array<{ apiVersion: string; kind: string; applied: { metadata?: { generation?: number }; spec?: { replicas?: number } } }> = [];
    for (const obj of objects) {
      const applied = await kube.apply<{ metadata?: { generation?: number }; spec?: { replicas?: number } }>(obj);
      requests++;
      if (obj.kind === "Deployment" || obj.kind === "StatefulSet") rollouts.push({ apiVersion: obj.apiVersion, kind: obj.kind, applied });
    }
    createdAt.set(cr.metadata.name, nowMs());
    for (const r of rollouts) {
      await kube.request("PATCH", `${resourcePath(r.apiVersion, r.kind, ns, r.applied.metadata ? (r.applied as { metadata: { name: string } }).metadata.name : "")}/status`, { status: rolledOutStatus(r.applied) }, "application/merge-patch+json");
      requests++;
    }
    await kube.applyStatus(cr, w.readyStatus(cr));
    requests++;
    readyAt.set(cr.metadata.name, nowMs());
  });
  const wallMs = Math.max(...readyAt.values()) - t0;
  return {
    who: "baseline",
    kind,
    count,
    objectsEach,
    created: latencies(starts, createdAt),
    ready: latencies(starts, readyAt),
    wallMs,
    notes: [`${count} applies, then ${requests} requests (${(requests / count).toFixed(0)} per resource), ${opts.workers} resources at a time`],
  };
}
