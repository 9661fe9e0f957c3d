/**
 * Read-only views of a workspace in the store: endpoints with their
 * suspension, the outgoing queue per recipient, the status report; and how
 * changes are cut into relay messages.
 *
 *   const endpoints = endpointsOf(store, "team-task");
 */
import { missingRanges } from "./recovery.js";
import type { EndpointView, QueueFigure, Role } from "./rules.js";
import type { SyncStore, WorkspaceRow } from "./store.js";
import { KEY, type Change, type EndpointRecord, type Suspension, type WorkspaceStatus } from "./types.js";

export function endpointsOf(store: SyncStore, ws: string): EndpointView[] {
  const suspended = new Map(store.stateEntries(ws, "s/").map((e) => [e.key.slice(2), (JSON.parse(e.value) as Suspension).suspended]));
  return store.stateEntries(ws, "e/").map((e) => ({ endpointId: e.key.slice(2), memberId: (JSON.parse(e.value) as EndpointRecord).memberId, suspended: suspended.get(e.key.slice(2)) ?? false }));
}

export function endpointRecordOf(store: SyncStore, ws: string, endpointId: string): EndpointRecord | undefined {
  const v = store.stateValue(ws, KEY.endpoint(endpointId));
  return v ? (JSON.parse(v) as EndpointRecord) : undefined;
}

export function queueFiguresOf(store: SyncStore, ws: string): QueueFigure[] {
  return store.outgoingFigures(ws).map((f) => ({ endpointId: f.recipient, outstanding: f.outstanding, bytes: f.bytes, oldestQueuedAtMs: f.oldestQueuedAtMs }));
}

/** Cuts changes into parts of at most maxBytes (estimated JSON size), at least one change each. */
export function chunkChanges(changes: Change[], maxBytes: number): Change[][] {
  const parts: Change[][] = [[]];
  let bytes = 0;
  for (const c of changes) {
    const size = Buffer.byteLength(c.value) + c.key.length + 160;
    if (bytes + size > maxBytes && parts[parts.length - 1]!.length) {
      parts.push([]);
      bytes = 0;
    }
    parts[parts.length - 1]!.push(c);
    bytes += size;
  }
  return parts;
}

export function statusOf(store: SyncStore, w: WorkspaceRow, self: { memberId: string; endpointId: string }): WorkspaceStatus {
  const ws = w.id;
  const endpoints = endpointsOf(store, ws);
  const pending = new Map(store.pendingOrigins(ws).map((o) => [o, store.pendingSeqs(ws, o)]));
  const suspensions = new Map(store.stateEntries(ws, "s/").map((e) => [e.key.slice(2), JSON.parse(e.value) as Suspension]));
  return {
    workspaceId: ws,
    name: w.name,
    self: { ...self, role: store.stateValue(ws, KEY.member(self.memberId)) as Role | undefined, suspended: endpoints.some((e) => e.endpointId === self.endpointId && e.suspended) },
    legacy: w.legacy,
    sizeBytes: store.sizeBytes(ws),
    vector: store.applied(ws),
    missing: missingRanges(store.applied(ws), store.targets(ws), pending),
    members: store.stateEntries(ws, "m/").map((m) => ({
      memberId: m.key.slice(2),
      role: m.value as Role,
      endpoints: endpoints
        .filter((e) => e.memberId === m.key.slice(2))
        .map((e) => ({ endpointId: e.endpointId, suspended: e.suspended, ...(e.suspended ? { reason: suspensions.get(e.endpointId)?.reason } : {}) })),
    })),
    outgoing: store.outgoingFigures(ws).map((f) => ({ endpointId: f.recipient, memberId: endpoints.find((e) => e.endpointId === f.recipient)?.memberId ?? "", outstanding: f.outstanding, bytes: f.bytes, oldestQueuedAtMs: f.oldestQueuedAtMs })),
    alerts: store.alerts(ws),
  };
}
