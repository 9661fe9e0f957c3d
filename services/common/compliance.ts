/**
 * Compliance events (written by the channel and file services): every message change, membership change, room change
 * and file upload goes to the JetStream stream PARLEY_CHAT_COMPLIANCE before
 * the client's call is acknowledged. The schema is documented in
 * docs/compliance-events.md; the compliance service consumes it.
 *
 *   await compliance.record({ kind: "message.posted", roomId, actor, atMs, message }, `msg:${roomId}:${message.eventSeq}`);
 */
import type { Attachment, ChatMessage, Role, Room } from "../../generated/parley/v1/chat.js";
import type { Bus } from "./bus/types.js";

export const COMPLIANCE_STREAM = "PARLEY_CHAT_COMPLIANCE";
export const COMPLIANCE_SUBJECTS = "parley.compliance.chat.>";
export const complianceSubject = (kind: string) => `parley.compliance.chat.${kind}`;

export type ComplianceKind =
  | "message.posted" | "message.edited" | "message.deleted"
  | "membership.joined" | "membership.left" | "membership.kicked" | "membership.role" | "membership.invited"
  | "membership.revoked" | "membership.declined"
  | "room.created" | "room.updated" | "room.archived"
  | "file.uploaded";

export interface ComplianceEvent {
  kind: ComplianceKind;
  roomId: string;
  /** Who did it (identity id). */
  actor: string;
  atMs: number;
  message?: ChatMessage;
  member?: { userId: string; role: Role };
  room?: Room;
  file?: Attachment & { uploadedBy: string };
}

/** The envelope on the stream: version, dedup id and the event. */
export interface ComplianceRecord extends ComplianceEvent {
  v: 1;
  id: string;
  /** The channel or files instance that recorded it. */
  source: string;
}

export const COMPLIANCE_STREAM_CONFIG = { name: COMPLIANCE_STREAM, subjects: [COMPLIANCE_SUBJECTS], maxAgeMs: 30 * 86_400_000, duplicateWindowMs: 10 * 60_000 };

export class ComplianceLog {
  constructor(private readonly bus: Bus, private readonly source: string) {}

  static async create(bus: Bus, source: string): Promise<ComplianceLog> {
    await bus.ensureStream(COMPLIANCE_STREAM_CONFIG);
    return new ComplianceLog(bus, source);
  }

  /**
   * Resolves once JetStream stored the event. The id makes a retry (a client
   * re-posting with the same client message id) land once.
   */
  async record(event: ComplianceEvent, id: string): Promise<void> {
    const rec: ComplianceRecord = { v: 1, id, source: this.source, ...event };
    await this.bus.publishDurable(complianceSubject(event.kind), new TextEncoder().encode(JSON.stringify(rec)), { msgId: id });
  }
}
