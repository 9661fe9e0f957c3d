/**
 * How many channel instances a ChatPool runs, decided from its load reports.
 * Pure: the controller passes what it knows (spec, the StatefulSet's current
 * replicas, fresh load reports, when it last scaled, the time) and applies the
 * answer. Nothing is remembered between calls — an instance being drained is
 * visible in its own reports — so an operator restart picks up where it was.
 *
 * - `spec.channel.replicas` (kubectl scale, HPA, KEDA through /scale) wins.
 * - Otherwise: out as soon as users exceed instances × target; in only once the
 *   users fit in fewer instances at (1 − SCALE_IN_HYSTERESIS) of the target, so a
 *   pool hovering at a boundary does not flap; one step per cooldown either way.
 *   Bounds (minInstances/maxInstances) apply at once, cooldown or not.
 * - Scale-in never removes an instance with sessions: the instances to remove
 *   (highest ordinals, as the StatefulSet removes them) are drained first and
 *   replicas drop only past those that report no sessions while unhealthy
 *   (drained), or that do not report at all.
 *
 *   const d = decideScale({ min: 2, max: 10, targetUsersPerInstance: 500, current: 3, instances, ... });
 *   d.replicas   // for the StatefulSet now;  d.drain / d.resume: ordinals to command
 */

/** Below this share of the target per instance, the pool may scale in. */
export const SCALE_IN_HYSTERESIS = 0.2;

/** One instance's latest fresh load report. */
export interface InstanceLoad {
  ordinal: number;
  users: number;
  sessions: number;
  /** False while draining (or while its database is unreachable). */
  healthy: boolean;
}

export interface ScaleInput {
  min: number;
  max: number;
  targetUsersPerInstance: number;
  /** spec.channel.replicas: set by /scale; replaces load-based scaling. */
  manualReplicas?: number;
  /** The StatefulSet's replicas now; undefined before it exists. */
  current: number | undefined;
  /** Fresh reports of this pool's instances; `undefined` when the load is unknown (no NATS connection, nothing heard yet). */
  instances: InstanceLoad[] | undefined;
  lastScaleAtMs?: number;
  nowMs: number;
  cooldownMs: number;
}

export type ScaleReason = "Initial" | "Manual" | "BelowMinimum" | "AboveMaximum" | "LoadUnknown" | "ScaleOut" | "ScaleIn" | "Cooldown" | "Stable";

export interface ScaleDecision {
  /** Replicas for the StatefulSet now. */
  replicas: number;
  /** Where the pool is heading (below `replicas` while instances drain). */
  target: number;
  /** Ordinals to send `drain` (to be removed, still holding or taking sessions). */
  drain: number[];
  /** Ordinals to send `resume` (wanted, but reporting unhealthy: perhaps an abandoned drain). */
  resume: number[];
  reason: ScaleReason;
  /** Users across the instances counted (ordinals below `current`). */
  totalUsers: number;
  message: string;
}

const clamp = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n));

export function decideScale(input: ScaleInput): ScaleDecision {
  const { min, max, targetUsersPerInstance: perInstance, manualReplicas, current, nowMs } = input;
  const counted = (input.instances ?? []).filter((i) => current === undefined || i.ordinal < current);
  const totalUsers = counted.reduce((n, i) => n + i.users, 0);

  const [target, reason, why] = ((): [number, ScaleReason, string] => {
    if (manualReplicas !== undefined) return [manualReplicas, "Manual", `spec.channel.replicas is ${manualReplicas} (set through /scale); load-based scaling is off`];
    if (current === undefined) return [min, "Initial", `starting with minInstances (${min})`];
    if (current < min) return [min, "BelowMinimum", `raised to minInstances (${min})`];
    if (current > max) return [max, "AboveMaximum", `lowered to maxInstances (${max})`];
    if (input.instances === undefined || counted.length === 0) return [current, "LoadUnknown", "no load reports from the channel instances yet; holding"];
    const out = clamp(Math.ceil(totalUsers / perInstance), min, max);
    const inTo = clamp(Math.ceil(totalUsers / (perInstance * (1 - SCALE_IN_HYSTERESIS))), min, max);
    const wanted = out > current ? out : inTo < current ? inTo : current;
    if (wanted === current) return [current, "Stable", `${totalUsers} users on ${current} instances (target ${perInstance} per instance)`];
    const since = input.lastScaleAtMs === undefined ? Infinity : nowMs - input.lastScaleAtMs;
    if (since < input.cooldownMs) {
      return [current, "Cooldown", `${totalUsers} users want ${wanted} instances; waiting out the cooldown (${Math.ceil((input.cooldownMs - since) / 1000)} s left)`];
    }
    return wanted > current
      ? [wanted, "ScaleOut", `${totalUsers} users exceed ${current} × ${perInstance}: scaling out to ${wanted}`]
      : [wanted, "ScaleIn", `${totalUsers} users fit in ${wanted} instances: scaling in from ${current}`];
  })();

  const byOrdinal = new Map((input.instances ?? []).map((i) => [i.ordinal, i]));
  const resume = [...byOrdinal.values()].filter((i) => i.ordinal < target && !i.healthy).map((i) => i.ordinal).sort((a, b) => a - b);
  if (current === undefined || target >= current) {
    return { replicas: target, target, drain: [], resume, reason, totalUsers, message: why };
  }

  // Scale-in: drain every instance to remove; drop replicas past the drained tail only.
  const drained = (ordinal: number) => {
    const i = byOrdinal.get(ordinal);
    return i === undefined || (!i.healthy && i.sessions === 0);
  };
  const drain: number[] = [];
  for (let o = target; o < current; o++) if (!drained(o)) drain.push(o);
  let replicas = current;
  while (replicas > target && drained(replicas - 1)) replicas--;
  const message = replicas > target ? `${why}; draining ${drain.length ? drain.map((o) => `#${o}`).join(", ") : "instances"} before removing them` : why;
  return { replicas, target, drain, resume, reason, totalUsers, message };
}
