/**
 * `kubectl parley promote NAME`: ask the operator to make NAME the primary of
 * its relay pair, and wait until it is. It only sets status.targetPrimary on
 * the pair's primary-role RelayServer (what a person could do with kubectl
 * patch); the operator does the switchover. Takes the client, so tests and
 * other tools call it directly.
 *
 *   await promote(kube, { namespace: "parley", name: "west", timeoutMs: 120_000, progress: console.log });
 */
import { API_VERSION, type RelayServer } from "../api/types.js";
import { resourcePath, type KubeClient } from "../kube/client.js";

export const PLUGIN_FIELD_MANAGER = "kubectl-parley";

export interface PromoteOptions {
  namespace: string;
  name: string;
  timeoutMs: number;
  progress: (line: string) => void;
  pollMs?: number;
}

/** A request the plugin refuses, with a message naming the problem. */
export class PromoteError extends Error {
  override name = "PromoteError";
}

const rsPath = (namespace: string, name?: string) => resourcePath(API_VERSION, "RelayServer", namespace, name);

/** The primary-role RelayServer holding the pair's state, for either member's name. */
export async function findPairOwner(kube: KubeClient, namespace: string, name: string): Promise<{ target: RelayServer; owner: RelayServer }> {
  const target = await kube.get<RelayServer>(rsPath(namespace, name));
  if (!target) throw new PromoteError(`relayserver "${name}" not found in namespace "${namespace}"`);
  if (target.spec.role === "primary" && target.spec.secondary) return { target, owner: target };
  if (target.spec.role === "secondary") {
    const owner = (await kube.list<RelayServer>(rsPath(namespace))).items.find((r) => r.spec.role === "primary" && r.spec.secondary === name);
    if (owner) return { target, owner };
    throw new PromoteError(`relayserver "${name}" has role secondary but no RelayServer with role primary names it in spec.secondary`);
  }
  throw new PromoteError(`relayserver "${name}" is not paired: it has role ${target.spec.role ?? "standalone"}${target.spec.secondary ? "" : " and no spec.secondary"}; only a member of a primary/secondary pair can be promoted`);
}

export async function promote(kube: KubeClient, o: PromoteOptions): Promise<RelayServer> {
  const { owner } = await findPairOwner(kube, o.namespace, o.name);
  const current = owner.status?.currentPrimary ?? owner.metadata.name;
  if (current === o.name) throw new PromoteError(`relayserver "${o.name}" is already the primary of its pair (${owner.metadata.name}, ${owner.spec.secondary})`);

  const at = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  await kube.request("PATCH", `${rsPath(o.namespace, owner.metadata.name)}/status?fieldManager=${PLUGIN_FIELD_MANAGER}`, { status: { targetPrimary: o.name, targetPrimaryTimestamp: at } }, "application/merge-patch+json");
  o.progress(`relayserver/${owner.metadata.name}: targetPrimary set to ${o.name} (currentPrimary ${current})`);

  const deadline = Date.now() + o.timeoutMs;
  let last = "";
  for (;;) {
    const cr = await kube.get<RelayServer>(rsPath(o.namespace, owner.metadata.name));
    if (!cr) throw new PromoteError(`relayserver "${owner.metadata.name}" was deleted while waiting`);
    const switchover = cr.status?.conditions?.find((c) => c.type === "Switchover");
    const line = `phase ${cr.status?.phase ?? "-"}, currentPrimary ${cr.status?.currentPrimary ?? "-"}${switchover ? `: ${switchover.reason}: ${switchover.message}` : ""}`;
    if (line !== last) o.progress(line);
    last = line;
    if (cr.status?.currentPrimary === o.name) {
      o.progress(`${o.name} is primary (since ${cr.status.currentPrimaryTimestamp ?? "now"})`);
      return cr;
    }
    if (switchover?.reason === "Aborted" || (cr.status?.targetPrimary !== undefined && cr.status.targetPrimary !== o.name)) {
      throw new PromoteError(`the switchover to ${o.name} did not happen: ${switchover?.message ?? `targetPrimary is now ${cr.status?.targetPrimary}`}`);
    }
    if (Date.now() > deadline) throw new PromoteError(`timed out after ${Math.round(o.timeoutMs / 1000)}s waiting for ${o.name} to become primary (${line})`);
    await new Promise((r) => setTimeout(r, o.pollMs ?? 500));
  }
}
