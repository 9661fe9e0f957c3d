/**
 * Completes the compliance record after a crash: a message change committed
 * by an instance that died before JetStream confirmed its event (and whose
 * author never retried) has recorded_seq behind event_seq. Every interval
 * the sweep republishes the changes it already saw unconfirmed on its
 * previous pass (so it does not race posts in flight); the dedup id makes a
 * republished event land once, also when several instances sweep.
 */
import type { ComplianceLog } from "../common/compliance.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/log.js";
import type { ChannelStore } from "./store.js";
import type { ChatMessage } from "./types.js";

export const complianceId = (m: ChatMessage) => `msg:${m.roomId}:${m.eventSeq}`;

export class ComplianceSweep {
  private seen = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly store: ChannelStore, private readonly compliance: ComplianceLog, private readonly clock: Clock, private readonly log: Logger) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.run().catch((err: unknown) => this.log.warn({ err }, "compliance sweep failed")), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass; returns how many events were republished. */
  async run(): Promise<number> {
    const pending = await this.store.unrecorded(1000);
    const now = new Set(pending.map(complianceId));
    let n = 0;
    for (const m of pending) {
      if (!this.seen.has(complianceId(m))) continue;
      const kind = m.deleted ? "message.deleted" : m.editedAtMs ? "message.edited" : "message.posted";
      // The actor of a delete by a manager is not kept on the row: the author stands in.
      await this.compliance.record({ kind, roomId: m.roomId, actor: m.author, atMs: this.clock.now(), message: m }, complianceId(m));
      await this.store.markRecorded(m.roomId, m.eventSeq);
      n++;
    }
    this.seen = now;
    if (n) this.log.warn({ republished: n }, "republished compliance events of changes whose instance did not confirm them");
    return n;
  }
}
