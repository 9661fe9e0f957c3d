/**
 * The chat SDK: asks a lookup replica for a channel instance, calls it with
 * the relay-issued session token, and keeps a live session that survives
 * the instance going away — it asks lookup again (avoiding the failed
 * instance), reconnects and resubscribes with the last sequence it saw per
 * room, so nothing is missed and nothing is shown twice.
 *
 *   const chat = ChatClient.create({ relay, lookup: ["127.0.0.1:50053"] });
 *   await chat.createRoom("general");
 *   const live = chat.live({ onEvent: (e) => console.log(e) });
 *   live.subscribe("general");
 *   await chat.post("general", "hello @bob");
 */
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as pb from "../generated/parley/v1/chat.js";
import { LookupClient, type Assignment } from "../generated/parley/v1/lookup.js";
import { fromServiceError, isRetryable, ParleyClientError } from "./errors.js";
import type { RelayClient } from "./relay.js";
import { backoffMs, delay } from "./delay.js";

export { Role, RoomType } from "../generated/parley/v1/chat.js";
export type { ChatMessage, Room, ServerEvent } from "../generated/parley/v1/chat.js";

export interface ChatClientOptions {
  /** Signs in (challenge-response) and renews the session token. */
  relay: RelayClient;
  /** Lookup replica addresses; tried in turn. */
  lookup: string[];
  /** Skip lookup and use this channel instance (tests, `parley up`). */
  channel?: string;
  deadlineMs?: number;
  maxAttempts?: number;
}

export interface LiveOptions {
  onEvent: (e: pb.ServerEvent) => void;
  /** Called when the session broke and is being re-established elsewhere. */
  onReconnect?: (err: Error, attempt: number) => void;
  /** Called each time a session is (re)established, with the instance serving it. */
  onConnected?: (instanceId: string) => void;
}

const CHANNEL_OPTIONS = { "grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 2000 };
type Unary<T> = (c: pb.ChannelClient, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: T) => void) => void;

export class ChatClient {
  private token: { value: string; expiresAtMs: number } | undefined;
  private assigned: { id: string; address: string; client: pb.ChannelClient } | undefined;
  private assigning: Promise<{ id: string; address: string; client: pb.ChannelClient }> | undefined;
  private readonly lookups: LookupClient[];
  private lookupIndex = 0;
  private readonly sessions = new Set<LiveSession>();

  private constructor(private readonly opts: ChatClientOptions) {
    this.lookups = opts.lookup.map((a) => new LookupClient(a, grpc.credentials.createInsecure()));
    if (!this.lookups.length && !opts.channel) throw new Error("ChatClient needs lookup addresses or a channel address");
  }

  static create(opts: ChatClientOptions): ChatClient {
    return new ChatClient(opts);
  }

  /** Closes the client and every live session it started. */
  close(): void {
    for (const s of this.sessions) s.close();
    this.sessions.clear();
    for (const l of this.lookups) l.close();
    this.assigned?.client.close();
  }

  /** The instance serving this client now (after the first call). */
  get instanceId(): string | undefined {
    return this.assigned?.id;
  }

