/**
 * One client's live session: a bidirectional stream. The client subscribes
 * to rooms with the last sequence it saw; the session pushes what it missed
 * from Postgres, then live events from the room's feed, with no gap and no
 * duplicate (events arriving during the catch-up are held and filtered by
 * sequence). It also keeps unread and mention counts for rooms the user is
 * not viewing, relays typing, and forwards presence.
 */
import { randomUUID } from "node:crypto";
import { status, type ServerDuplexStream } from "@grpc/grpc-js";
import { ParleyError, ResourceExhaustedError } from "../common/errors.js";
import { malformedReason } from "../common/grpc.js";
import type { ClientCommand, ServerEvent } from "../../generated/parley/v1/chat.js";
import type { ChannelCore } from "./core.js";
import { publishRoomEvent, type RoomListener } from "./feed.js";
import type { PresenceChanges } from "./presence.js";
import { canRead, existing } from "./rules.js";
import { Role, type ChatMessage, type Room } from "./types.js";
import * as v from "./validate.js";

interface Subscription {
  /** Highest event sequence pushed to the client. */
  last: number;
  /** While missed events are read from Postgres, live ones wait here. */
  held: ChatMessage[] | undefined;
  member: boolean;
  unread: number;
  mentions: number;
  lastTypingMs: number;
}

/**
 * One event object per message, shared by every session on the instance:
 * with the serializer cache in service.ts the message is encoded once per
 * instance, not once per recipient.
 */
const messageEvents = new WeakMap<ChatMessage, ServerEvent>();
/** Likewise one presence batch (the same changes object reaches every local session of the room). */
const presenceEvents = new WeakMap<PresenceChanges, ServerEvent>();

/** A client this far behind is cut off (it reconnects and resumes from Postgres). */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
const TYPING_EVERY_MS = 2000;
const READ_MARK_DELAY_MS = 1000;

export class ChatSession implements RoomListener {
  readonly id = randomUUID();
  private readonly subs = new Map<string, Subscription>();
  private viewing: string | undefined;
  private closed = false;
  private endedWith: ParleyError | undefined;
  /** Resolves when end() is called: the command loop stops waiting for the client. */
  private noteEnded!: () => void;
  private readonly ended = new Promise<undefined>((resolve) => (this.noteEnded = () => resolve(undefined)));
  private readonly readMarks = new Map<string, number>();

  constructor(
    private readonly core: ChannelCore,
    readonly userId: string,
    private readonly stream: ServerDuplexStream<ClientCommand, ServerEvent>,
  ) {}

  get rooms(): number {
    return this.subs.size;
  }

  async run(signal: AbortSignal): Promise<void> {
    this.send({ event: { $case: "ready", value: { instanceId: this.core.instanceId, sessionId: this.id } } });
    // Not `for await`: leaving that loop (or ending the stream from here)
    // destroys the call before its status is sent, and a client ended with
    // commands still queued would wait on a dead stream.
    const commands = (this.stream as AsyncIterable<ClientCommand>)[Symbol.asyncIterator]();
    try {
      while (!signal.aborted && !this.closed) {
        const next = await Promise.race([commands.next(), this.ended]);
        if (!next || next.done || this.closed) break;
        const cmd = next.value;
        await this.handle(cmd).catch((err: unknown) => this.refuse(cmd, err));
      }
    } catch (err) {
      if (!this.endedWith) throw err;
    } finally {
      this.close();
    }
    // The handler's error becomes the call's status (bind sends it after queued events).
    if (this.endedWith) throw this.endedWith;
  }

