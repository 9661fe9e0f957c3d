/**
 * metav1.Conditions: a condition's lastTransitionTime changes only when its
 * status does, so `kubectl get -o yaml` shows when something really changed.
 */
import type { Condition } from "../api/types.js";

export type ConditionInput = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

export function mergeConditions(previous: Condition[] | undefined, next: ConditionInput[], generation: number | undefined, now: Date): Condition[] {
  return next.map((c) => {
    const old = previous?.find((p) => p.type === c.type);
    const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, "Z");
    const out: Condition = { type: c.type, status: c.status, reason: c.reason, message: c.message, lastTransitionTime };
    if (generation !== undefined) out.observedGeneration = generation;
    return out;
  });
}

/** Compares statuses as the apiserver stores them (key order aside). */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}
