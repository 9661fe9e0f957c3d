/**
 * Fan-out on one instance: one RoomFeed per room with local subscribers. It
 * holds the room's core NATS subscription, puts the room's events back in
 * sequence order (two instances publish concurrently, so events can arrive
 * out of order; a gap is filled from Postgres), and hands each event to the
 * room's local sessions only — the work per message is proportional to the
 * clients connected here, not to the room's members.
 *
 *   const feeds = new RoomFeeds(deps);
 *   const feed = await feeds.attach("general", listener);  // ... feeds.detach("general", listener)
 */
import type { Bus, Subscription } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/log.js";
import type { ChannelMetrics } from "./metrics.js";
import { RoomPresence, type PresenceChanges, type PresenceOptions } from "./presence.js";
import type { ChannelStore } from "./store.js";
import { roomSubject } from "./subjects.js";
import type { ChatMessage, Role, Room, RoomBusEvent } from "./types.js";

/** What a session implements to receive a room's events. */
export interface RoomListener {
  readonly userId: string;
  onMessage(m: ChatMessage): void;
  onTyping(roomId: string, userId: string): void;
  onPresence(roomId: string, c: PresenceChanges): void;
  onMembership(roomId: string, userId: string, change: string, role: Role, by: string): void;
  onRoom(room: Room): void;
}

export interface FeedDeps {
  instanceId: string;
  bus: Bus;
  store: ChannelStore;
  clock: Clock;
  log: Logger;
  metrics: ChannelMetrics;
  presence: PresenceOptions;
  /** Wait this long for an out-of-order event's predecessors before reading them from Postgres. */
  gapWaitMs: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Core NATS, at most once: a failure (bus down) is not the caller's failure.
 * Messages are safe anyway — feeds fill gaps from Postgres after a reconnect.
 */
export function publishRoomEvent(bus: Bus, roomId: string, ev: RoomBusEvent): boolean {
  try {
    bus.publish(roomSubject(roomId), encoder.encode(JSON.stringify(ev)));
    return true;
  } catch {
    return false;
  }
}

/**
 * This instance's fan-out work (the Prometheus counter is per process, and
 * `parley up` or a test may run several instances in one).
 */
export interface FanoutTally {
  /** Room events handed to local sessions: one per event per session here. */
  deliveries: number;
}

export class RoomFeed {
  readonly listeners = new Set<RoomListener>();
  readonly presence: RoomPresence;
  /** Highest event sequence handed to local sessions. */
  delivered = 0;
  private readonly early = new Map<number, ChatMessage>();
  private gapTimer: NodeJS.Timeout | undefined;
  private filling: Promise<void> | undefined;
  private sub: Subscription | undefined;

  constructor(readonly roomId: string, private readonly deps: FeedDeps, private readonly tally: FanoutTally = { deliveries: 0 }) {
    this.presence = new RoomPresence(deps.instanceId, deps.presence, () => deps.clock.now(), (c) => {
      for (const l of this.listeners) l.onPresence(roomId, c);
    });
  }

  /** Subscribes first, then reads the room's position: nothing committed after that read is missed. */
  async open(): Promise<void> {
    this.sub = this.deps.bus.subscribe(roomSubject(this.roomId), (m) => this.onBus(JSON.parse(decoder.decode(m.data)) as RoomBusEvent));
    this.delivered = Math.max(this.delivered, await this.deps.store.lastSeq(this.roomId));
    // Ask the other instances for their online users now rather than at their next heartbeat.
    publishRoomEvent(this.deps.bus, this.roomId, { kind: "presence-sync", instanceId: this.deps.instanceId });
  }

  close(): void {
    this.sub?.unsubscribe();
    clearTimeout(this.gapTimer);
    this.presence.close();
  }

  /** Announces this instance's users in the room (heartbeat and answer to a sync). */
  announceSnapshot(): void {
    const online = this.presence.localUsers;
    publishRoomEvent(this.deps.bus, this.roomId, { kind: "presence", instanceId: this.deps.instanceId, online, offline: [], snapshot: true, ttlMs: this.deps.presence.ttlMs });
  }

  announce(user: string, online: boolean): void {
    publishRoomEvent(this.deps.bus, this.roomId, {
      kind: "presence", instanceId: this.deps.instanceId, online: online ? [user] : [], offline: online ? [] : [user], snapshot: false, ttlMs: this.deps.presence.ttlMs,
    });
  }

  /** After a bus outage: core NATS lost whatever was published meanwhile. */
  catchUpFromStore(): void {
    void this.fillGap();
  }

