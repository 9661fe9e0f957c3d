// The operator benchmark, with its baseline in the same run, against a real
// etcd + kube-apiserver (test/support/controlplane.ts; no scheduler, kubelets
// or controller-manager: the benchmark plays the Deployment/StatefulSet
// controllers by patching their status to rolled out the moment they appear,
// as test/operator does, and reports how long that took).
//
//   npm run build && PARLEY_CONTROLPLANE_DIR=... node dist/bench/operator/main.js
//   BENCH_QUICK=1 node dist/bench/operator/main.js     (a trial: 1 and 10 resources, memory with 50)
//
// Sections (BENCH_SECTIONS, comma-separated; default all three):
//   reconcile  per kind (RelayServer, ChatPool) and count (1, 100): all resources
//              applied at once to a fresh namespace; per resource apply → all
//              owned objects created and apply → status Ready (p50/p99/max), and
//              the wall time to the last Ready. Baseline: the same object set
//              applied by the benchmark itself, no operator (reconcile.ts).
//   memory     the operator's RSS and VmHWM (/proc) idle with no resources, then
//              with BENCH_MEMORY_RESOURCES (500) RelayServers converged and idle
//              for BENCH_IDLE_SECONDS; the time to converge them, and the baseline's.
//   switchover kubectl-driven switchover and automatic failover of a relay pair
//              (real `parley relay` processes on the local Postgres + NATS):
//              request → status.currentPrimary, → the Service selects the new
//              primary; median and max over trials (switchover.ts).
//
// Environment (all optional): BENCH_KINDS=RelayServer,ChatPool BENCH_COUNTS=1,100
// BENCH_MEMORY_RESOURCES=500 BENCH_IDLE_SECONDS=10 BENCH_WORKERS=2 (operator
// --workers = baseline parallelism) BENCH_APPLY_CONCURRENCY=50 BENCH_TIMEOUT_MS
// (per round) BENCH_NATS_URL=nats://127.0.0.1:4222 (ChatPools' load reports)
// BENCH_SWITCHOVER_TRIALS=10 BENCH_FAILOVER_TRIALS=10 BENCH_FAILOVER_DELAY_SECONDS=3
// BENCH_SWITCHOVER_DELAY=2s; PARLEY_TEST_PG_URL / PARLEY_TEST_NATS_URL (the relays').
// BENCH_QUICK=1 (3 switchover and 2 failover trials) BENCH_WRITE_RESULTS=0 (skip bench/RESULTS.md).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { readMemory, startCluster, type Cluster, type Memory, type RunningOperator } from "./cluster.js";
import { baselineRound, operatorRound, type RoundOptions, type RoundResult } from "./reconcile.js";
import { runSwitchover, switchoverLines } from "./switchover.js";
import { KINDS, type Kind } from "./workloads.js";
import { envInt, envList } from "../support/env.js";

const SECTIONS = ["reconcile", "memory", "switchover"] as const;
type Section = (typeof SECTIONS)[number];

