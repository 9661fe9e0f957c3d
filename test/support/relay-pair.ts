/**
 * A RelayServer pair against a test control plane whose relays run on this
 * machine: the RelayServers carry `parley.dev/admin-address` (the operator
 * reaches the relays there) and `<name>-admin` Secrets with the test admin
 * token; the test plays the deployment controller (Deployment status).
 *
 *   const pair = relayPair(cp, "ops");
 *   await pair.create({ primary: ["east", a.address], secondary: ["west", b.address], failoverDelay: "3s" });
 *   await pair.markReady("east", 1);  await pair.status("east");  await pair.events("east");
 */
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RelayServer } from "../../operator/api/types.js";
import type { ControlPlane } from "./controlplane.js";
import { ADMIN_TOKEN } from "./relay-replicas.js";
import { waitFor } from "./wait.js";

/** bin/ in the repository (this file runs from dist/test/support). */
export const PLUGIN_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "bin");

export interface PairSpec {
  primary: [name: string, adminAddress: string];
  secondary: [name: string, adminAddress: string];
  failoverDelay?: string;
  switchoverDelay?: string;
  relayId?: string;
}

export interface EventSummary {
  reason: string;
  type: string;
  note: string;
  eventTime: string;
}

export function relayPair(cp: ControlPlane, namespace: string) {
  const getJson = async <T = any>(...args: string[]): Promise<T> => JSON.parse(await cp.kubectl(["get", ...args, "-n", namespace, "-o", "json"])) as T;
  const apply = (obj: unknown) => cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(obj) });
  const relay = (name: string, address: string, spec: Record<string, unknown>) => ({
    apiVersion: "parley.dev/v1alpha1",
    kind: "RelayServer",
    metadata: { name, namespace, annotations: { "parley.dev/admin-address": address } },
    spec: { database: { secretRef: { name: `${name}-db` } }, ...spec },
  });
  return {
    getJson,
    async create(p: PairSpec): Promise<void> {
      for (const [name] of [p.primary, p.secondary]) {
        // Brought by the test: the operator keeps an existing admin token (the relays run with it).
        await apply({ apiVersion: "v1", kind: "Secret", metadata: { name: `${name}-admin`, namespace }, stringData: { token: ADMIN_TOKEN } });
      }
      const common = { ...(p.relayId ? { relayId: p.relayId } : {}), failoverDelay: p.failoverDelay ?? "3s", switchoverDelay: p.switchoverDelay ?? "2s" };
      await apply(relay(p.secondary[0], p.secondary[1], { ...common, role: "secondary" }));
      await apply(relay(p.primary[0], p.primary[1], { ...common, role: "primary", secondary: p.secondary[0] }));
    },
    /** Plays the deployment controller and kubelet: `ready` of the desired replicas ready. */
    async markReady(name: string, ready: number): Promise<void> {
      const d = await waitFor(`Deployment ${name}`, () => getJson("deployment", name).catch(() => undefined), 20_000, 100);
      const n = d.spec.replicas;
      const status = { observedGeneration: d.metadata.generation, replicas: n, updatedReplicas: n, readyReplicas: ready, availableReplicas: ready };
      await cp.kubectl(["patch", "deployment", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status })]);
    },
    status: async (name: string) => (await getJson<RelayServer>("relayserver", name)).status ?? {},
    condition: async (name: string, type: string) => (await getJson<RelayServer>("relayserver", name)).status?.conditions?.find((c) => c.type === type),
    selectorOf: async (service: string) => (await getJson("service", service)).spec.selector["app.kubernetes.io/instance"] as string,
    async events(name: string): Promise<EventSummary[]> {
      const list = await getJson<{ items: any[] }>("events.events.k8s.io");
      return list.items
        .filter((e) => e.regarding?.name === name && e.regarding?.kind === "RelayServer")
        .map((e) => ({ reason: e.reason, type: e.type, note: e.note, eventTime: e.eventTime }))
        .sort((a, b) => a.eventTime.localeCompare(b.eventTime));
    },
    /** `kubectl parley ARGS…` (the plugin on PATH, run by this Node); resolves exit code and output. */
    plugin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
      const env = { ...process.env, PATH: `${PLUGIN_DIR}:${process.env.PATH}`, PARLEY_NODE: process.execPath };
      return new Promise((resolve) => {
        execFile("kubectl", ["parley", ...args, "-n", namespace, "--kubeconfig", cp.kubeconfig], { env, timeout: 120_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    },
  };
}
