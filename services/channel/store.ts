/**
 * SQL of the channel service. Permission checks live in rules.ts; this file
 * only reads and writes, each multi-row change in one transaction.
 */
import { randomUUID } from "node:crypto";
import { tx, type Pool, type PoolClient, type Queryable } from "../common/db.js";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError } from "../common/errors.js";
import { Role, RoomType, type Attachment, type ChatMessage, type Room, type RoomAccess } from "./types.js";

const ROOM_COLUMNS = "r.id, r.type, r.topic, r.description, r.archived, r.created_by, r.created_at_ms, r.last_seq, r.member_count";
const MESSAGE_COLUMNS = "room_id, seq, event_seq, message_id, author, body, reply_to, mentions, attachments, created_at_ms, edited_at_ms, deleted";

interface RoomRow { id: string; type: number; topic: string; description: string; archived: boolean; created_by: string; created_at_ms: number; last_seq: number; member_count: number; role?: number | null }
interface MessageRow { room_id: string; seq: number; event_seq: number; message_id: string; author: string; body: string; reply_to: number; mentions: string[]; attachments: Attachment[]; created_at_ms: number; edited_at_ms: number; deleted: boolean }

function toRoom(r: RoomRow): Room {
  return {
    roomId: r.id, type: r.type as RoomType, topic: r.topic, description: r.description, archived: r.archived,
    createdBy: r.created_by, createdAtMs: r.created_at_ms, lastSeq: r.last_seq, memberCount: r.member_count,
    myRole: (r.role ?? Role.ROLE_UNSPECIFIED) as Role,
  };
}

export function toMessage(r: MessageRow): ChatMessage {
  return {
    roomId: r.room_id, seq: r.seq, eventSeq: r.event_seq, messageId: r.message_id, author: r.author, text: r.body,
    replyTo: r.reply_to, mentions: r.mentions, attachments: r.attachments, createdAtMs: r.created_at_ms,
    editedAtMs: r.edited_at_ms, deleted: r.deleted,
  };
}

export interface NewMessage {
  roomId: string;
  author: string;
  clientMessageId: string;
  text: string;
  replyTo: number;
  mentions: string[];
  attachments: Attachment[];
}

export class ChannelStore {
  constructor(readonly pool: Pool) {}

  async createRoom(id: string, type: RoomType, topic: string, description: string, owner: string, now: number): Promise<Room> {
    return tx(this.pool, async (c) => {
      const ins = await c.query(
        "INSERT INTO rooms (id, type, topic, description, created_by, created_at_ms, member_count) VALUES ($1,$2,$3,$4,$5,$6,1) ON CONFLICT DO NOTHING",
        [id, type, topic, description, owner, now],
      );
      if (!ins.rowCount) throw new AlreadyExistsError(`room '${id}' already exists`);
      await c.query("INSERT INTO members (room_id, user_id, role, joined_at_ms) VALUES ($1,$2,$3,$4)", [id, owner, Role.ROLE_OWNER, now]);
      return (await this.access(c, id, owner))!.room;
    });
  }

  /** The room and the user's standing in it; undefined when the room does not exist. */
  async access(q: Queryable, roomId: string, userId: string, lock = false): Promise<RoomAccess | undefined> {
    const { rows } = await q.query<RoomRow & { banned: boolean; invited: boolean; last_read_seq: number | null }>(
      `SELECT ${ROOM_COLUMNS}, m.role, m.last_read_seq,
         EXISTS (SELECT 1 FROM bans b WHERE b.room_id = r.id AND b.user_id = $2) AS banned,
         EXISTS (SELECT 1 FROM invitations i WHERE i.room_id = r.id AND i.user_id = $2) AS invited
       FROM rooms r LEFT JOIN members m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1${lock ? " FOR UPDATE OF r" : ""}`,
      [roomId, userId],
    );
    const r = rows[0];
    if (!r) return undefined;
    return { room: toRoom(r), role: (r.role ?? Role.ROLE_UNSPECIFIED) as Role, banned: r.banned, invited: r.invited, lastReadSeq: r.last_read_seq ?? 0 };
  }