function config() {
  const quick = process.env.BENCH_QUICK === "1";
  const counts = (process.env.BENCH_COUNTS || (quick ? "1,10" : "1,100")).split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_COUNTS: ${JSON.stringify(s)} is not a positive integer`);
    return n;
  });
  return {
    quick,
    sections: envList<Section>("BENCH_SECTIONS", SECTIONS, SECTIONS),
    kinds: envList<Kind>("BENCH_KINDS", KINDS, KINDS),
    counts,
    memoryResources: envInt("BENCH_MEMORY_RESOURCES", quick ? 50 : 500),
    idleSeconds: envInt("BENCH_IDLE_SECONDS", quick ? 3 : 10, 0),
    round: {
      workers: envInt("BENCH_WORKERS", 2),
      applyConcurrency: envInt("BENCH_APPLY_CONCURRENCY", 50),
      natsUrl: process.env.BENCH_NATS_URL || "nats://127.0.0.1:4222",
      ...(process.env.BENCH_TIMEOUT_MS ? { timeoutMs: envInt("BENCH_TIMEOUT_MS", 0) } : {}),
    } satisfies RoundOptions,
    switchover: {
      switchoverTrials: envInt("BENCH_SWITCHOVER_TRIALS", quick ? 3 : 10, 0),
      failoverTrials: envInt("BENCH_FAILOVER_TRIALS", quick ? 2 : 10, 0),
      failoverDelaySeconds: envInt("BENCH_FAILOVER_DELAY_SECONDS", 3),
      switchoverDelay: process.env.BENCH_SWITCHOVER_DELAY || "2s",
      workers: envInt("BENCH_WORKERS", 2),
    },
    writeResults: process.env.BENCH_WRITE_RESULTS !== "0",
    resultsFile: fileURLToPath(new URL("../../../bench/RESULTS.md", import.meta.url)),
  };
}
type Config = ReturnType<typeof config>;

const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
const trio = (p: { p50: number; p99: number; max: number }) => `${ms(p.p50)} / ${ms(p.p99)} / ${ms(p.max)}`;

function reconcileTable(rows: RoundResult[]): string[] {
  return [
    "| workload | by | resources | objects each | apply → objects created ms (p50 / p99 / max) | apply → Ready ms (p50 / p99 / max) | wall s | notes |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ...rows.map((r) => `| ${r.kind} × ${r.count} | ${r.who} | ${r.count} | ${r.objectsEach} | ${trio(r.created)} | ${trio(r.ready)} | ${(r.wallMs / 1000).toFixed(2)} | ${r.notes.join("; ")} |`),
  ];
}

async function reconcileSection(cluster: Cluster, c: Config): Promise<string[]> {
  const rows: RoundResult[] = [];
  for (const kind of c.kinds) {
    for (const count of c.counts) {
      for (const round of [operatorRound, baselineRound] as const) {
        const r = await round(cluster, kind, count, c.round);
        console.log(JSON.stringify({ ...r, created: undefined, ready: undefined, createdMs: trio(r.created), readyMs: trio(r.ready) }));
        rows.push(r);
      }
    }
  }
  return [
    `**Reconcile latency.** All resources of a row applied at once (server-side apply, ${c.round.applyConcurrency} in flight) to a fresh namespace; operator \`--workers ${c.round.workers}\`; the baseline applies the same objects with ${c.round.workers} resources at a time.`,
    "",
    ...reconcileTable(rows),
  ];
}

async function memorySection(cluster: Cluster, c: Config): Promise<string[]> {
  let empty: (Memory & { heapMiB: number }) | undefined;
  let idle: (Memory & { heapMiB: number }) | undefined;
  // Live JS heap from the operator's own /metrics (prom-client's default metrics), to tell retained objects from RSS the heap has not returned.
  const heap = async (o: RunningOperator) => (await o.op.metric("parley_nodejs_heap_size_used_bytes")) / (1024 * 1024);
  const n = c.memoryResources;
  const op = await operatorRound(cluster, "RelayServer", n, c.round, {
    started: async (o) => void (empty = { ...readMemory(o.pid), heapMiB: await heap(o) }),
    converged: async (o) => {
      await sleep(c.idleSeconds * 1000);
      idle = { ...readMemory(o.pid), heapMiB: await heap(o) };
    },
  });
  console.log(JSON.stringify({ memory: { empty, idle }, wallMs: op.wallMs }));
  const base = await baselineRound(cluster, "RelayServer", n, c.round);
  const mib = (m: number | undefined) => (m === undefined || !Number.isFinite(m) ? "-" : m.toFixed(1));
  return [
    `**Operator memory with ${n} RelayServers** (${n * op.objectsEach} owned objects; the operator caches its custom resources and the owned Deployments, Services, ConfigMaps, Secrets, ServiceAccounts, PDBs, StatefulSets and PVCs).`,
    "",
    "| operator state | RSS MiB | VmHWM MiB (peak so far) | JS heap used MiB |",
    "| --- | ---: | ---: | ---: |",
    `| started, watches listed, no resources | ${mib(empty?.rssMiB)} | ${mib(empty?.hwmMiB)} | ${mib(empty?.heapMiB)} |`,
    `| ${n} RelayServers converged, then idle ${c.idleSeconds} s | ${mib(idle?.rssMiB)} | ${mib(idle?.hwmMiB)} | ${mib(idle?.heapMiB)} |`,
    "",
    `Converging ${n} RelayServers applied at once: ${(op.wallMs / 1000).toFixed(1)} s by the operator (apply → Ready p50 ${ms(op.ready.p50)} ms, max ${ms(op.ready.max)} ms; ${op.notes.join("; ")}); baseline, the same objects applied by the benchmark: ${(base.wallMs / 1000).toFixed(1)} s (${base.notes.join("; ")}).`,
  ];
}

