/**
 * What a relay pair should do now, as a pure function of what the operator
 * observed: nothing, report a bad request, wait for the target, start an
 * automatic failover, or switch over. No I/O and no clock of its own, so
 * every rule is tested without a cluster (test/unit/operator-failover-plan.test.ts).
 *
 *   const { decision, invalidTarget } = planFailover({ members: ["east", "west"], currentPrimary: "east", ... });
 */

export interface MemberHealth {
  healthy: boolean;
  /** UpperCamelCase (Healthy, NoReadyInstances, AdminUnreachable, NotFound). */
  reason: string;
  message: string;
}

export interface FailoverInput {
  /** The pair: the primary-role RelayServer and its spec.secondary. */
  members: readonly [string, string];
  currentPrimary: string;
  /** status.targetPrimary (undefined: nothing requested). */
  targetPrimary: string | undefined;
  /** Health of the current primary and of the other member. */
  current: MemberHealth;
  other: MemberHealth;
  /** Since when the current primary has been unhealthy (the PrimaryHealthy condition's lastTransitionTime). */
  unhealthySince: Date | undefined;
  now: Date;
  failoverDelayMs: number;
}

export type FailoverDecision =
  /** Steady; look again after checkAgainMs when a failover may become due. */
  | { action: "none"; checkAgainMs?: number; note?: string }
  /** A switchover was asked for, but the target is not healthy: wait. */
  | { action: "waitForTarget"; target: string; message: string }
  /** The primary has been unhealthy for failoverDelay: set targetPrimary to the other member. */
  | { action: "requestFailover"; target: string; message: string }
  /** targetPrimary differs from currentPrimary and the target is healthy: demote, promote, move the Service. */
  | { action: "switchover"; from: string; to: string; oldPrimaryHealthy: boolean };

export interface FailoverPlan {
  decision: FailoverDecision;
  /** Set when status.targetPrimary names something outside the pair: reported, never acted on. */
  invalidTarget?: string;
}

export function planFailover(i: FailoverInput): FailoverPlan {
  const other = i.members[0] === i.currentPrimary ? i.members[1] : i.members[0];
  let invalidTarget: string | undefined;
  if (i.targetPrimary !== undefined && i.targetPrimary !== i.currentPrimary) {
    if (!i.members.includes(i.targetPrimary)) {
      invalidTarget = `status.targetPrimary "${i.targetPrimary}" is not a member of this pair (${i.members.join(", ")}); set it to "${other}" to switch over`;
    } else if (!i.other.healthy) {
      return { decision: { action: "waitForTarget", target: i.targetPrimary, message: `switchover to ${i.targetPrimary} waits until it is healthy: ${i.other.message}` } };
    } else {
      return { decision: { action: "switchover", from: i.currentPrimary, to: i.targetPrimary, oldPrimaryHealthy: i.current.healthy } };
    }
  }
  // An invalid request never blocks an automatic failover.
  const withInvalid = (decision: FailoverDecision): FailoverPlan => (invalidTarget ? { decision, invalidTarget } : { decision });
  if (i.current.healthy) return withInvalid({ action: "none" });
  const since = i.unhealthySince ?? i.now;
  const elapsedMs = i.now.getTime() - since.getTime();
  if (elapsedMs < i.failoverDelayMs) return withInvalid({ action: "none", checkAgainMs: i.failoverDelayMs - elapsedMs });
  if (!i.other.healthy) {
    return withInvalid({ action: "none", note: `primary ${i.currentPrimary} is unhealthy but ${other} cannot take over: ${i.other.message}` });
  }
  return withInvalid({
    action: "requestFailover",
    target: other,
    message: `primary ${i.currentPrimary} has been unhealthy for ${Math.round(elapsedMs / 1000)}s (failoverDelay ${Math.round(i.failoverDelayMs / 1000)}s): ${i.current.message}`,
  });
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The CRD's duration strings (500ms, 30s, 5m, 1h); the schema has already checked the pattern. */
export function durationMs(value: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(value);
  if (!m) throw new Error(`not a duration: ${value}`);
  return Number(m[1]) * UNITS[m[2]!]!;
}
