/**
 * Load reports: every interval each channel instance tells the lookup
 * services how many sessions and users it serves, where it is, and whether
 * it is healthy (its database answers). Core NATS: a lost report is
 * replaced by the next one.
 */
import type { Bus } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { LoadReport } from "../../generated/parley/v1/lookup.js";
import { LOAD_SUBJECT } from "./subjects.js";

export interface LoadSource {
  sessions(): number;
  users(): number;
  healthy(): Promise<boolean>;
}

export class LoadReporter {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly clock: Clock,
    private readonly instanceId: string,
    private readonly address: string,
    private readonly intervalMs: number,
    private readonly source: LoadSource,
  ) {}

  async report(healthy?: boolean): Promise<LoadReport> {
    const r: LoadReport = {
      instanceId: this.instanceId,
      address: this.address,
      sessions: this.source.sessions(),
      users: this.source.users(),
      healthy: healthy ?? (await this.source.healthy()),
      sentAtMs: this.clock.now(),
      intervalMs: this.intervalMs,
    };
    this.bus.publish(LOAD_SUBJECT, LoadReport.encode(r).finish());
    return r;
  }

  start(): void {
    void this.report().catch(() => undefined);
    this.timer = setInterval(() => void this.report().catch(() => undefined), this.intervalMs);
    this.timer.unref();
  }

  /** A last report marks the instance unhealthy, so lookups stop sending sessions at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.report(false).catch(() => undefined);
  }
}
