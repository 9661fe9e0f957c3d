/**
 * Leader election with a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection: candidates try every retryPeriod; the holder renews; a
 * candidate takes the Lease over only after it has seen the same record,
 * unrenewed, for a whole leaseDuration on its own clock (no clock-skew
 * assumptions). A leader that cannot renew within renewDeadline stops leading
 * before its Lease can expire, so two replicas never act at once. Writes use
 * the Lease's resourceVersion: two candidates racing for it cannot both win.
 *
 *   const elector = new LeaderElector(kube, { namespace, name: "parley-operator", identity }, log);
 *   elector.run({ onStartedLeading: start, onStoppedLeading: stop });
 */
import type { Logger } from "../../services/common/log.js";
import { KubeApiError, resourcePath, type KubeClient } from "./client.js";

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

export interface LeaderCallbacks {
  onStartedLeading: () => Promise<void> | void;
  onStoppedLeading: () => Promise<void> | void;
}

/** MicroTime: RFC 3339 with microseconds, as the Lease API expects. */
const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export class LeaderElector {
  private leading = false;
  private lastRenewMs = 0;
  private observed: { key: string; atMs: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private tick: Promise<void> = Promise.resolve();
  readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;

  constructor(private readonly kube: KubeClient, private readonly opts: LeaderElectionOptions, private readonly log: Logger) {
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? Math.round((this.leaseDurationMs * 2) / 3);
    this.retryPeriodMs = opts.retryPeriodMs ?? Math.max(200, Math.round(this.leaseDurationMs / 7.5));
    if (this.renewDeadlineMs >= this.leaseDurationMs) throw new Error("leader election: renewDeadline must be shorter than leaseDuration");
  }

  get isLeader(): boolean {
    return this.leading;
  }

  run(cb: LeaderCallbacks): void {
    const loop = () => {
      if (this.stopped) return;
      this.tick = this.tryAcquireOrRenew(cb).finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.retryPeriodMs);
      });
    };
    loop();
  }

  /** Stops campaigning; a leader stops leading and releases the Lease so a standby takes over at once. */
  async stop(cb: LeaderCallbacks): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.tick;
    if (!this.leading) return;
    this.leading = false;
    await cb.onStoppedLeading();
    try {
      const lease = await this.kube.get<Lease>(this.path());
      if (lease?.spec.holderIdentity === this.opts.identity) {
        lease.spec = { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(Date.now()), acquireTime: null };
        await this.kube.request("PUT", this.path(), lease);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not release the leader lease");
    }
  }

  private path(): string {
    return resourcePath("coordination.k8s.io/v1", "Lease", this.opts.namespace, this.opts.name);
  }

  private async tryAcquireOrRenew(cb: LeaderCallbacks): Promise<void> {
    const now = Date.now();
    let ok = false;
    try {
      ok = await this.attempt(now);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, leading: this.leading }, "leader election: lease update failed");
    }
    if (ok) {
      this.lastRenewMs = now;
      if (!this.leading) {
        this.leading = true;
        this.log.info({ identity: this.opts.identity, lease: `${this.opts.namespace}/${this.opts.name}` }, "became leader");
        await cb.onStartedLeading();
      }
    } else if (this.leading && Date.now() - this.lastRenewMs > this.renewDeadlineMs) {
      this.leading = false;
      this.log.warn({ identity: this.opts.identity }, "lost leadership: could not renew the lease within the renew deadline");
      await cb.onStoppedLeading();
    }
  }

  /** One acquire-or-renew; true when this candidate holds the Lease afterwards. */
  private async attempt(now: number): Promise<boolean> {
    const me = this.opts.identity;
    const spec = { holderIdentity: me, leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000), renewTime: microTime(now) };
    const lease = await this.kube.get<Lease>(this.path());
    if (!lease) {
      const fresh: Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: this.opts.name, namespace: this.opts.namespace },
        spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
      };
      return this.write("POST", resourcePath("coordination.k8s.io/v1", "Lease", this.opts.namespace), fresh);
    }
    const holder = lease.spec.holderIdentity ?? "";
    const key = `${holder}|${lease.spec.renewTime ?? ""}|${lease.spec.leaseDurationSeconds ?? ""}`;
    if (this.observed?.key !== key) this.observed = { key, atMs: now };
    const durationMs = (lease.spec.leaseDurationSeconds ?? 0) * 1000;
    const expired = holder === "" || now - this.observed.atMs >= durationMs;
    if (holder !== me && !expired) return false;
    const next: Lease = {
      ...lease,
      spec: {
        ...lease.spec,
        ...spec,
        acquireTime: holder === me ? lease.spec.acquireTime : microTime(now),
        leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (holder === me ? 0 : 1),
      },
    };
    return this.write("PUT", this.path(), next);
  }

  private async write(method: "POST" | "PUT", path: string, lease: Lease): Promise<boolean> {
    try {
      await this.kube.request(method, path, lease);
      return true;
    } catch (err) {
      // 409: another candidate wrote first; we are not the leader this round.
      if (err instanceof KubeApiError && err.status === 409) return false;
      throw err;
    }
  }
}
