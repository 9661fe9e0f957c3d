/**
 * Keeps the relay's WorkspaceDirectory in line with the replicated
 * membership, level-triggered: managers push roles and suspensions, every
 * endpoint registers itself, participants record the automatic suspensions
 * they decided; then the endpoint reports its outgoing-queue figures.
 *
 *   await reconcileDirectory({ store, dir, ws, creator, dirty, self, nowMs });
 */
import type { Role } from "./rules.js";
import type { SyncStore } from "./store.js";
import type { DirectoryClient } from "./transport.js";
import { KEY, type Suspension } from "./types.js";
import { endpointsOf, queueFiguresOf } from "./views.js";

export interface DirectorySyncInput {
  store: SyncStore;
  dir: DirectoryClient;
  ws: string;
  creator: boolean;
  /** Membership changed since the last successful reconcile. */
  dirty: boolean;
  self: { memberId: string; endpointId: string };
  nowMs: number;
}

export async function reconcileDirectory(input: DirectorySyncInput): Promise<void> {
  const { store, dir, ws, self } = input;
  const role = store.stateValue(ws, KEY.member(self.memberId)) as Role | undefined;
  const endpoints = endpointsOf(store, ws);
  if (input.dirty) {
    if (input.creator) await dir.register(ws);
    let info = await dir.get(ws);
    const relayRole = (m: string) => info.members.find((x) => x.identityId === m)?.role;
    if (role === "manager") {
      for (const e of store.stateEntries(ws, "m/")) {
        const want = e.value === "manager" ? 1 : 2;
        if (relayRole(e.key.slice(2)) !== want) info = await dir.setMember(ws, e.key.slice(2), e.value as Role);
      }
    }
    if (!info.members.some((m) => m.endpoints.some((x) => x.deviceId === self.endpointId))) info = await dir.addEndpoint(ws);
    const relayEndpoints = new Map(info.members.flatMap((m) => m.endpoints.map((x) => [x.deviceId, x] as const)));
    for (const e of endpoints) {
      const at = relayEndpoints.get(e.endpointId);
      if (!at || at.suspended === e.suspended) continue;
      const s = JSON.parse(store.stateValue(ws, KEY.suspension(e.endpointId)) ?? "{}") as Partial<Suspension>;
      if (role === "manager") await (e.suspended ? dir.suspend(ws, e.endpointId, s.reason === "auto" ? "auto" : "manager") : dir.resume(ws, e.endpointId));
      else if (e.suspended && s.reason === "auto" && s.by === self.memberId) await dir.suspend(ws, e.endpointId, "auto");
    }
    store.setDirectoryDirty(ws, false);
  }
  const members = new Map<string, { n: number; b: number; oldest: number }>();
  const memberOf = new Map(endpoints.map((e) => [e.endpointId, e.memberId]));
  for (const f of queueFiguresOf(store, ws)) {
    const m = memberOf.get(f.endpointId);
    if (!m) continue;
    const agg = members.get(m) ?? { n: 0, b: 0, oldest: Number.MAX_SAFE_INTEGER };
    members.set(m, { n: agg.n + f.outstanding, b: agg.b + f.bytes, oldest: Math.min(agg.oldest, f.oldestQueuedAtMs) });
  }
  await dir.report({
    workspaceId: ws,
    workspaceBytes: store.sizeBytes(ws),
    alertsRaised: store.takeUnreportedAlerts(ws),
    backlog: [...members].map(([identityId, a]) => ({ identityId, outstandingChanges: a.n, outstandingBytes: a.b, oldestAgeSeconds: Math.max(0, (input.nowMs - a.oldest) / 1000) })),
  });
}
