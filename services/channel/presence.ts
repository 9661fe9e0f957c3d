/**
 * The online list of one room across instances. Each instance announces its
 * own users' arrivals and departures on the room subject and repeats a
 * snapshot every heartbeat; entries from other instances expire after a
 * few missed heartbeats, so a vanished instance's users go offline by
 * themselves. Local users are counted from the sessions here, never expired.
 *
 * Changes reach the room's local sessions at once while the room is small;
 * past the throttle threshold they are batched and sent at most once per
 * throttle interval, so a 10,000-member room does not flood its clients.
 * Either way a batch carries only the changes, never the whole list (a
 * session gets the whole list once, when it subscribes). The interval is
 * measured on the injected clock: the timer only wakes the check.
 */
export interface PresenceOptions {
  heartbeatMs: number;
  /** Remote entries live this long without a refresh. */
  ttlMs: number;
  throttleThreshold: number;
  throttleMs: number;
}

export interface PresenceChanges {
  online: string[];
  offline: string[];
  count: number;
}

export class RoomPresence {
  /** user → sessions on this instance */
  private readonly local = new Map<string, number>();
  /** user → instance → expiry (ms) */
  private readonly remote = new Map<string, Map<string, number>>();
  private online = new Set<string>();
  private pendingOn = new Set<string>();
  private pendingOff = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private lastFlush = 0;

  constructor(
    private readonly instanceId: string,
    private readonly opts: PresenceOptions,
    private readonly now: () => number,
    /** Delivers a batch of changes to the room's local sessions. */
    private readonly emit: (c: PresenceChanges) => void,
  ) {}

  get users(): string[] {
    return [...this.online];
  }

  get localUsers(): string[] {
    return [...this.local.keys()];
  }

  /** A local session of user arrived; true when the user is new on this instance (announce it). */
  addLocal(user: string): boolean {
    const n = (this.local.get(user) ?? 0) + 1;
    this.local.set(user, n);
    this.recompute(user);
    return n === 1;
  }

  /** A local session of user left; true when it was the user's last here (announce it). */
  removeLocal(user: string): boolean {
    const n = (this.local.get(user) ?? 0) - 1;
    if (n > 0) this.local.set(user, n);
    else this.local.delete(user);
    this.recompute(user);
    return n <= 0;
  }

  /** An announcement from another instance (our own echoes are ignored). */
  applyRemote(instanceId: string, online: string[], offline: string[], snapshot: boolean, ttlMs: number): void {
    if (instanceId === this.instanceId) return;
    const expires = this.now() + ttlMs;
    const touched = new Set<string>();
    if (snapshot) {
      const listed = new Set(online);
      for (const [user, instances] of this.remote) {
        if (instances.has(instanceId) && !listed.has(user)) {
          instances.delete(instanceId);
          touched.add(user);
        }
      }
    }
    for (const user of online) {
      let instances = this.remote.get(user);
      if (!instances) this.remote.set(user, (instances = new Map()));
      instances.set(instanceId, expires);
      touched.add(user);
    }
    for (const user of offline) {
      this.remote.get(user)?.delete(instanceId);
      touched.add(user);
    }
    for (const user of touched) this.recompute(user);
  }

  /** Drops remote entries whose instance stopped refreshing them. */
  expire(): void {
    const now = this.now();
    for (const [user, instances] of this.remote) {
      let changed = false;
      for (const [instance, until] of instances) {
        if (until <= now) {
          instances.delete(instance);
          changed = true;
        }
      }
      if (changed) this.recompute(user);
    }
  }

  close(): void {
    clearTimeout(this.flushTimer);
  }

  private recompute(user: string): void {
    const instances = this.remote.get(user);
    if (instances && instances.size === 0) this.remote.delete(user);
    const isOnline = this.local.has(user) || (instances?.size ?? 0) > 0;
    if (isOnline === this.online.has(user)) return;
    if (isOnline) {
      this.online.add(user);
      if (!this.pendingOff.delete(user)) this.pendingOn.add(user);
    } else {
      this.online.delete(user);
      if (!this.pendingOn.delete(user)) this.pendingOff.add(user);
    }
    this.schedule();
  }

  get throttled(): boolean {
    return this.online.size > this.opts.throttleThreshold;
  }

  private schedule(): void {
    if (this.flushTimer) return;
    // Even unthrottled, changes of one tick go out as one batch.
    this.flushTimer = setTimeout(() => this.flush(), this.throttleWait());
  }

  /** How long a throttled room still waits for its next batch (0: send now). */
  private throttleWait(): number {
    return this.throttled ? Math.max(0, this.lastFlush + this.opts.throttleMs - this.now()) : 0;
  }

  private flush(): void {
    this.flushTimer = undefined;
    if (!this.pendingOn.size && !this.pendingOff.size) return;
    const wait = this.throttleWait();
    if (wait > 0) {
      this.flushTimer = setTimeout(() => this.flush(), wait);
      return;
    }
    this.lastFlush = this.now();
    const c = { online: [...this.pendingOn], offline: [...this.pendingOff], count: this.online.size };
    this.pendingOn = new Set();
    this.pendingOff = new Set();
    this.emit(c);
  }
}
