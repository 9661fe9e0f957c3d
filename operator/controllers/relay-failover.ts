/**
 * Failover of a relay pair: a RelayServer with `role: primary` and
 * `secondary: <name>`. The pair's state lives in the primary-role
 * RelayServer's status (currentPrimary, targetPrimary and their timestamps);
 * the secondary mirrors currentPrimary. Observe (Deployments, admin gRPC),
 * plan (failover-plan.ts, pure), act (demote → promote → Service), report
 * (conditions, Events).
 *
 *   const failover = new RelayFailover({ kube, admin, events, log, now });
 *   const outcome = await failover.forPrimary(cr, readyReplicas);   // status fields, conditions, Service target
 */
import type { Logger } from "../../services/common/log.js";
import { API_VERSION, type RelayServer, type RelayServerStatus } from "../api/types.js";
import { relaySpecWithDefaults } from "../api/defaults.js";
import { resourcePath, type KubeClient } from "../kube/client.js";
import type { EventRecorder } from "../kube/events.js";
import { relaySwitchovers } from "../metrics.js";
import { relayNames } from "../specs/relay.js";
import type { ConditionInput } from "./conditions.js";
import { durationMs, planFailover, type MemberHealth } from "./failover-plan.js";
import type { RelayAdminAccess, RelayProbe } from "./relay-admin.js";

export interface PairOutcome {
  status: Pick<RelayServerStatus, "currentPrimary" | "currentPrimaryTimestamp" | "targetPrimary" | "targetPrimaryTimestamp" | "replicationLagSeconds" | "queues">;
  conditions: ConditionInput[];
  /** Overrides the phase while a switchover is under way. */
  phase?: string;
  /** Which RelayServer's pods the client Service selects. */
  servicePrimary: string;
  /** Reconcile again after this long (health polling, a failover coming due). */
  requeueAfterMs?: number;
  /** Other RelayServers to reconcile now (the secondary, so its Service follows). */
  peers: string[];
}

export interface RelayFailoverDeps {
  kube: KubeClient;
  admin: RelayAdminAccess;
  events: EventRecorder;
  log: Logger;
  now: () => Date;
}

interface DeploymentReadiness {
  status?: { readyReplicas?: number };
}

const timestamp = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

export class RelayFailover {
  constructor(private readonly d: RelayFailoverDeps) {}