  async updateRoom(roomId: string, set: { topic?: string; description?: string }, userId: string): Promise<Room> {
    await this.pool.query("UPDATE rooms SET topic = COALESCE($2, topic), description = COALESCE($3, description) WHERE id = $1", [roomId, set.topic ?? null, set.description ?? null]);
    return (await this.access(this.pool, roomId, userId))!.room;
  }

  async archiveRoom(roomId: string, userId: string): Promise<Room> {
    await this.pool.query("UPDATE rooms SET archived = true WHERE id = $1", [roomId]);
    return (await this.access(this.pool, roomId, userId))!.room;
  }

  async listRooms(userId: string): Promise<Room[]> {
    const { rows } = await this.pool.query<RoomRow>(`SELECT ${ROOM_COLUMNS}, m.role FROM rooms r JOIN members m ON m.room_id = r.id AND m.user_id = $1 ORDER BY r.id`, [userId]);
    return rows.map(toRoom);
  }

  /** Open rooms and the user's own rooms matching the words (all rooms of those when the query is empty). */
  async findRooms(userId: string, query: string, limit: number): Promise<Room[]> {
    const { rows } = await this.pool.query<RoomRow>(
      `SELECT ${ROOM_COLUMNS}, m.role FROM rooms r LEFT JOIN members m ON m.room_id = r.id AND m.user_id = $1
       WHERE (r.type = ${RoomType.ROOM_TYPE_OPEN} OR m.user_id IS NOT NULL)
         AND ($2 = '' OR r.search @@ websearch_to_tsquery('simple', $2) OR r.id LIKE '%' || $2 || '%')
       ORDER BY r.id LIMIT $3`,
      [userId, query, limit],
    );
    return rows.map(toRoom);
  }

  async members(roomId: string, limit: number): Promise<Array<{ userId: string; role: Role; joinedAtMs: number }>> {
    const { rows } = await this.pool.query<{ user_id: string; role: number; joined_at_ms: number }>(
      "SELECT user_id, role, joined_at_ms FROM members WHERE room_id = $1 ORDER BY role DESC, user_id LIMIT $2",
      [roomId, limit],
    );
    return rows.map((r) => ({ userId: r.user_id, role: r.role as Role, joinedAtMs: r.joined_at_ms }));
  }

  async isMember(roomId: string, userId: string): Promise<boolean> {
    const { rowCount } = await this.pool.query("SELECT 1 FROM members WHERE room_id = $1 AND user_id = $2", [roomId, userId]);
    return !!rowCount;
  }

  async roomInvitations(roomId: string): Promise<Array<{ roomId: string; userId: string; invitedBy: string; createdAtMs: number }>> {
    const { rows } = await this.pool.query("SELECT room_id, user_id, invited_by, created_at_ms FROM invitations WHERE room_id = $1 ORDER BY created_at_ms", [roomId]);
    return rows.map((r) => ({ roomId: r.room_id, userId: r.user_id, invitedBy: r.invited_by, createdAtMs: r.created_at_ms }));
  }

  async userInvitations(userId: string): Promise<Array<{ roomId: string; userId: string; invitedBy: string; createdAtMs: number }>> {
    const { rows } = await this.pool.query("SELECT room_id, user_id, invited_by, created_at_ms FROM invitations WHERE user_id = $1 ORDER BY created_at_ms", [userId]);
    return rows.map((r) => ({ roomId: r.room_id, userId: r.user_id, invitedBy: r.invited_by, createdAtMs: r.created_at_ms }));
  }

  async invite(roomId: string, userId: string, by: string, now: number): Promise<{ createdAtMs: number }> {
    const { rows } = await this.pool.query<{ created_at_ms: number }>(
      `INSERT INTO invitations (room_id, user_id, invited_by, created_at_ms) VALUES ($1,$2,$3,$4)
       ON CONFLICT (room_id, user_id) DO UPDATE SET invited_by = invitations.invited_by RETURNING created_at_ms`,
      [roomId, userId, by, now],
    );
    return { createdAtMs: rows[0]!.created_at_ms };
  }

  /** Removes a pending invitation; false when there was none. */
  async dropInvitation(roomId: string, userId: string): Promise<boolean> {
    const { rowCount } = await this.pool.query("DELETE FROM invitations WHERE room_id = $1 AND user_id = $2", [roomId, userId]);
    return !!rowCount;
  }

