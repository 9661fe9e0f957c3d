/**
 * Retention: entries older than the relay's retention are deleted, whether or
 * not anyone collected them (the senders keep their own copies; workspace
 * sync recovers purged changes from peers). Idempotency records and
 * answered challenges are forgotten on the same schedule.
 */
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/log.js";
import type { RelayMetrics } from "./metrics.js";
import type { PurgeCount, RelayStore } from "./store.js";

export class RetentionJob {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PurgeCount> | undefined;

  constructor(
    private readonly relayId: string,
    private readonly store: RelayStore,
    private readonly clock: Clock,
    private readonly retentionMs: number,
    private readonly metrics: RelayMetrics,
    private readonly log: Logger,
  ) {}

  /** One pass; concurrent calls share the pass in progress. */
  runOnce(): Promise<PurgeCount> {
    this.running ??= (async () => {
      try {
        const now = this.clock.now();
        const purged = await this.store.purgeOlderThan(now - this.retentionMs);
        await this.store.forgetExpired(now, now - this.retentionMs);
        if (purged.messages) {
          this.metrics.purged.inc({ relay: this.relayId, reason: "retention" }, purged.messages);
          this.log.info({ messages: purged.messages, bytes: purged.bytes, queues: purged.queues.length }, "retention purge");
        }
        return purged;
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Runs a pass every intervalMs, skipped while `active` says no (a replication secondary). */
  start(intervalMs: number, active: () => boolean = () => true): void {
    this.timer = setInterval(() => {
      if (!active()) return;
      this.runOnce().catch((err: unknown) => this.log.error({ err }, "retention purge failed"));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }
}
