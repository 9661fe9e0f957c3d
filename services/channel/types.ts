/**
 * The channel service's vocabulary. Rooms, roles and messages use the wire
 * types (generated from chat.proto) directly; the database stores the same
 * enum numbers.
 */
import { Role, RoomType, type Attachment, type ChatMessage, type Room } from "../../generated/parley/v1/chat.js";

export { Role, RoomType, type Attachment, type ChatMessage, type Room };

/** What a user is in a room, loaded with the room in one query. */
export interface RoomAccess {
  room: Room;
  /** Role.ROLE_UNSPECIFIED when not a member. */
  role: Role;
  banned: boolean;
  invited: boolean;
  lastReadSeq: number;
}

export interface ChannelLimits {
  maxMessageChars: number;
  maxHistoryPage: number;
  maxSearchResults: number;
  maxAttachments: number;
  maxMentions: number;
}

export const DEFAULT_LIMITS: ChannelLimits = {
  maxMessageChars: 16_000,
  maxHistoryPage: 200,
  maxSearchResults: 100,
  maxAttachments: 10,
  maxMentions: 50,
};

/**
 * What travels on a room's core NATS subject. Messages carry their full
 * content, so instances fan out without a database read.
 */
export type RoomBusEvent =
  | { kind: "message"; message: ChatMessage; sentAtMs: number }
  | { kind: "typing"; userId: string; instanceId: string }
  | { kind: "membership"; userId: string; change: string; role: Role; by: string }
  | { kind: "room"; room: Room }
  | { kind: "presence"; instanceId: string; online: string[]; offline: string[]; snapshot: boolean; ttlMs: number }
  | { kind: "presence-sync"; instanceId: string };