  /** Adds a member (consuming an invitation and lifting a ban); false when already a member. */
  async addMember(roomId: string, userId: string, role: Role, now: number): Promise<boolean> {
    return tx(this.pool, async (c) => {
      await c.query("DELETE FROM invitations WHERE room_id = $1 AND user_id = $2", [roomId, userId]);
      await c.query("DELETE FROM bans WHERE room_id = $1 AND user_id = $2", [roomId, userId]);
      const ins = await c.query(
        "INSERT INTO members (room_id, user_id, role, joined_at_ms, last_read_seq) SELECT $1, $2, $3, $4, last_seq FROM rooms WHERE id = $1 ON CONFLICT DO NOTHING",
        [roomId, userId, role, now],
      );
      if (ins.rowCount) await c.query("UPDATE rooms SET member_count = member_count + 1 WHERE id = $1", [roomId]);
      return !!ins.rowCount;
    });
  }

  /** Removes a member, and bans them when kicked. */
  async removeMember(roomId: string, userId: string, ban?: { by: string; now: number }): Promise<void> {
    await tx(this.pool, async (c) => {
      const del = await c.query("DELETE FROM members WHERE room_id = $1 AND user_id = $2", [roomId, userId]);
      if (!del.rowCount) throw new NotFoundError(`'${userId}' is not a member of room '${roomId}'`);
      await c.query("UPDATE rooms SET member_count = member_count - 1 WHERE id = $1", [roomId]);
      if (ban) {
        await c.query("INSERT INTO bans (room_id, user_id, by_user, at_ms) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING", [roomId, userId, ban.by, ban.now]);
        await c.query("DELETE FROM invitations WHERE room_id = $1 AND user_id = $2", [roomId, userId]);
      }
    });
  }

  async owners(roomId: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM members WHERE room_id = $1 AND role = $2", [roomId, Role.ROLE_OWNER]);
    return rows[0]!.n;
  }

  async setRole(roomId: string, userId: string, role: Role): Promise<void> {
    const { rowCount } = await this.pool.query("UPDATE members SET role = $3 WHERE room_id = $1 AND user_id = $2", [roomId, userId, role]);
    if (!rowCount) throw new NotFoundError(`'${userId}' is not a member of room '${roomId}'`);
  }

  /** Takes the room's next sequence; the row lock orders the room's commits. */
  private async nextSeq(c: PoolClient, roomId: string): Promise<number> {
    const { rows } = await c.query<{ last_seq: number }>("UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 AND NOT archived RETURNING last_seq", [roomId]);
    if (!rows[0]) throw new FailedPreconditionError(`room '${roomId}' is archived`);
    return rows[0].last_seq;
  }