  private onBus(ev: RoomBusEvent): void {
    switch (ev.kind) {
      case "message":
        this.deps.metrics.fanoutLatency.observe(Math.max(0, this.deps.clock.now() - ev.sentAtMs) / 1000);
        return this.onMessage(ev.message);
      case "typing":
        for (const l of this.listeners) if (l.userId !== ev.userId) l.onTyping(this.roomId, ev.userId);
        return;
      case "membership":
        for (const l of [...this.listeners]) l.onMembership(this.roomId, ev.userId, ev.change, ev.role, ev.by);
        return;
      case "room":
        for (const l of this.listeners) l.onRoom(ev.room);
        return;
      case "presence":
        return this.presence.applyRemote(ev.instanceId, ev.online, ev.offline, ev.snapshot, ev.ttlMs);
      case "presence-sync":
        if (ev.instanceId !== this.deps.instanceId && this.presence.localUsers.length) this.announceSnapshot();
        return;
    }
  }

  private onMessage(m: ChatMessage): void {
    if (m.eventSeq <= this.delivered) return;
    if (m.eventSeq === this.delivered + 1 && !this.filling) {
      this.deliver(m);
      this.drainEarly();
      return;
    }
    this.early.set(m.eventSeq, m);
    this.gapTimer ??= setTimeout(() => {
      this.gapTimer = undefined;
      if (this.early.size) void this.fillGap();
    }, this.deps.gapWaitMs);
  }

  private deliver(m: ChatMessage): void {
    this.delivered = m.eventSeq;
    this.deps.metrics.delivered.inc(this.listeners.size);
    this.tally.deliveries += this.listeners.size;
    for (const l of this.listeners) l.onMessage(m);
  }

  private drainEarly(): void {
    for (let next = this.early.get(this.delivered + 1); next; next = this.early.get(this.delivered + 1)) {
      this.early.delete(next.eventSeq);
      this.deliver(next);
    }
    for (const seq of this.early.keys()) if (seq <= this.delivered) this.early.delete(seq);
  }

  /** Reads everything after the delivered position from Postgres, in event order. */
  private fillGap(): Promise<void> {
    this.filling ??= (async () => {
      try {
        this.deps.metrics.gapFills.inc();
        for (;;) {
          const rows = await this.deps.store.eventsAfter(this.roomId, this.delivered, 500);
          for (const m of rows) if (m.eventSeq > this.delivered) this.deliver(m);
          if (rows.length < 500) break;
        }
      } catch (err) {
        this.deps.log.warn({ err, roomId: this.roomId }, "could not fill a gap from the database; retrying");
        setTimeout(() => void this.fillGap(), 1000).unref();
      } finally {
        this.filling = undefined;
        this.drainEarly();
      }
    })();
    return this.filling;
  }
}

/** The feeds of one instance, created on first subscriber and closed after the last. */
export class RoomFeeds {
  private readonly feeds = new Map<string, Promise<RoomFeed>>();
  private timer: NodeJS.Timeout | undefined;
  readonly tally: FanoutTally = { deliveries: 0 };

  constructor(private readonly deps: FeedDeps) {
    deps.bus.onReconnect(() => {
      for (const f of this.feeds.values()) void f.then((feed) => feed.catchUpFromStore());
    });
  }

  get rooms(): number {
    return this.feeds.size;
  }

  async attach(roomId: string, l: RoomListener): Promise<RoomFeed> {
    for (;;) {
      let p = this.feeds.get(roomId);
      if (!p) {
        const feed = new RoomFeed(roomId, this.deps, this.tally);
        p = feed.open().then(() => feed);
        this.feeds.set(roomId, p);
        p.catch(() => this.feeds.delete(roomId));
      }
      const feed = await p;
      // The last listener may have left (closing the feed) while we waited.
      if (this.feeds.get(roomId) !== p) continue;
      return this.join(feed, l);
    }
  }

  private join(feed: RoomFeed, l: RoomListener): RoomFeed {
    feed.listeners.add(l);
    if (feed.presence.addLocal(l.userId)) feed.announce(l.userId, true);
    return feed;
  }

  detach(roomId: string, l: RoomListener): void {
    const p = this.feeds.get(roomId);
    if (!p) return;
    void p.then((feed) => {
      if (!feed.listeners.delete(l)) return;
      if (feed.presence.removeLocal(l.userId)) feed.announce(l.userId, false);
      if (!feed.listeners.size) {
        feed.close();
        this.feeds.delete(roomId);
      }
    });
  }

  async get(roomId: string): Promise<RoomFeed | undefined> {
    return this.feeds.get(roomId);
  }

  /** Heartbeats: re-announce local users and expire remote entries. */
  start(): void {
    this.timer = setInterval(() => {
      for (const p of this.feeds.values()) {
        void p.then((feed) => {
          feed.presence.expire();
          if (feed.presence.localUsers.length) feed.announceSnapshot();
        });
      }
    }, this.deps.presence.heartbeatMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const p of this.feeds.values()) {
      const feed = await p.catch(() => undefined);
      if (!feed) continue;
      // Tell the others at once instead of letting our users expire.
      for (const user of feed.presence.localUsers) feed.announce(user, false);
      feed.close();
    }
    this.feeds.clear();
  }
}
