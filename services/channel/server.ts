/**
 * gRPC handlers of the channel service: thin. Each validates, checks the
 * room rules, calls the store, publishes the change on the room's subject
 * and records the compliance event before answering.
 */
import { randomBytes } from "node:crypto";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnauthenticatedError } from "../common/errors.js";
import type { CallContext } from "../common/grpc.js";
import type * as pb from "../../generated/parley/v1/chat.js";
import type { ComplianceEvent } from "../common/compliance.js";
import type { ChannelCore } from "./core.js";
import { complianceId } from "./compliance-sweep.js";
import { publishRoomEvent } from "./feed.js";
import * as rules from "./rules.js";
import { ChatSession } from "./session.js";
import { Role, type ChatMessage, type Room } from "./types.js";
import * as v from "./validate.js";

const user = (ctx: CallContext) => {
  if (!ctx.session) throw new UnauthenticatedError("session required");
  return ctx.session.idn;
};

export function channelHandlers(core: ChannelCore) {
  const access = async (roomId: string, userId: string) => rules.existing(await core.store.access(core.store.pool, roomId, userId), roomId);
  const now = () => core.clock.now();

  /** Compliance first (the call fails if JetStream does not take it), then the live fan-out. */
  const record = async (ev: ComplianceEvent, id: string) => {
    try {
      await core.compliance.record(ev, id);
    } catch (err) {
      core.metrics.complianceFailures.inc();
      core.log.error({ err, kind: ev.kind, roomId: ev.roomId }, "compliance event not stored");
      throw new FailedPreconditionError("the change is stored but its compliance event could not be recorded; retry the call");
    }
  };
  const membership = async (roomId: string, userId: string, change: string, role: Role, by: string) => {
    const at = now();
    await record({ kind: `membership.${change}` as ComplianceEvent["kind"], roomId, actor: by, atMs: at, member: { userId, role } }, `mem:${roomId}:${userId}:${change}:${at}:${randomBytes(4).toString("hex")}`);
    publishRoomEvent(core.bus, roomId, { kind: "membership", userId, change, role, by });
  };
  const roomChanged = async (room: Room, kind: "room.created" | "room.updated" | "room.archived", actor: string) => {
    const at = now();
    await record({ kind, roomId: room.roomId, actor, atMs: at, room }, `room:${room.roomId}:${kind}:${at}:${randomBytes(4).toString("hex")}`);
    publishRoomEvent(core.bus, room.roomId, { kind: "room", room });
  };
  /**
   * The message is committed, so it is fanned out at once (it is in the room's
   * history anyway); the caller's acknowledgement still waits for the
   * compliance event.
   */
  const messageChanged = async (m: ChatMessage, kind: "message.posted" | "message.edited" | "message.deleted", actor: string) => {
    publishRoomEvent(core.bus, m.roomId, { kind: "message", message: m, sentAtMs: now() });
    await record({ kind, roomId: m.roomId, actor, atMs: now(), message: m }, complianceId(m));
    void core.store.markRecorded(m.roomId, m.eventSeq).catch(() => undefined); // the sweep covers a lost marker
    core.metrics.posts.inc({ kind: kind.slice("message.".length) });
  };

  return {
    session: async (ctx: CallContext, stream: ServerDuplexStream<pb.ClientCommand, pb.ServerEvent>): Promise<void> => {
      const s = new ChatSession(core, user(ctx), stream);
      core.sessions.add(s);
      core.metrics.sessions.inc();
      try {
        await s.run(ctx.signal);
      } finally {
        core.sessions.delete(s);
        core.metrics.sessions.dec();
      }
    },

    createRoom: async (req: pb.CreateRoomRequest, ctx: CallContext): Promise<Room> => {
      const me = user(ctx);
      const room = await core.store.createRoom(v.roomId("room_id", req.roomId), v.roomType(req.type), v.text("topic", req.topic, 500, true), v.text("description", req.description, 4000, true), me, now());
      await roomChanged(room, "room.created", me);
      return room;
    },

    updateRoom: async (req: pb.UpdateRoomRequest, ctx: CallContext): Promise<Room> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireRole(a, Role.ROLE_MANAGER, "changing the topic or description");
      rules.requireActive(a);
      const set: { topic?: string; description?: string } = {};
      for (const f of req.fields) {
        if (f === "topic") set.topic = v.text("topic", req.topic, 500, true);
        else if (f === "description") set.description = v.text("description", req.description, 4000, true);
        else throw new InvalidArgumentError(`fields: '${f}' cannot be updated (topic, description)`);
      }
      if (!req.fields.length) throw new InvalidArgumentError("fields names nothing to update (topic, description)");
      const room = await core.store.updateRoom(a.room.roomId, set, me);
      await roomChanged(room, "room.updated", me);
      return room;
    },

    archiveRoom: async (req: pb.RoomRef, ctx: CallContext): Promise<Room> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireRole(a, Role.ROLE_OWNER, "archiving");
      rules.requireActive(a);
      const room = await core.store.archiveRoom(a.room.roomId, me);
      await roomChanged(room, "room.archived", me);
      return room;
    },

    getRoom: async (req: pb.RoomRef, ctx: CallContext): Promise<pb.RoomDetails> => {
      const a = await access(v.roomId("room_id", req.roomId), user(ctx));
      rules.requireRead(a);
      const [members, invitations] = await Promise.all([core.store.members(a.room.roomId, 1000), a.role >= Role.ROLE_MANAGER ? core.store.roomInvitations(a.room.roomId) : []]);
      return { room: a.room, members, invitations };
    },

    listRooms: async (_req: pb.ListRoomsRequest, ctx: CallContext): Promise<pb.RoomList> => ({ rooms: await core.store.listRooms(user(ctx)) }),

    findRooms: async (req: pb.FindRoomsRequest, ctx: CallContext): Promise<pb.RoomList> => ({
      rooms: await core.store.findRooms(user(ctx), v.text("query", req.query, 200, true).trim(), Math.min(req.limit || 50, 200)),
    }),

    invite: async (req: pb.InviteRequest, ctx: CallContext): Promise<pb.Invitation> => {
      const me = user(ctx);
      const invitee = v.userId("user_id", req.userId);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireCanInvite(a);
      if (await core.store.isMember(a.room.roomId, invitee)) throw new FailedPreconditionError(`'${invitee}' is already a member of room '${a.room.roomId}'`);
      const { createdAtMs } = await core.store.invite(a.room.roomId, invitee, me, now());
      await membership(a.room.roomId, invitee, "invited", Role.ROLE_UNSPECIFIED, me);
      return { roomId: a.room.roomId, userId: invitee, invitedBy: me, createdAtMs };
    },

    acceptInvitation: async (req: pb.RoomRef, ctx: CallContext): Promise<pb.Membership> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      if (!a.invited) throw new NotFoundError(`you have no invitation to room '${a.room.roomId}'`);
      rules.requireActive(a);
      await core.store.addMember(a.room.roomId, me, Role.ROLE_MEMBER, now());
      await membership(a.room.roomId, me, "joined", Role.ROLE_MEMBER, me);
      return { roomId: a.room.roomId, userId: me, role: Role.ROLE_MEMBER };
    },

    declineInvitation: async (req: pb.RoomRef, ctx: CallContext): Promise<pb.Empty> => {
      const me = user(ctx);
      const roomId = v.roomId("room_id", req.roomId);
      if (!(await core.store.dropInvitation(roomId, me))) throw new NotFoundError(`you have no invitation to room '${roomId}'`);
      await membership(roomId, me, "declined", Role.ROLE_UNSPECIFIED, me);
      return {};
    },

    revokeInvitation: async (req: pb.InviteRequest, ctx: CallContext): Promise<pb.Empty> => {
      const me = user(ctx);
      const invitee = v.userId("user_id", req.userId);
      const a = await access(v.roomId("room_id", req.roomId), me);
      const invitation = (await core.store.roomInvitations(a.room.roomId)).find((i) => i.userId === invitee);
      if (!invitation) throw new NotFoundError(`'${invitee}' has no invitation to room '${a.room.roomId}'`);
      if (invitation.invitedBy !== me) rules.requireRole(a, Role.ROLE_MANAGER, "revoking another member's invitation");
      await core.store.dropInvitation(a.room.roomId, invitee);
      await membership(a.room.roomId, invitee, "revoked", Role.ROLE_UNSPECIFIED, me);
      return {};
    },

    listInvitations: async (_req: pb.Empty, ctx: CallContext): Promise<pb.InvitationList> => ({ invitations: await core.store.userInvitations(user(ctx)) }),

    join: async (req: pb.RoomRef, ctx: CallContext): Promise<pb.Membership> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireCanJoin(a);
      await core.store.addMember(a.room.roomId, me, Role.ROLE_MEMBER, now());
      await membership(a.room.roomId, me, "joined", Role.ROLE_MEMBER, me);
      return { roomId: a.room.roomId, userId: me, role: Role.ROLE_MEMBER };
    },

    leave: async (req: pb.RoomRef, ctx: CallContext): Promise<pb.Empty> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireMember(a);
      if (a.role === Role.ROLE_OWNER && (await core.store.owners(a.room.roomId)) === 1 && a.room.memberCount > 1) {
        throw new FailedPreconditionError(`you are the only owner of room '${a.room.roomId}': make another member owner first`);
      }
      await core.store.removeMember(a.room.roomId, me);
      await membership(a.room.roomId, me, "left", a.role, me);
      return {};
    },

    kick: async (req: pb.KickRequest, ctx: CallContext): Promise<pb.Empty> => {
      const me = user(ctx);
      const target = v.userId("user_id", req.userId);
      const a = await access(v.roomId("room_id", req.roomId), me);
      const t = await access(a.room.roomId, target);
      rules.requireCanKick(a, t.role, target);
      await core.store.removeMember(a.room.roomId, target, { by: me, now: now() });
      await membership(a.room.roomId, target, "kicked", t.role, me);
      return {};
    },

    setRole: async (req: pb.SetRoleRequest, ctx: CallContext): Promise<pb.Membership> => {
      const me = user(ctx);
      const target = v.userId("user_id", req.userId);
      if (![Role.ROLE_MEMBER, Role.ROLE_MANAGER, Role.ROLE_OWNER].includes(req.role)) throw new InvalidArgumentError("role must be ROLE_MEMBER, ROLE_MANAGER or ROLE_OWNER");
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireRole(a, Role.ROLE_OWNER, "changing roles");
      if (target === me && req.role !== Role.ROLE_OWNER && (await core.store.owners(a.room.roomId)) === 1) {
        throw new FailedPreconditionError(`you are the only owner of room '${a.room.roomId}': make another member owner first`);
      }
      await core.store.setRole(a.room.roomId, target, req.role);
      await membership(a.room.roomId, target, "role", req.role, me);
      return { roomId: a.room.roomId, userId: target, role: req.role };
    },

    post: async (req: pb.PostRequest, ctx: CallContext): Promise<ChatMessage> => {
      const started = performance.now();
      const me = user(ctx);
      const text = v.text("text", req.text, core.limits.maxMessageChars, req.attachments.length > 0);
      const attachments = v.attachments(req.attachments, core.limits);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireMember(a);
      rules.requireActive(a);
      const replyTo = v.seq("reply_to", req.replyTo);
      if (replyTo && !(await core.store.getMessage(a.room.roomId, replyTo))) throw new NotFoundError(`reply_to: room '${a.room.roomId}' has no message ${replyTo}`);
      const mentions = [...new Set([...req.mentions.map((m) => v.userId("mentions", m)), ...rules.mentionsIn(text)])];
      if (mentions.length > core.limits.maxMentions) throw new InvalidArgumentError(`${mentions.length} mentions; at most ${core.limits.maxMentions}`);
      const { message } = await core.posts.post(
        { roomId: a.room.roomId, author: me, clientMessageId: v.clientMessageId(req.clientMessageId), text, replyTo, mentions, attachments },
      );
      // A retried post (duplicate) records and publishes again: both are idempotent by sequence.
      await messageChanged(message, "message.posted", me);
      core.metrics.postSeconds.observe((performance.now() - started) / 1000);
      return message;
    },

    edit: async (req: pb.EditRequest, ctx: CallContext): Promise<ChatMessage> => {
      const me = user(ctx);
      const text = v.text("text", req.text, core.limits.maxMessageChars);
      const a = await access(v.roomId("room_id", req.roomId), me);
      const old = await core.store.getMessage(a.room.roomId, v.seq("seq", req.seq));
      if (!old || old.deleted) throw new NotFoundError(`room '${a.room.roomId}' has no message ${req.seq}`);
      rules.requireCanEdit(a, old.author, me);
      const m = await core.store.change(a.room.roomId, old.seq, { text }, now());
      await messageChanged(m, "message.edited", me);
      return m;
    },

    delete: async (req: pb.DeleteRequest, ctx: CallContext): Promise<ChatMessage> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      const old = await core.store.getMessage(a.room.roomId, v.seq("seq", req.seq));
      if (!old || old.deleted) throw new NotFoundError(`room '${a.room.roomId}' has no message ${req.seq}`);
      rules.requireCanDelete(a, old.author, me);
      const m = await core.store.change(a.room.roomId, old.seq, { delete: true }, now());
      await messageChanged(m, "message.deleted", me);
      // The files go with the message (the file service removes them from storage).
      for (const f of old.attachments) await core.files.deleteFile(a.room.roomId, f.fileId);
      return m;
    },

    history: async (req: pb.HistoryRequest, ctx: CallContext): Promise<pb.HistoryPage> => {
      const a = await access(v.roomId("room_id", req.roomId), user(ctx));
      rules.requireRead(a);
      const limit = Math.min(req.limit || 50, core.limits.maxHistoryPage);
      const messages = await core.store.history(a.room.roomId, v.seq("before_seq", req.beforeSeq), limit);
      const oldest = messages.at(-1)?.seq ?? 0;
      return { messages, nextBeforeSeq: messages.length === limit && oldest > 1 ? oldest : 0 };
    },

    search: async (req: pb.SearchRequest, ctx: CallContext): Promise<pb.SearchResult> => {
      const query = v.text("query", req.query, 500).trim();
      const roomId = req.roomId ? v.roomId("room_id", req.roomId) : "";
      return { messages: await core.store.search(user(ctx), query, roomId, Math.min(req.limit || 20, core.limits.maxSearchResults)) };
    },

    getUnread: async (_req: pb.Empty, ctx: CallContext): Promise<pb.UnreadList> => ({ rooms: await core.store.unread(user(ctx)) }),

    markRead: async (req: pb.MarkReadRequest, ctx: CallContext): Promise<pb.Empty> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireMember(a);
      await core.store.markRead(a.room.roomId, me, v.seq("seq", req.seq));
      return {};
    },

    getPresence: async (req: pb.RoomRef, ctx: CallContext): Promise<pb.PresenceList> => {
      const a = await access(v.roomId("room_id", req.roomId), user(ctx));
      rules.requireRead(a);
      const feed = await core.feeds.get(a.room.roomId);
      if (!feed) throw new FailedPreconditionError(`subscribe to room '${a.room.roomId}' in a session to follow its presence`);
      return { roomId: a.room.roomId, online: feed.presence.users.sort() };
    },

    issueUploadToken: async (req: pb.UploadTokenRequest, ctx: CallContext): Promise<pb.FileToken> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireMember(a);
      rules.requireActive(a);
      if (req.size < 0 || req.size > core.files.maxFileBytes) throw new InvalidArgumentError(`size ${req.size} is over the ${core.files.maxFileBytes}-byte file limit`);
      // Hex: an id never starts with "-", so it is safe as a command-line argument.
      const fileId = randomBytes(16).toString("hex");
      const { token, expiresAtMs } = core.files.tokens.issue({ op: "upload", room: a.room.roomId, file: fileId, sub: me, maxBytes: core.files.maxFileBytes }, core.files.tokenTtlMs);
      return { token, fileId, path: `/v1/files/${a.room.roomId}/${fileId}`, expiresAtMs, fileServiceUrls: core.files.urls };
    },

    issueDownloadToken: async (req: pb.DownloadTokenRequest, ctx: CallContext): Promise<pb.FileToken> => {
      const me = user(ctx);
      const a = await access(v.roomId("room_id", req.roomId), me);
      rules.requireRead(a);
      if (!v.FILE_ID.test(req.fileId)) throw new InvalidArgumentError("file_id is not a valid file id");
      if (!(await core.store.fileAttached(a.room.roomId, req.fileId))) throw new NotFoundError(`no message in room '${a.room.roomId}' has file '${req.fileId}'`);
      const { token, expiresAtMs } = core.files.tokens.issue({ op: "download", room: a.room.roomId, file: req.fileId, sub: me }, core.files.tokenTtlMs);
      return { token, fileId: req.fileId, path: `/v1/files/${a.room.roomId}/${req.fileId}`, expiresAtMs, fileServiceUrls: core.files.urls };
    },
  };
}
