/**
 * The lookup's view of the channel pool, rebuilt from load reports alone.
 * The choice is a pure function of the reports (fewest sessions, then fewest
 * users, then instance id), so replicas that heard the same reports agree,
 * and they hear the same reports within one interval. A resumed instance
 * reports few sessions and so takes every new one until it has caught up —
 * nothing is moved off the others.
 *
 *   const table = new InstanceTable(clock, 30_000);
 *   table.apply(report);
 *   table.choose([]);   // { instanceId, address } or undefined
 */
import type { Clock } from "../common/clock.js";
import type { InstanceState, LoadReport } from "../../generated/parley/v1/lookup.js";

export class InstanceTable {
  private readonly instances = new Map<string, { report: LoadReport; receivedAtMs: number }>();

  constructor(private readonly clock: Clock, private readonly dropAfterMs: number) {}

  apply(report: LoadReport): void {
    const prev = this.instances.get(report.instanceId);
    // An older report arriving late must not undo a newer one.
    if (prev && prev.report.sentAtMs > report.sentAtMs) return;
    this.instances.set(report.instanceId, { report, receivedAtMs: this.clock.now() });
  }

  /** Live: reported recently and healthy. Instances silent past dropAfterMs are forgotten. */
  live(): LoadReport[] {
    const now = this.clock.now();
    const out: LoadReport[] = [];
    for (const [id, s] of this.instances) {
      if (now - s.receivedAtMs > this.dropAfterMs) {
        this.instances.delete(id);
        continue;
      }
      if (s.report.healthy) out.push(s.report);
    }
    return out;
  }

  /** The least-loaded live instance, avoiding `exclude` unless nothing else is live. */
  choose(exclude: string[]): LoadReport | undefined {
    const live = this.live();
    const allowed = live.filter((r) => !exclude.includes(r.instanceId));
    const pool = allowed.length ? allowed : live;
    let best: LoadReport | undefined;
    for (const r of pool) if (!best || compare(r, best) < 0) best = r;
    return best;
  }

  states(): InstanceState[] {
    const live = new Set(this.live().map((r) => r.instanceId));
    return [...this.instances.values()]
      .map((s) => ({ report: s.report, receivedAtMs: s.receivedAtMs, live: live.has(s.report.instanceId) }))
      .sort((a, b) => a.report!.instanceId.localeCompare(b.report!.instanceId));
  }
}

function compare(a: LoadReport, b: LoadReport): number {
  return a.sessions - b.sessions || a.users - b.users || (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0);
}