  /** Ends the session with a status (instance shutting down: the client reconnects elsewhere). */
  end(err: ParleyError): void {
    if (this.closed) return;
    this.endedWith = err;
    this.close();
    // run() leaves its loop and reports err.
    this.noteEnded();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const room of this.subs.keys()) this.core.feeds.detach(room, this);
    this.subs.clear();
  }

  private async handle(cmd: ClientCommand): Promise<void> {
    const reason = malformedReason(cmd);
    if (reason) throw new ParleyError(status.INVALID_ARGUMENT, `the command is not a valid parley.v1.ClientCommand: ${reason}`);
    const c = cmd.command;
    switch (c?.$case) {
      case "subscribe":
        return this.subscribe(v.roomId("subscribe.room_id", c.value.roomId), v.seq("subscribe.after_seq", c.value.afterSeq), c.value.liveOnly);
      case "unsubscribe": {
        const room = v.roomId("unsubscribe.room_id", c.value.roomId);
        this.drop(room, "unsubscribed");
        return;
      }
      case "view":
        return this.view(c.value.roomId ? v.roomId("view.room_id", c.value.roomId) : undefined);
      case "typing": {
        const sub = this.subs.get(c.value.roomId);
        if (!sub?.member) throw new ParleyError(status.FAILED_PRECONDITION, `subscribe to room '${c.value.roomId}' as a member before typing in it`);
        const now = this.core.clock.now();
        if (now - sub.lastTypingMs < TYPING_EVERY_MS) return;
        sub.lastTypingMs = now;
        publishRoomEvent(this.core.bus, c.value.roomId, { kind: "typing", userId: this.userId, instanceId: this.core.instanceId });
        return;
      }
      default:
        throw new ParleyError(status.INVALID_ARGUMENT, "the command names no action (subscribe, unsubscribe, view or typing)");
    }
  }

  private async subscribe(roomId: string, afterSeq: number, liveOnly: boolean): Promise<void> {
    if (this.subs.has(roomId)) this.drop(roomId, "resubscribed");
    const access = existing(await this.core.store.access(this.core.store.pool, roomId, this.userId), roomId);
    if (!canRead(access)) throw new ParleyError(status.PERMISSION_DENIED, `you may not read room '${roomId}': it is invite-only and you are not a member`);
    const sub: Subscription = { last: afterSeq, held: [], member: access.role !== Role.ROLE_UNSPECIFIED, unread: 0, mentions: 0, lastTypingMs: 0 };
    if (liveOnly) sub.last = access.room.lastSeq;
    this.subs.set(roomId, sub);
    // Attach first: from here live events are held, so the read below misses nothing.
    const feed = await this.core.feeds.attach(roomId, this);
    if (this.subs.get(roomId) !== sub) return;
    for (;;) {
      const rows = await this.core.store.eventsAfter(roomId, sub.last, 500);
      if (this.subs.get(roomId) !== sub) return;
      for (const m of rows) this.push(sub, m);
      if (rows.length < 500) break;
    }
    const held = sub.held ?? [];
    sub.held = undefined;
    for (const m of held) if (m.eventSeq > sub.last) this.push(sub, m);
    this.send({ event: { $case: "caughtUp", value: { roomId, seq: sub.last } } });
    this.send({ event: { $case: "presence", value: { roomId, online: feed.presence.users, offline: [], onlineCount: feed.presence.users.length, full: true } } });
    if (sub.member) {
      const [u] = await this.core.store.unread(this.userId, roomId);
      if (u) {
        sub.unread = u.unread;
        sub.mentions = u.mentions;
        if (this.viewing === roomId) await this.markViewed(roomId, sub);
        else this.sendUnread(roomId, sub);
      }
    }
  }

  private async view(roomId: string | undefined): Promise<void> {
    this.viewing = roomId;
    const sub = roomId ? this.subs.get(roomId) : undefined;
    if (roomId && sub?.member && !sub.held) await this.markViewed(roomId, sub);
  }

  private async markViewed(roomId: string, sub: Subscription): Promise<void> {
    await this.core.store.markRead(roomId, this.userId, sub.last);
    sub.unread = 0;
    sub.mentions = 0;
    this.sendUnread(roomId, sub);
  }

  /** A busy room being viewed: one read-marker write per second, not one per message. */
  private markReadSoon(roomId: string, seq: number): void {
    const pending = this.readMarks.get(roomId);
    this.readMarks.set(roomId, Math.max(seq, pending ?? 0));
    if (pending !== undefined) return;
    setTimeout(() => {
      const upTo = this.readMarks.get(roomId)!;
      this.readMarks.delete(roomId);
      void this.core.store.markRead(roomId, this.userId, upTo).catch(() => undefined);
    }, READ_MARK_DELAY_MS).unref();
  }

  private drop(roomId: string, reason: string): void {
    if (!this.subs.delete(roomId)) return;
    this.core.feeds.detach(roomId, this);
    this.send({ event: { $case: "unsubscribed", value: { roomId, reason } } });
  }

  private push(sub: Subscription, m: ChatMessage): void {
    sub.last = m.eventSeq;
    let ev = messageEvents.get(m);
    if (!ev) messageEvents.set(m, (ev = { event: { $case: "message", value: m } }));
    this.send(ev);
  }

  private sendUnread(roomId: string, sub: Subscription): void {
    this.send({ event: { $case: "unread", value: { roomId, unread: sub.unread, mentions: sub.mentions, lastSeq: sub.last, lastReadSeq: 0 } } });
  }

  private send(ev: ServerEvent): void {
    if (this.closed && ev.event?.$case !== "unsubscribed") return;
    if (this.stream.writableLength > MAX_BUFFERED_BYTES) {
      this.end(new ResourceExhaustedError("the client reads too slowly; reconnect and resume from your last sequence"));
      return;
    }
    this.stream.write(ev);
  }

  private refuse(cmd: ClientCommand, err: unknown): void {
    const roomId = (cmd.command?.value as { roomId?: string } | undefined)?.roomId ?? "";
    if (!(err instanceof ParleyError)) this.core.log.error({ err, roomId }, "session command failed");
    const code = err instanceof ParleyError ? (status[err.code] ?? "UNKNOWN") : "INTERNAL";
    this.send({ event: { $case: "error", value: { roomId, code, message: err instanceof ParleyError ? err.message : "internal error" } } });
  }

  // ---- RoomListener ----

  onMessage(m: ChatMessage): void {
    const sub = this.subs.get(m.roomId);
    if (!sub) return;
    if (sub.held) {
      sub.held.push(m);
      return;
    }
    if (m.eventSeq <= sub.last) return;
    this.push(sub, m);
    const isNewPost = m.eventSeq === m.seq && m.author !== this.userId;
    if (!sub.member || !isNewPost) return;
    if (this.viewing === m.roomId) {
      this.markReadSoon(m.roomId, m.seq);
      return;
    }
    sub.unread++;
    if (m.mentions.includes(this.userId)) sub.mentions++;
    this.sendUnread(m.roomId, sub);
  }

  onTyping(roomId: string, userId: string): void {
    this.send({ event: { $case: "typing", value: { roomId, userId } } });
  }

  onPresence(roomId: string, c: PresenceChanges): void {
    let ev = presenceEvents.get(c);
    if (!ev) presenceEvents.set(c, (ev = { event: { $case: "presence", value: { roomId, online: c.online, offline: c.offline, onlineCount: c.count, full: false } } }));
    this.send(ev);
  }

  onMembership(roomId: string, userId: string, change: string, role: Role, by: string): void {
    this.send({ event: { $case: "membership", value: { roomId, userId, change, role, by } } });
    if (userId !== this.userId) return;
    const sub = this.subs.get(roomId);
    if (!sub) return;
    if (change === "kicked" || change === "left") this.drop(roomId, change);
    else if (change === "joined") sub.member = true;
  }

  onRoom(room: Room): void {
    if (this.subs.has(room.roomId)) this.send({ event: { $case: "room", value: { ...room, myRole: Role.ROLE_UNSPECIFIED } } });
  }
}