  async metadata(): Promise<grpc.Metadata> {
    if (!this.token || this.token.expiresAtMs - 30_000 < Date.now()) {
      const s = await this.opts.relay.authenticate();
      this.token = { value: s.token, expiresAtMs: s.expiresAtMs };
    }
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${this.token.value}`);
    return md;
  }

  /** Asks lookup replicas in turn for an instance, avoiding `exclude` if others are live. */
  async assign(exclude: string[] = []): Promise<Assignment> {
    if (this.opts.channel) return { instanceId: this.opts.channel, address: this.opts.channel };
    let last: Error | undefined;
    for (let i = 0; i < this.lookups.length; i++) {
      const l = this.lookups[(this.lookupIndex + i) % this.lookups.length]!;
      try {
        const md = await this.metadata();
        return await new Promise<Assignment>((resolve, reject) =>
          l.assign({ exclude }, md, { deadline: Date.now() + (this.opts.deadlineMs ?? 5000) }, (err, res) => (err ? reject(err) : resolve(res))),
        );
      } catch (err) {
        last = fromServiceError(err);
        this.lookupIndex = (this.lookupIndex + 1) % this.lookups.length;
      }
    }
    throw last ?? new Error("no lookup replica answered");
  }

  /**
   * The assigned instance's client. Concurrent callers share one assignment
   * (otherwise each would replace, and close, the client the others use).
   */
  private async channel(exclude: string[] = []): Promise<{ id: string; client: pb.ChannelClient }> {
    if (this.assigned && !exclude.includes(this.assigned.id)) return this.assigned;
    this.assigning ??= (async () => {
      const a = await this.assign(exclude);
      this.assigned?.client.close();
      this.assigned = { id: a.instanceId, address: a.address, client: new pb.ChannelClient(a.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) };
      return this.assigned;
    })().finally(() => (this.assigning = undefined));
    return this.assigning;
  }

  /** A unary call on the assigned instance; on UNAVAILABLE it is reassigned and the call retried. */
  private async unary<T>(call: Unary<T>): Promise<T> {
    const maxAttempts = this.opts.maxAttempts ?? 6;
    const failed: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const ch = await this.channel(failed);
      try {
        const md = await this.metadata();
        return await new Promise<T>((resolve, reject) =>
          call(ch.client, md, { deadline: Date.now() + (this.opts.deadlineMs ?? 15_000) }, (err, res) => (err ? reject(err) : resolve(res))),
        );
      } catch (err) {
        const e = fromServiceError(err);
        // A call on a client another call had meanwhile replaced (and closed) is simply retried.
        const replaced = this.assigned !== ch;
        if (attempt >= maxAttempts || (!isRetryable(e) && !replaced)) throw e;
        if (!replaced) failed.push(ch.id);
        await delay(Math.min(1000, 50 * 2 ** attempt));
      }
    }
  }

  createRoom(roomId: string, opts: { type?: pb.RoomType; topic?: string; description?: string } = {}): Promise<pb.Room> {
    const req = { roomId, type: opts.type ?? pb.RoomType.ROOM_TYPE_OPEN, topic: opts.topic ?? "", description: opts.description ?? "" };
    return this.unary((c, md, o, cb) => c.createRoom(req, md, o, cb));
  }
  updateRoom(roomId: string, set: { topic?: string; description?: string }): Promise<pb.Room> {
    const fields = Object.keys(set).filter((k) => (set as Record<string, unknown>)[k] !== undefined);
    return this.unary((c, md, o, cb) => c.updateRoom({ roomId, fields, topic: set.topic ?? "", description: set.description ?? "" }, md, o, cb));
  }
  archiveRoom(roomId: string): Promise<pb.Room> {
    return this.unary((c, md, o, cb) => c.archiveRoom({ roomId }, md, o, cb));
  }
  getRoom(roomId: string): Promise<pb.RoomDetails> {
    return this.unary((c, md, o, cb) => c.getRoom({ roomId }, md, o, cb));
  }
  async listRooms(): Promise<pb.Room[]> {
    return (await this.unary<pb.RoomList>((c, md, o, cb) => c.listRooms({}, md, o, cb))).rooms;
  }
  async findRooms(query: string, limit = 50): Promise<pb.Room[]> {
    return (await this.unary<pb.RoomList>((c, md, o, cb) => c.findRooms({ query, limit }, md, o, cb))).rooms;
  }
  invite(roomId: string, userId: string): Promise<pb.Invitation> {
    return this.unary((c, md, o, cb) => c.invite({ roomId, userId }, md, o, cb));
  }
  accept(roomId: string): Promise<pb.Membership> {
    return this.unary((c, md, o, cb) => c.acceptInvitation({ roomId }, md, o, cb));
  }
  async decline(roomId: string): Promise<void> {
    await this.unary((c, md, o, cb) => c.declineInvitation({ roomId }, md, o, cb));
  }
  async revoke(roomId: string, userId: string): Promise<void> {
    await this.unary((c, md, o, cb) => c.revokeInvitation({ roomId, userId }, md, o, cb));
  }
  async invitations(): Promise<pb.Invitation[]> {
    return (await this.unary<pb.InvitationList>((c, md, o, cb) => c.listInvitations({}, md, o, cb))).invitations;
  }
  join(roomId: string): Promise<pb.Membership> {
    return this.unary((c, md, o, cb) => c.join({ roomId }, md, o, cb));
  }
  async leave(roomId: string): Promise<void> {
    await this.unary((c, md, o, cb) => c.leave({ roomId }, md, o, cb));
  }
  async kick(roomId: string, userId: string): Promise<void> {
    await this.unary((c, md, o, cb) => c.kick({ roomId, userId }, md, o, cb));
  }
  setRole(roomId: string, userId: string, role: pb.Role): Promise<pb.Membership> {
    return this.unary((c, md, o, cb) => c.setRole({ roomId, userId, role }, md, o, cb));
  }

  /** Posts once even when retried across instances (one client message id for all attempts). */
  post(roomId: string, text: string, opts: { replyTo?: number; mentions?: string[]; attachments?: pb.Attachment[]; clientMessageId?: string } = {}): Promise<pb.ChatMessage> {
    const req = { roomId, clientMessageId: opts.clientMessageId ?? randomUUID(), text, replyTo: opts.replyTo ?? 0, mentions: opts.mentions ?? [], attachments: opts.attachments ?? [] };
    return this.unary((c, md, o, cb) => c.post(req, md, o, cb));
  }
  edit(roomId: string, seq: number, text: string): Promise<pb.ChatMessage> {
    return this.unary((c, md, o, cb) => c.edit({ roomId, seq, text }, md, o, cb));
  }
  delete(roomId: string, seq: number): Promise<pb.ChatMessage> {
    return this.unary((c, md, o, cb) => c.delete({ roomId, seq }, md, o, cb));
  }
  history(roomId: string, opts: { beforeSeq?: number; limit?: number } = {}): Promise<pb.HistoryPage> {
    return this.unary((c, md, o, cb) => c.history({ roomId, beforeSeq: opts.beforeSeq ?? 0, limit: opts.limit ?? 50 }, md, o, cb));
  }
  async search(query: string, opts: { roomId?: string; limit?: number } = {}): Promise<pb.ChatMessage[]> {
    return (await this.unary<pb.SearchResult>((c, md, o, cb) => c.search({ query, roomId: opts.roomId ?? "", limit: opts.limit ?? 20 }, md, o, cb))).messages;
  }
  async unread(): Promise<pb.Unread[]> {
    return (await this.unary<pb.UnreadList>((c, md, o, cb) => c.getUnread({}, md, o, cb))).rooms;
  }
  async markRead(roomId: string, seq: number): Promise<void> {
    await this.unary((c, md, o, cb) => c.markRead({ roomId, seq }, md, o, cb));
  }
  async presence(roomId: string): Promise<string[]> {
    return (await this.unary<pb.PresenceList>((c, md, o, cb) => c.getPresence({ roomId }, md, o, cb))).online;
  }
  uploadToken(roomId: string, name: string, contentType: string, size: number): Promise<pb.FileToken> {
    return this.unary((c, md, o, cb) => c.issueUploadToken({ roomId, name, contentType, size }, md, o, cb));
  }
  downloadToken(roomId: string, fileId: string): Promise<pb.FileToken> {
    return this.unary((c, md, o, cb) => c.issueDownloadToken({ roomId, fileId }, md, o, cb));
  }

  /** A live session that reconnects by itself; see LiveSession. */
  live(opts: LiveOptions): LiveSession {
    const s = new LiveSession(this, opts);
    this.sessions.add(s);
    void s.run().finally(() => this.sessions.delete(s));
    return s;
  }

  /** @internal used by LiveSession */
  async openStream(exclude: string[]): Promise<{ id: string; call: grpc.ClientDuplexStream<pb.ClientCommand, pb.ServerEvent> }> {
    const ch = await this.channel(exclude);
    return { id: ch.id, call: ch.client.session(await this.metadata()) };
  }
}

/**
 * Subscriptions and the last sequence seen per room, kept across
 * reconnects. Events are passed on only once: a message whose event
 * sequence is not above the room's last is dropped.
 */
export class LiveSession {
  private readonly rooms = new Map<string, { last: number; liveOnly: boolean }>();
  private call: grpc.ClientDuplexStream<pb.ClientCommand, pb.ServerEvent> | undefined;
  private viewing: string | undefined;
  private closed = false;
  /** Why the session stopped for good, if it did. */
  failure: Error | undefined;
  private readonly abort = new AbortController();
  done: Promise<void> = Promise.resolve();

  constructor(private readonly chat: ChatClient, private readonly opts: LiveOptions) {}

  /** Follows a room from afterSeq (default: only new events). */
  subscribe(roomId: string, afterSeq?: number): void {
    const cur = this.rooms.get(roomId);
    const r = { last: afterSeq ?? cur?.last ?? 0, liveOnly: afterSeq === undefined && !cur };
    this.rooms.set(roomId, r);
    this.write({ command: { $case: "subscribe", value: { roomId, afterSeq: r.last, liveOnly: r.liveOnly } } });
  }

  unsubscribe(roomId: string): void {
    this.rooms.delete(roomId);
    this.write({ command: { $case: "unsubscribe", value: { roomId } } });
  }

  view(roomId: string | undefined): void {
    this.viewing = roomId;
    this.write({ command: { $case: "view", value: { roomId: roomId ?? "" } } });
  }

  typing(roomId: string): void {
    this.write({ command: { $case: "typing", value: { roomId } } });
  }

  lastSeq(roomId: string): number {
    return this.rooms.get(roomId)?.last ?? 0;
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
    this.call?.cancel();
  }

  private write(cmd: pb.ClientCommand): void {
    if (this.call && !this.closed) this.call.write(cmd);
  }

  /** @internal */
  run(): Promise<void> {
    this.done = this.loop();
    return this.done;
  }

  private async loop(): Promise<void> {
    const failed: string[] = [];
    for (let attempt = 0; !this.closed; ) {
      let instance: string | undefined;
      try {
        const { id, call } = await this.chat.openStream(failed.slice(-1));
        instance = id;
        this.call = call;
        for await (const ev of call as AsyncIterable<pb.ServerEvent>) {
          const e = ev.event;
          if (e?.$case === "ready") {
            attempt = 0;
            for (const [roomId, r] of this.rooms) call.write({ command: { $case: "subscribe", value: { roomId, afterSeq: r.last, liveOnly: r.liveOnly } } });
            if (this.viewing) call.write({ command: { $case: "view", value: { roomId: this.viewing } } });
            this.opts.onConnected?.(e.value.instanceId);
          } else if (e?.$case === "message") {
            const r = this.rooms.get(e.value.roomId);
            if (!r || e.value.eventSeq <= r.last) continue;
            r.last = e.value.eventSeq;
            r.liveOnly = false;
          } else if (e?.$case === "caughtUp") {
            const r = this.rooms.get(e.value.roomId);
            if (r) {
              r.last = Math.max(r.last, e.value.seq);
              r.liveOnly = false;
            }
          }
          this.opts.onEvent(ev);
        }
        if (this.closed) return;
        throw new ParleyClientError(grpc.status.UNAVAILABLE, "the channel instance ended the session");
      } catch (err) {
        if (this.closed) return;
        const e = fromServiceError(err);
        if (!isRetryable(e) && !(e instanceof ParleyClientError && e.code === grpc.status.RESOURCE_EXHAUSTED)) {
          // Not worth retrying (e.g. the token was refused): stop and report it.
          this.failure = e;
          this.opts.onReconnect?.(e, -1);
          return;
        }
        if (instance) failed.push(instance);
        attempt++;
        this.opts.onReconnect?.(e, attempt);
        await delay(backoffMs(attempt, 50), this.abort.signal);
      } finally {
        this.call = undefined;
      }
    }
  }
}