  async forPrimary(cr: RelayServer): Promise<PairOutcome> {
    const spec = relaySpecWithDefaults(cr);
    const now = this.d.now();
    const prev = cr.status ?? {};
    const name = cr.metadata.name;
    const failoverDelayMs = durationMs(spec.failoverDelay);
    const pollMs = Math.min(10_000, Math.max(500, Math.floor(failoverDelayMs / 3)));
    const status: PairOutcome["status"] = {
      currentPrimary: prev.currentPrimary ?? name,
      currentPrimaryTimestamp: prev.currentPrimaryTimestamp ?? timestamp(now),
    };
    if (prev.targetPrimary !== undefined) status.targetPrimary = prev.targetPrimary;
    if (prev.targetPrimaryTimestamp !== undefined) status.targetPrimaryTimestamp = prev.targetPrimaryTimestamp;
    const prevSwitchover = prev.conditions?.find((c) => c.type === "Switchover");

    const secondaryName = spec.secondary!;
    const secondary = await this.d.kube.get<RelayServer>(resourcePath(API_VERSION, "RelayServer", cr.metadata.namespace, secondaryName));
    if (!secondary || relaySpecWithDefaults(secondary).role !== "secondary") {
      const message = secondary
        ? `RelayServer ${secondaryName} has role ${relaySpecWithDefaults(secondary).role}, not secondary: no failover until it is`
        : `RelayServer ${secondaryName} (spec.secondary) does not exist: no failover until it does`;
      return {
        status,
        conditions: [{ type: "Paired", status: "False", reason: secondary ? "SecondaryNotSecondary" : "SecondaryNotFound", message }],
        servicePrimary: status.currentPrimary!,
        requeueAfterMs: pollMs,
        peers: [],
      };
    }

    const ids = [spec.relayId, relaySpecWithDefaults(secondary).relayId];
    if (ids[0] !== ids[1]) {
      // Different relay ids mean different change streams: the secondary does not follow this primary.
      return {
        status,
        conditions: [{ type: "Paired", status: "False", reason: "RelayIdMismatch", message: `${name} has relayId ${ids[0]} but ${secondaryName} has ${ids[1]}: set the same spec.relayId on both` }],
        servicePrimary: status.currentPrimary!,
        requeueAfterMs: pollMs,
        peers: [],
      };
    }
    const byName: Record<string, RelayServer> = { [name]: cr, [secondaryName]: secondary };
    // A currentPrimary outside the pair (spec.secondary was changed): the primary-role member serves.
    if (!byName[status.currentPrimary!]) status.currentPrimary = name;
    const current = byName[status.currentPrimary!]!;
    const otherName = current === cr ? secondaryName : name;
    const [currentObs, otherObs] = await Promise.all([this.observe(current), this.observe(byName[otherName]!)]);

    const prevHealthy = prev.conditions?.find((c) => c.type === "PrimaryHealthy");
    // lastTransitionTime has whole seconds: the transition came within the second after it.
    // Counting from its end keeps a failover from coming up to a second before failoverDelay.
    const unhealthySince = prevHealthy?.status === "False" && !currentObs.health.healthy ? new Date(Date.parse(prevHealthy.lastTransitionTime) + 999) : undefined;
    const plan = planFailover({
      members: [name, secondaryName],
      currentPrimary: current.metadata.name,
      targetPrimary: status.targetPrimary,
      current: currentObs.health,
      other: otherObs.health,
      unhealthySince,
      now,
      failoverDelayMs,
    });

    let primaryObs = currentObs;
    let standbyObs = otherObs;
    let switchover: ConditionInput | undefined;
    let phase: string | undefined;
    let requeueAfterMs: number | undefined = pollMs;
    const peers: string[] = [];
    const decision = plan.decision;

    if (plan.invalidTarget) {
      switchover = { type: "Switchover", status: "False", reason: "InvalidTarget", message: plan.invalidTarget };
      // One Event per distinct bad request, not one per poll.
      if (prevSwitchover?.reason !== "InvalidTarget" || prevSwitchover.message !== plan.invalidTarget) {
        await this.d.events.record(cr, { type: "Warning", reason: "InvalidTargetPrimary", action: "Switchover", note: `${plan.invalidTarget}; nothing was changed` });
      }
    }

    switch (decision.action) {
      case "none":
        if (decision.checkAgainMs !== undefined) requeueAfterMs = Math.min(pollMs, decision.checkAgainMs + 50);
        if (decision.note && prevSwitchover?.reason !== "NoHealthyStandby") {
          await this.d.events.record(cr, { type: "Warning", reason: "NoHealthyStandby", action: "Failover", note: decision.note });
        }
        if (decision.note) switchover = { type: "Switchover", status: "False", reason: "NoHealthyStandby", message: decision.note };
        break;
      case "waitForTarget":
        switchover = { type: "Switchover", status: "True", reason: "WaitingForTarget", message: decision.message };
        phase = "SwitchingOver";
        break;
      case "requestFailover":
        // Recorded first, acted on at the next reconcile (the status write queues it): a crash
        // in between leaves the request in status.targetPrimary, not in this process's memory.
        status.targetPrimary = decision.target;
        status.targetPrimaryTimestamp = timestamp(now);
        switchover = { type: "Switchover", status: "True", reason: "FailoverRequested", message: decision.message };
        phase = "FailingOver";
        await this.d.events.record(cr, { type: "Warning", reason: "FailoverStarted", action: "Failover", note: `${decision.message}; promoting ${decision.target}` });
        requeueAfterMs = 0;
        break;
      case "switchover": {
        const done = await this.switchover(cr, byName[decision.from]!, byName[decision.to]!, decision.oldPrimaryHealthy, spec.switchoverDelay, failoverDelayMs);
        if (done.promoted) {
          status.currentPrimary = decision.to;
          status.currentPrimaryTimestamp = timestamp(this.d.now());
          [primaryObs, standbyObs] = await Promise.all([this.observe(byName[decision.to]!), this.observe(byName[decision.from]!)]);
        } else {
          // Aborted: the old primary serves again and the request is withdrawn.
          status.targetPrimary = decision.from;
          status.targetPrimaryTimestamp = timestamp(this.d.now());
        }
        switchover = { type: "Switchover", status: "False", reason: done.promoted ? "Completed" : "Aborted", message: done.message };
        peers.push(secondaryName);
        break;
      }
    }
    if (!switchover) {
      // Nothing new: keep the last outcome (Completed, Aborted) for people to read, but not a stale complaint.
      const stale = !prevSwitchover || ["InvalidTarget", "NoHealthyStandby", "WaitingForTarget", "FailoverRequested"].includes(prevSwitchover.reason);
      switchover = stale
        ? { type: "Switchover", status: "False", reason: "Idle", message: `${status.currentPrimary} is primary; no switchover requested` }
        : { type: "Switchover", status: prevSwitchover.status, reason: prevSwitchover.reason, message: prevSwitchover.message };
    }
    // At rest targetPrimary equals currentPrimary (as CloudNativePG does): a difference is a request.
    status.targetPrimary ??= status.currentPrimary;
    status.targetPrimaryTimestamp ??= status.currentPrimaryTimestamp;

    if (primaryObs.probe.stats) status.queues = { depth: primaryObs.probe.stats.depth, oldestAgeSeconds: primaryObs.probe.stats.oldestAgeSeconds };
    else if (prev.queues) status.queues = prev.queues;
    if (standbyObs.probe.replication) status.replicationLagSeconds = standbyObs.probe.replication.behindSeconds;
    else if (prev.replicationLagSeconds !== undefined) status.replicationLagSeconds = prev.replicationLagSeconds;

    const primaryHealth = primaryObs.health;
    // The secondary's Service follows too: reconcile it whenever its mirror is behind.
    if (secondary.status?.currentPrimary !== status.currentPrimary && !peers.includes(secondaryName)) peers.push(secondaryName);
    return {
      status,
      conditions: [
        { type: "Paired", status: "True", reason: "SecondaryFound", message: `paired with ${secondaryName}; ${status.currentPrimary} is primary` },
        {
          type: "PrimaryHealthy",
          status: primaryHealth.healthy ? "True" : "False",
          reason: primaryHealth.reason,
          message: `${status.currentPrimary}: ${primaryHealth.message}`,
        },
        switchover,
      ],
      ...(phase ? { phase } : {}),
      servicePrimary: status.currentPrimary!,
      requeueAfterMs,
      peers,
    };
  }

