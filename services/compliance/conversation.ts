/**
 * One conversation (a room's staged events in one batch) as the exports see
 * it: the events in time order and who was present at its start and end.
 * Pure: the exporter feeds it staged records and the state the previous
 * batch left.
 *
 * Presence follows membership events: joined adds, role changes the role,
 * left and kicked remove; a room's creator is present from its creation.
 * Someone who posts without having been seen joining (they joined before
 * archiving began) was present from the start.
 */
import type { ComplianceRecord } from "../common/compliance.js";
import type { ConversationState, Participant, StagedRecord } from "./store.js";

export interface Conversation {
  batchId: string;
  roomId: string;
  /** Times of the first and last event (epoch ms). */
  startMs: number;
  endMs: number;
  /** The room's settings after the conversation, when known. */
  room?: Record<string, unknown>;
  atStart: Participant[];
  atEnd: Participant[];
  events: ComplianceRecord[];
}

const ROLE_MEMBER = 1;
const ROLE_OWNER = 3;

export function buildConversation(batchId: string, roomId: string, before: ConversationState, staged: StagedRecord[]): { conversation: Conversation; after: ConversationState } {
  const events = [...staged].sort((a, b) => a.record.atMs - b.record.atMs || a.streamSeq - b.streamSeq).map((s) => s.record);
  const atStart = new Map(before.participants.map((p) => [p.userId, p.role]));
  const present = new Map(atStart);
  const seenJoining = new Set<string>();
  let room = before.room;
  for (const e of events) {
    switch (e.kind) {
      case "membership.joined":
      case "membership.role":
        if (e.member) {
          seenJoining.add(e.member.userId);
          present.set(e.member.userId, e.member.role);
        }
        break;
      case "membership.left":
      case "membership.kicked":
        if (e.member) {
          seenJoining.add(e.member.userId);
          present.delete(e.member.userId);
        }
        break;
      case "room.created":
        seenJoining.add(e.actor);
        if (!present.has(e.actor)) present.set(e.actor, ROLE_OWNER);
        if (e.room) room = e.room as unknown as Record<string, unknown>;
        break;
      case "room.updated":
      case "room.archived":
        if (e.room) room = e.room as unknown as Record<string, unknown>;
        break;
      case "message.posted":
      case "message.edited":
      case "message.deleted":
      case "file.uploaded": {
        const who = e.kind === "file.uploaded" ? e.actor : (e.message?.author ?? e.actor);
        if (!present.has(who) && !seenJoining.has(who)) {
          atStart.set(who, ROLE_MEMBER);
          present.set(who, ROLE_MEMBER);
        }
        break;
      }
      default:
        break; // invitations change no one's presence
    }
  }
  const list = (m: Map<string, number>): Participant[] => [...m].map(([userId, role]) => ({ userId, role })).sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  const atEnd = list(present);
  return {
    conversation: { batchId, roomId, startMs: events[0]?.atMs ?? 0, endMs: events.at(-1)?.atMs ?? 0, room, atStart: list(atStart), atEnd, events },
    after: { participants: atEnd, room },
  };
}
