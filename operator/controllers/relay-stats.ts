/**
 * Queue totals of standalone relays for their status (pairs get theirs from
 * the failover probe). Polled in the background, never inside a reconcile:
 * an unreachable relay must not hold one up. At most one poll per interval
 * per relay; new figures queue the RelayServer so its status is written, and
 * each poll schedules the next.
 *
 *   const queues = poller.queues(cr);   // the latest figures (undefined until one poll answered)
 */
import type { RelayServer, RelayServerStatus } from "../api/types.js";
import type { RelayAdminAccess } from "./relay-admin.js";

type Queues = NonNullable<RelayServerStatus["queues"]>;

export class RelayStatsPoller {
  private readonly last = new Map<string, { polledAt: number; queues?: Queues }>();

  constructor(
    private readonly admin: RelayAdminAccess,
    private readonly requeue: (namespace: string, name: string, afterMs: number) => void,
    private readonly intervalMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  queues(cr: RelayServer): Queues | undefined {
    const key = `${cr.metadata.namespace}/${cr.metadata.name}`;
    const entry = this.last.get(key);
    if (!entry || this.now() - entry.polledAt >= this.intervalMs) {
      this.last.set(key, { polledAt: this.now(), queues: entry?.queues });
      void this.poll(cr, key);
    }
    return entry?.queues;
  }

  forget(namespace: string, name: string): void {
    this.last.delete(`${namespace}/${name}`);
  }

  private async poll(cr: RelayServer, key: string): Promise<void> {
    const { namespace, name } = cr.metadata;
    try {
      const stats = await this.admin.withAdmin(cr, (a) => a.stats({ top: 1 }));
      const queues: Queues = { depth: Number(stats.depth), oldestAgeSeconds: Math.round(stats.oldestAgeSeconds) };
      const entry = this.last.get(key);
      if (!entry) return; // deleted meanwhile
      const changed = entry.queues?.depth !== queues.depth || entry.queues?.oldestAgeSeconds !== queues.oldestAgeSeconds;
      entry.queues = queues;
      if (changed) this.requeue(namespace, name, 0);
    } catch {
      // Unreachable (not running yet, or gone): the last figures stay.
    }
    if (this.last.has(key)) this.requeue(namespace, name, this.intervalMs);
  }
}