  /** The secondary mirrors the pair's currentPrimary (its Service selects it) from the primary-role RelayServer naming it. */
  async forSecondary(cr: RelayServer): Promise<PairOutcome> {
    const list = await this.d.kube.list<RelayServer>(resourcePath(API_VERSION, "RelayServer", cr.metadata.namespace));
    const owner = list.items.find((r) => r.spec.role === "primary" && r.spec.secondary === cr.metadata.name);
    if (!owner) {
      return {
        status: {},
        conditions: [{ type: "Paired", status: "False", reason: "NoPrimary", message: `no RelayServer with role primary names ${cr.metadata.name} as its secondary` }],
        servicePrimary: cr.metadata.name,
        peers: [],
      };
    }
    const currentPrimary = owner.status?.currentPrimary ?? owner.metadata.name;
    const status: PairOutcome["status"] = { currentPrimary };
    if (owner.status?.currentPrimaryTimestamp) status.currentPrimaryTimestamp = owner.status.currentPrimaryTimestamp;
    return {
      status,
      conditions: [{ type: "Paired", status: "True", reason: "PrimaryFound", message: `secondary of ${owner.metadata.name}; ${currentPrimary} is primary (failover is driven from ${owner.metadata.name}'s status)` }],
      servicePrimary: currentPrimary,
      peers: [],
    };
  }