async function switchoverSection(cluster: Cluster, c: Config): Promise<string[]> {
  const r = await runSwitchover(cluster, c.switchover);
  console.log(JSON.stringify(r));
  return switchoverLines(r, c.switchover);
}

function command(): string {
  const vars = Object.keys(process.env)
    .filter((k) => k.startsWith("BENCH_"))
    .sort()
    .map((k) => `${k}=${process.env[k]}`);
  return [...vars, "node dist/bench/operator/main.js"].join(" ");
}

function writeResults(file: string, body: string[]): void {
  const begin = "<!-- bench:operator:begin -->";
  const end = "<!-- bench:operator:end -->";
  const section = [begin, "## Operator (bench/operator)", "", ...body, end].join("\n");
  const current = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmark results\n";
  const i = current.indexOf(begin);
  const j = current.indexOf(end);
  writeFileSync(file, i >= 0 && j > i ? current.slice(0, i) + section + current.slice(j + end.length) : `${current.trimEnd()}\n\n${section}\n`);
}

async function main(): Promise<void> {
  const c = config();
  const load0 = os.loadavg()[0]!;
  const started = new Date();
  const cluster = await startCluster();
  // Ctrl-C: stop the control plane and the operator rather than leave them running.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void cluster.stop().finally(() => process.exit(130)));
  }
  const out: string[] = [];
  try {
    const sections: Record<Section, () => Promise<string[]>> = {
      reconcile: () => reconcileSection(cluster, c),
      memory: () => memorySection(cluster, c),
      switchover: () => switchoverSection(cluster, c),
    };
    for (const s of c.sections) out.push(...(await sections[s]()), "");
  } finally {
    await cluster.stop();
  }
  const header = [
    `- Date: ${started.toISOString()}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), Node ${process.versions.node}; one etcd + kube-apiserver (${process.env.PARLEY_CONTROLPLANE_DIR ?? "scripts/ensure-controlplane.sh"}), the operator as a \`parley operator\` process, all on this machine; load average ${load0.toFixed(1)} at start, ${os.loadavg()[0]!.toFixed(1)} at end${c.quick ? "; **quick mode** (trial scale)" : ""}`,
    `- Command: \`npm run build && ${command()}\``,
    "- Pods: there are no kubelets or scheduler; the benchmark plays the Deployment/StatefulSet controllers by patching each workload's status to fully rolled out as soon as it appears (as test/operator does). The notes say how long that took; it is inside the operator's figures.",
    "- Reading: *objects created* = apply → the last of the resource's owned objects seen by a watch; *Ready* = apply → status phase Ready at the applied generation. The operator needs two reconciles per resource (one creates everything and reports Provisioning; the rollout's status change queues the second, which reports Ready); the baseline is one ideal pass with the same requests and parallelism, so the gap is watch delivery, queueing and the second pass. Wall time = first apply → last Ready.",
    ...(c.quick ? ["- **Trial figures** (BENCH_QUICK=1, on a machine shared with other work): they show the benchmark works, not how fast the operator is. Final figures: the default scale on a quiet machine."] : []),
    "",
  ];
  const body = [...header, ...out];
  console.log(body.join("\n"));
  if (c.writeResults) writeResults(c.resultsFile, body);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
