/**
 * Relay pair switchover and automatic failover, timed: a RelayServer pair
 * (east primary, west secondary) whose relays are real `parley relay`
 * processes on the local Postgres + NATS (test/support's ReplicaSet), reached
 * by the operator through the parley.dev/admin-address annotation, as in
 * test/operator/failover.test.ts. The benchmark plays the deployment
 * controller (Deployment status).
 *
 * - Switchover trial: the request `kubectl patch relayserver east
 *   --subresource=status --type=merge -p '{"status":{"targetPrimary":…}}'`
 *   sends (sent here directly, so kubectl's start-up is not counted) →
 *   status.currentPrimary names the target, and → the client Service selects
 *   it. Trials alternate direction.
 * - Failover trial: the primary's Deployment reported with 0 ready replicas →
 *   the same two moments; the figure includes failoverDelay (and the pair
 *   poll, failoverDelay/3), so it is also given minus failoverDelay. Between
 *   trials the old primary is reported ready again and the pair settles (it
 *   rejoins as secondary) before the next one.
 */
import { RelayAdmin } from "../../client/admin.js";
import { ReplicaRole } from "../../generated/parley/v1/relay.js";
import type { RelayServer } from "../../operator/api/types.js";
import { API_VERSION } from "../../operator/api/types.js";
import { resourcePath } from "../../operator/kube/client.js";
import { Harness, unique } from "../../test/support/harness.js";
import { relayPair } from "../../test/support/relay-pair.js";
import { ADMIN_TOKEN, ReplicaSet } from "../../test/support/relay-replicas.js";
import { waitFor } from "../../test/support/wait.js";
import { nowMs } from "../support/stats.js";
import { runOperator, type Cluster } from "./cluster.js";

export interface SwitchoverOptions {
  switchoverTrials: number;
  failoverTrials: number;
  failoverDelaySeconds: number;
  switchoverDelay: string;
  workers: number;
}

export interface Timed {
  /** Request → status.currentPrimary names the target (ms). */
  toStatus: number[];
  /** Request → the client Service selects the target (ms). */
  toService: number[];
  failures: string[];
  /** The Switchover condition's message after each trial (digits masked), counted: says whether the demote answered. */
  outcomes: Record<string, number>;
}

export interface SwitchoverResult {
  switchover: Timed;
  failover: Timed;
}

const SETTLE_MS = 60_000;

