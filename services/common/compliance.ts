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
import { option, str } from "./config.js";

export const COMPLIANCE_STREAM = "PARLEY_CHAT_COMPLIANCE";

/**
 * A compliance stream's name and subjects. The default stream takes
 * `parley.compliance.chat.>`; another name N (several pools on one NATS, or
 * isolated tests) takes `parley.compliance.<n>.>` with N lower-cased.
 */
export function complianceStream(name = COMPLIANCE_STREAM) {
  const prefix = name === COMPLIANCE_STREAM ? "parley.compliance.chat" : `parley.compliance.${name.toLowerCase()}`;
  return {
    name,
    subject: (kind: string) => `${prefix}.${kind}`,
    config: { name, subjects: [`${prefix}.>`], maxAgeMs: 30 * 86_400_000, duplicateWindowMs: 10 * 60_000 },
  };
}
export type ComplianceStream = ReturnType<typeof complianceStream>;

/** The same flag on channel, files and compliance: they must name one stream. */
export const complianceStreamOption = () =>
  option("--compliance-stream", "PARLEY_COMPLIANCE_STREAM", str({ pattern: /^[A-Z][A-Z0-9_]{0,62}$/, expected: "a JetStream name in capitals (A-Z 0-9 _)" }), COMPLIANCE_STREAM, "JetStream stream of the chat compliance events");

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

export class ComplianceLog {
  constructor(private readonly bus: Bus, private readonly source: string, private readonly stream: ComplianceStream) {}

  static async create(bus: Bus, source: string, streamName?: string): Promise<ComplianceLog> {
    const stream = complianceStream(streamName);
    await bus.ensureStream(stream.config);
    return new ComplianceLog(bus, source, stream);
  }

  /**
   * Resolves once JetStream stored the event. The id makes a retry (a client
   * re-posting with the same client message id) land once.
   */
  async record(event: ComplianceEvent, id: string): Promise<void> {
    const rec: ComplianceRecord = { v: 1, id, source: this.source, ...event };
    await this.bus.publishDurable(this.stream.subject(event.kind), new TextEncoder().encode(JSON.stringify(rec)), { msgId: id });
  }
}