  /** Stores a post; a retry with the same client id returns the stored message (duplicate: true). */
  async post(m: NewMessage, now: number): Promise<{ message: ChatMessage; duplicate: boolean }> {
    return tx(this.pool, async (c) => {
      const existing = await c.query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND author = $2 AND client_message_id = $3`, [m.roomId, m.author, m.clientMessageId]);
      if (existing.rows[0]) return { message: toMessage(existing.rows[0]), duplicate: true };
      const seq = await this.nextSeq(c, m.roomId);
      const { rows } = await c.query<MessageRow>(
        `INSERT INTO messages (room_id, seq, event_seq, message_id, author, client_message_id, body, reply_to, mentions, attachments, created_at_ms)
         VALUES ($1,$2,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING ${MESSAGE_COLUMNS}`,
        [m.roomId, seq, randomUUID(), m.author, m.clientMessageId, m.text, m.replyTo, m.mentions, JSON.stringify(m.attachments), now],
      );
      for (const a of m.attachments) {
        await c.query("INSERT INTO message_files (room_id, file_id, seq) VALUES ($1,$2,$3)", [m.roomId, a.fileId, seq]).catch((err: { code?: string }) => {
          if (err.code === "23505") throw new AlreadyExistsError(`file '${a.fileId}' is already attached to another message`);
          throw err;
        });
      }
      return { message: toMessage(rows[0]!), duplicate: false };
    });
  }

  /**
   * Stores several posts to one room in one transaction: one sequence bump,
   * one commit (one WAL flush) for all, so a busy room's throughput is not
   * one post per commit latency. Retries (same author and client id) return
   * the stored message. Any failure fails the whole batch; the caller then
   * posts the items one by one.
   */
  async postBatch(roomId: string, items: NewMessage[], now: number): Promise<Array<{ message: ChatMessage; duplicate: boolean }>> {
    return tx(this.pool, async (c) => {
      const key = (author: string, clientId: string) => `${author}\u0000${clientId}`;
      const existing = await c.query<MessageRow & { client_message_id: string }>(
        `SELECT ${MESSAGE_COLUMNS}, client_message_id FROM messages WHERE room_id = $1 AND (author, client_message_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
        [roomId, items.map((m) => m.author), items.map((m) => m.clientMessageId)],
      );
      const found = new Map(existing.rows.map((r) => [key(r.author, r.client_message_id), toMessage(r)]));
      const fresh = items.filter((m, i) => !found.has(key(m.author, m.clientMessageId)) && items.findIndex((o) => key(o.author, o.clientMessageId) === key(m.author, m.clientMessageId)) === i);
      const stored = new Map<string, ChatMessage>();
      if (fresh.length) {
        const { rows } = await c.query<{ last_seq: number }>("UPDATE rooms SET last_seq = last_seq + $2 WHERE id = $1 AND NOT archived RETURNING last_seq", [roomId, fresh.length]);
        if (!rows[0]) throw new FailedPreconditionError(`room '${roomId}' is archived`);
        let seq = rows[0].last_seq - fresh.length;
        for (const m of fresh) {
          seq++;
          const ins = await c.query<MessageRow>(
            `INSERT INTO messages (room_id, seq, event_seq, message_id, author, client_message_id, body, reply_to, mentions, attachments, created_at_ms)
             VALUES ($1,$2,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING ${MESSAGE_COLUMNS}`,
            [roomId, seq, randomUUID(), m.author, m.clientMessageId, m.text, m.replyTo, m.mentions, JSON.stringify(m.attachments), now],
          );
          for (const a of m.attachments) await c.query("INSERT INTO message_files (room_id, file_id, seq) VALUES ($1,$2,$3)", [roomId, a.fileId, seq]);
          stored.set(key(m.author, m.clientMessageId), toMessage(ins.rows[0]!));
        }
      }
      return items.map((m) => {
        const k = key(m.author, m.clientMessageId);
        return found.has(k) ? { message: found.get(k)!, duplicate: true } : { message: stored.get(k)!, duplicate: false };
      });
    });
  }

  async getMessage(roomId: string, seq: number): Promise<ChatMessage | undefined> {
    const { rows } = await this.pool.query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND seq = $2`, [roomId, seq]);
    return rows[0] ? toMessage(rows[0]) : undefined;
  }

  /** Rewrites a message's text (edit) or blanks it (delete) under a new event sequence. */
  async change(roomId: string, seq: number, change: { text: string } | { delete: true }, now: number): Promise<ChatMessage> {
    return tx(this.pool, async (c) => {
      const eventSeq = await this.nextSeq(c, roomId);
      const { rows } = "delete" in change
        ? await c.query<MessageRow>(`UPDATE messages SET deleted = true, body = '', mentions = '{}', event_seq = $3 WHERE room_id = $1 AND seq = $2 AND NOT deleted RETURNING ${MESSAGE_COLUMNS}`, [roomId, seq, eventSeq])
        : await c.query<MessageRow>(`UPDATE messages SET body = $4, edited_at_ms = $5, event_seq = $3 WHERE room_id = $1 AND seq = $2 AND NOT deleted RETURNING ${MESSAGE_COLUMNS}`, [roomId, seq, eventSeq, change.text, now]);
      if (!rows[0]) throw new NotFoundError(`room '${roomId}' has no message ${seq} (or it was deleted)`);
      if ("delete" in change) await c.query("DELETE FROM message_files WHERE room_id = $1 AND seq = $2", [roomId, seq]);
      return toMessage(rows[0]);
    });
  }

  /** Messages changed after afterSeq, in event order: what a (re)subscribing client missed. */
  async eventsAfter(roomId: string, afterSeq: number, limit: number): Promise<ChatMessage[]> {
    const { rows } = await this.pool.query<MessageRow>(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND event_seq > $2 ORDER BY event_seq LIMIT $3`,
      [roomId, afterSeq, limit],
    );
    return rows.map(toMessage);
  }