  /** Healthy: at least one ready instance and an admin API that answers. */
  private async observe(cr: RelayServer): Promise<{ health: MemberHealth; probe: RelayProbe }> {
    const deployment = await this.d.kube.get<DeploymentReadiness>(resourcePath("apps/v1", "Deployment", cr.metadata.namespace, relayNames(cr).deployment));
    const ready = deployment?.status?.readyReplicas ?? 0;
    const probe = await this.d.admin.probe(cr);
    if (ready === 0) return { health: { healthy: false, reason: "NoReadyInstances", message: `Deployment ${relayNames(cr).deployment} has no ready instances` }, probe };
    if (!probe.reachable) return { health: { healthy: false, reason: "AdminUnreachable", message: `the relay's admin API does not answer (${probe.error})` }, probe };
    return { health: { healthy: true, reason: "Healthy", message: `${ready} ready instance(s); admin API answers` }, probe };
  }

  /**
   * Demote the old primary (bounded by switchoverDelay: it stops taking writes
   * and finishes those in flight), then promote the target, which applies the
   * whole change stream and claims the next epoch — fencing the old primary
   * even if the demotion did not get through. Nothing acknowledged is lost:
   * every acknowledged write is in the stream before the claim.
   */
  private async switchover(owner: RelayServer, from: RelayServer, to: RelayServer, oldPrimaryHealthy: boolean, switchoverDelay: string, failoverDelayMs: number): Promise<{ promoted: boolean; message: string }> {
    const kind = oldPrimaryHealthy ? "switchover" : "failover";
    await this.d.events.record(owner, { type: "Normal", reason: "SwitchoverStarted", action: "Demote", note: `${kind} from ${from.metadata.name} to ${to.metadata.name}: demoting ${from.metadata.name}` });
    let fenced = `${from.metadata.name} demoted`;
    try {
      await this.d.admin.withAdmin(from, (a) => a.demote(), durationMs(switchoverDelay));
    } catch (err) {
      fenced = `${from.metadata.name} could not be demoted (${(err as Error).message}); the promotion's epoch claim fences it`;
      await this.d.events.record(owner, { type: "Warning", reason: "DemoteFailed", action: "Demote", note: fenced });
    }
    const timeoutSeconds = Math.max(30, Math.ceil(failoverDelayMs / 1000));
    try {
      const s = await this.d.admin.withAdmin(to, (a) => a.promote(timeoutSeconds), timeoutSeconds * 1000 + 15_000);
      const message = `${to.metadata.name} promoted (epoch ${s.epoch}, change ${s.appliedChange}); ${fenced}; Service ${relayNames(owner).service} selects ${to.metadata.name}`;
      await this.d.events.record(owner, { type: "Normal", reason: oldPrimaryHealthy ? "SwitchedOver" : "FailedOver", action: "Promote", note: message });
      relaySwitchovers.inc({ kind, result: "promoted" });
      return { promoted: true, message };
    } catch (err) {
      const why = `promoting ${to.metadata.name} failed: ${(err as Error).message}`;
      if (!oldPrimaryHealthy) {
        await this.d.events.record(owner, { type: "Warning", reason: "PromotionFailed", action: "Promote", note: `${why}; retrying` });
        relaySwitchovers.inc({ kind, result: "failed" });
        throw new Error(why, { cause: err });
      }
      // A person asked and the old primary is fine: give it the relay back rather than leave none.
      try {
        await this.d.admin.withAdmin(from, (a) => a.promote(timeoutSeconds), timeoutSeconds * 1000 + 15_000);
      } catch (err2) {
        const both = `${why}; re-promoting ${from.metadata.name} failed too: ${(err2 as Error).message}`;
        await this.d.events.record(owner, { type: "Warning", reason: "PromotionFailed", action: "Promote", note: `${both}; retrying` });
        relaySwitchovers.inc({ kind, result: "failed" });
        throw new Error(both, { cause: err2 });
      }
      const message = `${why}; ${from.metadata.name} is primary again and status.targetPrimary was reset`;
      await this.d.events.record(owner, { type: "Warning", reason: "SwitchoverAborted", action: "Promote", note: message });
      relaySwitchovers.inc({ kind, result: "aborted" });
      return { promoted: false, message };
    }
  }
}