export async function runSwitchover(cluster: Cluster, opts: SwitchoverOptions): Promise<SwitchoverResult> {
  const h = new Harness();
  const { kube } = cluster;
  const ns = await cluster.namespace(unique("bench-ha"));
  const result: SwitchoverResult = { switchover: { toStatus: [], toService: [], failures: [], outcomes: {} }, failover: { toStatus: [], toService: [], failures: [], outcomes: {} } };
  let stopOperator: (() => Promise<void>) | undefined;
  try {
    const set = new ReplicaSet(h, unique("benchha"));
    await set.fresh();
    const relays = { east: await set.process("east", "primary"), west: await set.process("west", "secondary") };
    const admin = { east: RelayAdmin.create(relays.east.address, ADMIN_TOKEN), west: RelayAdmin.create(relays.west.address, ADMIN_TOKEN) };
    h.defer(() => (admin.east.close(), admin.west.close()));
    const op = await runOperator(cluster, ns, opts.workers);
    stopOperator = () => op.stop();
    const pair = relayPair(cluster.cp, ns);
    await pair.create({ primary: ["east", relays.east.address], secondary: ["west", relays.west.address], failoverDelay: `${opts.failoverDelaySeconds}s`, switchoverDelay: opts.switchoverDelay, relayId: set.relayId });

    const eastPath = resourcePath(API_VERSION, "RelayServer", ns, "east");
    const deploymentPath = (name: string) => resourcePath("apps/v1", "Deployment", ns, name);
    const setReady = async (name: "east" | "west", ready: number) => {
      const d = await waitFor(`Deployment ${name}`, () => kube.get<{ metadata: { generation: number }; spec: { replicas: number } }>(deploymentPath(name)), 20_000, 50);
      const n = d.spec.replicas;
      const status = { observedGeneration: d.metadata.generation, replicas: n, updatedReplicas: n, readyReplicas: ready, availableReplicas: ready };
      await kube.request("PATCH", `${deploymentPath(name)}/status`, { status }, "application/merge-patch+json");
    };
    const east = async () => (await kube.get<RelayServer>(eastPath))!;
    const selector = async () => (await kube.get<{ spec: { selector: Record<string, string> } }>(resourcePath("v1", "Service", ns, "east")))?.spec.selector["app.kubernetes.io/instance"];
    const condition = (cr: RelayServer, type: string) => cr.status?.conditions?.find((c) => c.type === type);
    /** A pair at rest with `primary` serving: nothing under way, the primary healthy, the other a caught-up secondary. */
    const settled = (primary: "east" | "west") =>
      waitFor(`pair at rest with ${primary} primary`, async () => {
        const cr = await east();
        const other = primary === "east" ? "west" : "east";
        return (
          cr.status?.currentPrimary === primary &&
          ["Idle", "Completed"].includes(condition(cr, "Switchover")?.reason ?? "") &&
          condition(cr, "PrimaryHealthy")?.status === "True" &&
          (await selector()) === primary &&
          (await admin[primary].replicationStatus()).role === ReplicaRole.REPLICA_ROLE_PRIMARY &&
          (await admin[other].replicationStatus()).role === ReplicaRole.REPLICA_ROLE_SECONDARY
        );
      }, SETTLE_MS, 50);
    /** From t0 until status and Service both name `target`; polls both every few ms. */
    const timeUntil = async (target: string, t0: number, into: Timed, what: string) => {
      let toStatus: number | undefined;
      let toService: number | undefined;
      await waitFor(what, async () => {
        if (toStatus === undefined && (await east()).status?.currentPrimary === target) toStatus = nowMs() - t0;
        if (toService === undefined && (await selector()) === target) toService = nowMs() - t0;
        return toStatus !== undefined && toService !== undefined;
      }, SETTLE_MS, 5);
      into.toStatus.push(toStatus!);
      into.toService.push(toService!);
      const message = (condition(await east(), "Switchover")?.message ?? "(no Switchover condition)").replace(/\d+/g, "N");
      into.outcomes[message] = (into.outcomes[message] ?? 0) + 1;
    };

    await setReady("east", 1);
    await setReady("west", 1);
    let primary: "east" | "west" = "east";
    await settled(primary);

    for (let i = 0; i < opts.switchoverTrials; i++) {
      const target: "east" | "west" = primary === "east" ? "west" : "east";
      try {
        const t0 = nowMs();
        await kube.request("PATCH", `${eastPath}/status`, { status: { targetPrimary: target } }, "application/merge-patch+json");
        await timeUntil(target, t0, result.switchover, `switchover ${i + 1} to ${target}`);
        primary = target;
        await settled(primary);
      } catch (err) {
        result.switchover.failures.push(`trial ${i + 1}: ${(err as Error).message}`);
        break;
      }
    }

    for (let i = 0; i < opts.failoverTrials; i++) {
      const from: "east" | "west" = primary;
      const target: "east" | "west" = from === "east" ? "west" : "east";
      try {
        const t0 = nowMs();
        await setReady(from, 0);
        await timeUntil(target, t0, result.failover, `failover ${i + 1} to ${target}`);
        primary = target;
        await setReady(from, 1);
        await settled(primary);
      } catch (err) {
        result.failover.failures.push(`trial ${i + 1}: ${(err as Error).message}`);
        break;
      }
    }
    return result;
  } finally {
    await stopOperator?.();
    await h.cleanup();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};
const outcomes = (t: Timed) => Object.entries(t.outcomes).map(([m, n]) => `${n} × "${m}"`).join(", ") || "-";
const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");

export function switchoverLines(r: SwitchoverResult, opts: SwitchoverOptions): string[] {
  const delayMs = opts.failoverDelaySeconds * 1000;
  const row = (what: string, t: Timed, minus = 0) =>
    `| ${what} | ${t.toStatus.length} | ${fmt(median(t.toStatus) - minus)} / ${fmt(Math.max(...t.toStatus) - minus)} | ${fmt(median(t.toService) - minus)} / ${fmt(Math.max(...t.toService) - minus)} | ${t.failures.join("; ") || "-"} |`;
  return [
    `**Relay switchover and automatic failover** (one pair, real \`parley relay\` processes on local Postgres + NATS; failoverDelay ${opts.failoverDelaySeconds}s, switchoverDelay ${opts.switchoverDelay}; trials alternate direction, each starting from a pair at rest).`,
    "",
    "| trial | trials | → status.currentPrimary ms (median / max) | → Service selects it ms (median / max) | failures |",
    "| --- | ---: | ---: | ---: | --- |",
    row("kubectl switchover (status.targetPrimary patched)", r.switchover),
    row("automatic failover (primary's Deployment 0 ready), total", r.failover),
    row(`automatic failover, minus failoverDelay (${opts.failoverDelaySeconds} s)`, r.failover, delayMs),
    "",
    `Switchover condition after each trial (digits as N): switchovers ${outcomes(r.switchover)}; failovers ${outcomes(r.failover)}.`,
  ];
}
