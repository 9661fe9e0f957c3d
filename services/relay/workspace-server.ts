/**
 * parley.v1.WorkspaceDirectory: the relay's view of workspaces (members,
 * endpoints, suspension), the gate that refuses to queue workspace changes
 * for a suspended endpoint, and per-workspace Prometheus figures.
 *
 *   const ws = workspaceDirectory({ store, clock, relayId });
 *   bind(WorkspaceDirectoryService, "workspace-directory", ws.handlers, authorizer, log);
 *   await ws.gate(messages);   // before RelayStore.send
 */
import type { Clock } from "../common/clock.js";
import { FailedPreconditionError, InvalidArgumentError, UnauthenticatedError } from "../common/errors.js";
import type { CallContext } from "../common/grpc.js";
import { Counter, Gauge, metric } from "../common/metrics.js";
import * as pb from "../../generated/parley/v1/workspace.js";
import type { OutgoingMessage } from "./types.js";
import { checkId } from "./validate.js";
import type { SuspensionReasonName, WorkspaceRecord, WorkspaceRoleName, WorkspaceStore } from "./workspace-store.js";

/**
 * Workspace changes travel as relay messages whose content type names the
 * workspace (client/sync/messages.ts builds it): the relay needs no other
 * hint to apply the workspace's suspensions.
 */
export const WORKSPACE_CONTENT_TYPE = "application/vnd.parley.workspace+json";
const WORKSPACE_PARAM = /^application\/vnd\.parley\.workspace\+json;\s*ws=([A-Za-z0-9][A-Za-z0-9._@+-]{0,127})$/;

export function workspaceOfContentType(contentType: string): string | undefined {
  return WORKSPACE_PARAM.exec(contentType)?.[1];
}

function session(ctx: CallContext) {
  if (!ctx.session) throw new UnauthenticatedError("session required");
  return { identityId: ctx.session.idn, deviceId: ctx.session.sub };
}

function role(r: pb.WorkspaceRole): WorkspaceRoleName {
  if (r === pb.WorkspaceRole.WORKSPACE_ROLE_MANAGER) return "manager";
  if (r === pb.WorkspaceRole.WORKSPACE_ROLE_PARTICIPANT) return "participant";
  throw new InvalidArgumentError("role must be WORKSPACE_ROLE_MANAGER or WORKSPACE_ROLE_PARTICIPANT");
}

function reason(r: pb.SuspensionReason): SuspensionReasonName {
  if (r === pb.SuspensionReason.SUSPENSION_REASON_AUTO) return "auto";
  if (r === pb.SuspensionReason.SUSPENSION_REASON_MANAGER) return "manager";
  throw new InvalidArgumentError("reason must be SUSPENSION_REASON_AUTO or SUSPENSION_REASON_MANAGER");
}

function toInfo(w: WorkspaceRecord): pb.WorkspaceInfo {
  return {
    workspaceId: w.id,
    members: w.members.map((m) => ({
      identityId: m.identityId,
      role: m.role === "manager" ? pb.WorkspaceRole.WORKSPACE_ROLE_MANAGER : pb.WorkspaceRole.WORKSPACE_ROLE_PARTICIPANT,
      endpoints: m.endpoints.map((e) => ({
        deviceId: e.deviceId,
        suspended: e.suspended,
        reason: e.reason === "auto" ? pb.SuspensionReason.SUSPENSION_REASON_AUTO : e.reason === "manager" ? pb.SuspensionReason.SUSPENSION_REASON_MANAGER : pb.SuspensionReason.SUSPENSION_REASON_UNSPECIFIED,
      })),
    })),
  };
}

const FIGURES_CACHE_MS = 2000;
/** One figures snapshot per relay in this process (parley up, tests run several). */
interface FiguresSnapshot {
  data: ReturnType<WorkspaceStore["figures"]>;
  suspended: ReturnType<WorkspaceStore["suspendedCounts"]>;
}
const collectors = new Map<string, () => FiguresSnapshot>();

function workspaceMetrics(relayId: string, store: WorkspaceStore) {
  let cache: (FiguresSnapshot & { at: number }) | undefined;
  const snapshot = (): FiguresSnapshot => {
    if (!cache || performance.now() - cache.at > FIGURES_CACHE_MS) cache = { at: performance.now(), data: store.figures(), suspended: store.suspendedCounts() };
    return cache;
  };
  // Gauges read the store when scraped, each relay under its own label.
  collectors.set(relayId, snapshot);
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge, relay: string, s: FiguresSnapshot) => Promise<void>) =>
    metric(name, () =>
      new Gauge({
        name,
        help,
        labelNames,
        async collect() {
          this.reset();
          for (const [relay, snap] of collectors) await fill(this, relay, snap()).catch(() => undefined);
        },
      }),
    );
  gauge("parley_workspace_outstanding_changes", "Changes endpoints hold in their outgoing queues for a member, as last reported", ["relay", "workspace", "member"], async (g, relay, s) => {
    for (const f of await s.data) g.set({ relay, workspace: f.workspaceId, member: f.identityId }, f.outstandingChanges);
  });
  gauge("parley_workspace_oldest_outstanding_age_seconds", "Age of the oldest change queued for a member, as last reported", ["relay", "workspace", "member"], async (g, relay, s) => {
    for (const f of await s.data) g.set({ relay, workspace: f.workspaceId, member: f.identityId }, f.oldestAgeSeconds);
  });
  gauge("parley_workspace_suspended_endpoints", "Endpoints currently suspended", ["relay", "workspace"], async (g, relay, s) => {
    for (const f of await s.suspended) g.set({ relay, workspace: f.workspaceId }, f.suspended);
  });
  return {
    alerts: metric("parley_workspace_alerts_total", () => new Counter({ name: "parley_workspace_alerts_total", help: "Synchronisation alerts raised on managers' endpoints", labelNames: ["relay", "workspace"] })),
    suspensions: metric("parley_workspace_suspensions_total", () => new Counter({ name: "parley_workspace_suspensions_total", help: "Endpoint suspensions, by reason", labelNames: ["relay", "workspace", "reason"] })),
    refused: metric("parley_workspace_refused_sends_total", () => new Counter({ name: "parley_workspace_refused_sends_total", help: "Sends refused because a recipient endpoint is suspended", labelNames: ["relay", "workspace"] })),
    invalidate: () => (cache = undefined),
    unregister: () => void (collectors.get(relayId) === snapshot && collectors.delete(relayId)),
  };
}