  async lastSeq(roomId: string): Promise<number> {
    const { rows } = await this.pool.query<{ last_seq: number }>("SELECT last_seq FROM rooms WHERE id = $1", [roomId]);
    return rows[0]?.last_seq ?? 0;
  }

  async history(roomId: string, beforeSeq: number, limit: number): Promise<ChatMessage[]> {
    const { rows } = await this.pool.query<MessageRow>(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND ($2 = 0 OR seq < $2) ORDER BY seq DESC LIMIT $3`,
      [roomId, beforeSeq, limit],
    );
    return rows.map(toMessage);
  }

  /** Full-text search over rooms the user may read: members' rooms and open rooms they are not banned from. */
  async search(userId: string, query: string, roomId: string, limit: number): Promise<ChatMessage[]> {
    const { rows } = await this.pool.query<MessageRow>(
      `SELECT ${MESSAGE_COLUMNS.split(", ").map((c) => `msg.${c}`).join(", ")}
       FROM messages msg JOIN rooms r ON r.id = msg.room_id
       WHERE msg.search @@ websearch_to_tsquery('simple', $2) AND NOT msg.deleted AND ($3 = '' OR msg.room_id = $3)
         AND (EXISTS (SELECT 1 FROM members m WHERE m.room_id = r.id AND m.user_id = $1)
              OR (r.type = ${RoomType.ROOM_TYPE_OPEN} AND NOT EXISTS (SELECT 1 FROM bans b WHERE b.room_id = r.id AND b.user_id = $1)))
       ORDER BY ts_rank(msg.search, websearch_to_tsquery('simple', $2)) DESC, msg.created_at_ms DESC LIMIT $4`,
      [userId, query, roomId, limit],
    );
    return rows.map(toMessage);
  }

  /** Unread posts (not the user's own) and mentions of the user, per room. */
  async unread(userId: string, roomId?: string): Promise<Array<{ roomId: string; unread: number; mentions: number; lastSeq: number; lastReadSeq: number }>> {
    const { rows } = await this.pool.query<{ room_id: string; unread: number; mentions: number; last_seq: number; last_read_seq: number }>(
      `SELECT m.room_id, r.last_seq, m.last_read_seq,
         (SELECT count(*)::int FROM messages x WHERE x.room_id = m.room_id AND x.seq > m.last_read_seq AND x.author <> $1 AND NOT x.deleted) AS unread,
         (SELECT count(*)::int FROM messages x WHERE x.room_id = m.room_id AND x.seq > m.last_read_seq AND $1 = ANY (x.mentions) AND NOT x.deleted) AS mentions
       FROM members m JOIN rooms r ON r.id = m.room_id WHERE m.user_id = $1 AND ($2::text IS NULL OR m.room_id = $2) ORDER BY m.room_id`,
      [userId, roomId ?? null],
    );
    return rows.map((r) => ({ roomId: r.room_id, unread: r.unread, mentions: r.mentions, lastSeq: r.last_seq, lastReadSeq: r.last_read_seq }));
  }

  async markRead(roomId: string, userId: string, seq: number): Promise<void> {
    await this.pool.query("UPDATE members SET last_read_seq = GREATEST(last_read_seq, LEAST($3, (SELECT last_seq FROM rooms WHERE id = $1))) WHERE room_id = $1 AND user_id = $2", [roomId, userId, seq]);
  }

  /** The compliance event of this change is stored in JetStream. */
  async markRecorded(roomId: string, eventSeq: number): Promise<void> {
    await this.pool.query("UPDATE messages SET recorded_seq = $2 WHERE room_id = $1 AND event_seq = $2", [roomId, eventSeq]);
  }

  /** Message changes whose compliance event is not confirmed, oldest first. */
  async unrecorded(limit: number): Promise<ChatMessage[]> {
    const { rows } = await this.pool.query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE recorded_seq <> event_seq ORDER BY room_id, event_seq LIMIT $1`, [limit]);
    return rows.map(toMessage);
  }

  async fileAttached(roomId: string, fileId: string): Promise<boolean> {
    const { rowCount } = await this.pool.query("SELECT 1 FROM message_files WHERE room_id = $1 AND file_id = $2", [roomId, fileId]);
    return !!rowCount;
  }
}
