/**
 * The seed's rules for synchronisation alerts and endpoint suspension, as
 * pure functions of a workspace's figures and the time (an injected Clock's
 * now). The engine gathers the figures from its store and applies the
 * result; these functions decide nothing else.
 *
 *   const alerts = syncAlerts({ self, madeChange: true, workspaceBytes, legacy: false, nowMs, queue, endpoints });
 *   const toSuspend = autoSuspensions({ workspaceBytes, nowMs, queue, endpoints });
 */
import { DAY } from "../../services/common/clock.js";

/** "The oldest queued change is 21 days old or older." */
export const STALE_AFTER_MS = 21 * DAY;
/** "The total size of the workspace exceeds 100 megabytes (MB)" — 100 MiB, as Groove counted. */
export const SIZE_LIMIT_BYTES = 100 * 1024 * 1024;

export type Role = "manager" | "participant";

export interface EndpointView {
  endpointId: string;
  memberId: string;
  suspended: boolean;
}

/** What one endpoint's outgoing queue holds for one other endpoint. */
export interface QueueFigure {
  endpointId: string;
  outstanding: number;
  bytes: number;
  /** When the oldest change still queued for it was queued. */
  oldestQueuedAtMs: number;
}

export interface SyncAlert {
  memberId: string;
  /** The member's endpoints the alert is about (the stale ones). */
  endpointIds: string[];
  oldestQueuedAtMs: number;
  outstanding: number;
  /** What suspending the member would free in this endpoint's queue. */
  bytes: number;
}

export interface AlertInput {
  self: { memberId: string; role: Role };
  /** True only when evaluating because this endpoint's user just made a change. */
  madeChange: boolean;
  workspaceBytes: number;
  /** Groove Workspace 2.5 behaviour: no size condition. */
  legacy: boolean;
  nowMs: number;
  queue: QueueFigure[];
  endpoints: EndpointView[];
}

/** A member is suspended when every one of its endpoints is. */
export function memberSuspended(endpoints: EndpointView[], memberId: string): boolean {
  const mine = endpoints.filter((e) => e.memberId === memberId);
  return mine.length > 0 && mine.every((e) => e.suspended);
}

export function isStale(f: QueueFigure, nowMs: number): boolean {
  return f.outstanding > 0 && nowMs - f.oldestQueuedAtMs >= STALE_AFTER_MS;
}

export function overSizeLimit(workspaceBytes: number): boolean {
  return workspaceBytes > SIZE_LIMIT_BYTES;
}

/**
 * The four conditions, all required: outstanding changes for a member in
 * this (manager's) outgoing queue; the oldest ≥ 21 days; the manager makes a
 * change; the workspace exceeds 100 MB (dropped in legacy mode). Never for a
 * participant, never about a suspended member (or about the manager's own
 * other computers: the alert offers to suspend a member, not oneself).
 */
export function syncAlerts(input: AlertInput): SyncAlert[] {
  if (input.self.role !== "manager" || !input.madeChange) return [];
  if (!input.legacy && !overSizeLimit(input.workspaceBytes)) return [];
  const byEndpoint = new Map(input.queue.map((f) => [f.endpointId, f]));
  const members = [...new Set(input.endpoints.map((e) => e.memberId))].filter((m) => m !== input.self.memberId).sort();
  const alerts: SyncAlert[] = [];
  for (const memberId of members) {
    if (memberSuspended(input.endpoints, memberId)) continue;
    const figures = input.endpoints
      .filter((e) => e.memberId === memberId && !e.suspended)
      .map((e) => byEndpoint.get(e.endpointId))
      .filter((f): f is QueueFigure => f !== undefined && f.outstanding > 0);
    const stale = figures.filter((f) => isStale(f, input.nowMs));
    if (!stale.length) continue;
    alerts.push({
      memberId,
      endpointIds: stale.map((f) => f.endpointId).sort(),
      oldestQueuedAtMs: Math.min(...stale.map((f) => f.oldestQueuedAtMs)),
      outstanding: figures.reduce((s, f) => s + f.outstanding, 0),
      bytes: figures.reduce((s, f) => s + f.bytes, 0),
    });
  }
  return alerts;
}

export interface SuspensionInput {
  workspaceBytes: number;
  nowMs: number;
  queue: QueueFigure[];
  endpoints: EndpointView[];
}

/**
 * Endpoints to suspend automatically: in a workspace over 100 MB, each
 * endpoint past 21 days without updates, oldest first, while its member
 * keeps more than one active endpoint. The endpoint left is the one updated
 * most recently; it, and a member on a single endpoint, are never
 * suspended automatically (a manager must do it).
 */
export function autoSuspensions(input: SuspensionInput): string[] {
  if (!overSizeLimit(input.workspaceBytes)) return [];
  const byEndpoint = new Map(input.queue.map((f) => [f.endpointId, f]));
  const out: string[] = [];
  const members = [...new Set(input.endpoints.map((e) => e.memberId))].sort();
  for (const memberId of members) {
    const active = input.endpoints.filter((e) => e.memberId === memberId && !e.suspended);
    const stale = active
      .map((e) => byEndpoint.get(e.endpointId))
      .filter((f): f is QueueFigure => f !== undefined && isStale(f, input.nowMs))
      .sort((a, b) => a.oldestQueuedAtMs - b.oldestQueuedAtMs || (a.endpointId < b.endpointId ? -1 : 1));
    let remaining = active.length;
    for (const f of stale) {
      if (remaining <= 1) break;
      out.push(f.endpointId);
      remaining--;
    }
  }
  return out;
}

export interface SuspendChoice {
  memberId: string;
  endpointIds: string[];
  /** Changes and bytes this endpoint's queue would free. */
  outstanding: number;
  bytes: number;
  oldestQueuedAtMs: number;
  /** Not updated for 21 days or more: the member an alert is about. */
  stale: boolean;
}

/**
 * What "Suspend Members" offers a manager: every non-suspended member with
 * changes queued here, with the disk space suspending it would recover.
 * Participants are offered nothing.
 */
export function suspendChoices(self: { memberId: string; role: Role }, queue: QueueFigure[], endpoints: EndpointView[], nowMs: number): SuspendChoice[] {
  if (self.role !== "manager") return [];
  const byEndpoint = new Map(queue.map((f) => [f.endpointId, f]));
  const out: SuspendChoice[] = [];
  for (const memberId of [...new Set(endpoints.map((e) => e.memberId))].sort()) {
    if (memberId === self.memberId || memberSuspended(endpoints, memberId)) continue;
    const figures = endpoints
      .filter((e) => e.memberId === memberId && !e.suspended)
      .map((e) => byEndpoint.get(e.endpointId))
      .filter((f): f is QueueFigure => f !== undefined && f.outstanding > 0);
    if (!figures.length) continue;
    out.push({
      memberId,
      endpointIds: figures.map((f) => f.endpointId).sort(),
      outstanding: figures.reduce((s, f) => s + f.outstanding, 0),
      bytes: figures.reduce((s, f) => s + f.bytes, 0),
      oldestQueuedAtMs: Math.min(...figures.map((f) => f.oldestQueuedAtMs)),
      stale: figures.some((f) => isStale(f, nowMs)),
    });
  }
  return out;
}