export interface WorkspaceDirectoryDeps {
  relayId: string;
  store: WorkspaceStore;
  clock: Clock;
}

export function workspaceDirectory(deps: WorkspaceDirectoryDeps) {
  const { store, relayId } = deps;
  const m = workspaceMetrics(relayId, store);
  const wsId = (v: string) => checkId("workspace_id", v);
  const handlers = {
    registerWorkspace: async (req: pb.RegisterWorkspaceRequest, ctx: CallContext) =>
      toInfo(await store.register(wsId(req.workspaceId), session(ctx).identityId, deps.clock.now())),
    setMember: async (req: pb.SetMemberRequest, ctx: CallContext) =>
      toInfo(await store.setMember(wsId(req.workspaceId), session(ctx).identityId, checkId("identity_id", req.identityId), role(req.role))),
    addEndpoint: async (req: pb.AddEndpointRequest, ctx: CallContext) => {
      const s = session(ctx);
      return toInfo(await store.addEndpoint(wsId(req.workspaceId), s.identityId, s.deviceId));
    },
    suspendEndpoint: async (req: pb.SuspendEndpointRequest, ctx: CallContext) => {
      const why = reason(req.reason);
      const { record, changed } = await store.suspend(wsId(req.workspaceId), session(ctx).identityId, checkId("device_id", req.deviceId), why);
      if (changed) m.suspensions.inc({ relay: relayId, workspace: record.id, reason: why });
      m.invalidate();
      return toInfo(record);
    },
    resumeEndpoint: async (req: pb.ResumeEndpointRequest, ctx: CallContext) => {
      const record = await store.resume(wsId(req.workspaceId), session(ctx).identityId, checkId("device_id", req.deviceId));
      m.invalidate();
      return toInfo(record);
    },
    getWorkspace: async (req: pb.GetWorkspaceRequest, ctx: CallContext) => toInfo(await store.get(wsId(req.workspaceId), session(ctx).identityId)),
    reportFigures: async (req: pb.ReportFiguresRequest, ctx: CallContext): Promise<pb.ReportFiguresResponse> => {
      const s = session(ctx);
      const id = wsId(req.workspaceId);
      const backlog = req.backlog.map((b, i) => {
        if (!Number.isFinite(b.oldestAgeSeconds) || b.oldestAgeSeconds < 0) throw new InvalidArgumentError(`backlog[${i}].oldest_age_seconds must be a non-negative number`);
        return { identityId: checkId(`backlog[${i}].identity_id`, b.identityId), outstandingChanges: b.outstandingChanges, outstandingBytes: b.outstandingBytes, oldestAgeSeconds: b.oldestAgeSeconds };
      });
      await store.report(id, s.identityId, s.deviceId, backlog, req.workspaceBytes, deps.clock.now());
      if (req.alertsRaised) m.alerts.inc({ relay: relayId, workspace: id }, req.alertsRaised);
      m.invalidate();
      return {};
    },
  };

  /**
   * Refuses a send that would queue a workspace change for a suspended
   * endpoint, naming the endpoint. Checked before the send's transaction: a
   * suspension racing a send may let that one send through, which the
   * recipient's engine then ignores (it applies nothing while suspended).
   */
  const gate = async (messages: OutgoingMessage[]): Promise<void> => {
    const byWorkspace = new Map<string, Set<string>>();
    for (const msg of messages) {
      const ws = workspaceOfContentType(msg.contentType);
      if (!ws) continue;
      const devices = byWorkspace.get(ws) ?? new Set<string>();
      for (const r of msg.recipients) if (r.kind === "device") devices.add(r.id);
      byWorkspace.set(ws, devices);
    }
    for (const [ws, devices] of byWorkspace) {
      const suspended = devices.size ? await store.firstSuspended(ws, [...devices]) : undefined;
      if (suspended) {
        m.refused.inc({ relay: relayId, workspace: ws });
        throw new FailedPreconditionError(`endpoint '${suspended}' is suspended in workspace '${ws}': nothing is queued for it`);
      }
    }
  };

  return { handlers, gate, stop: m.unregister };
}
