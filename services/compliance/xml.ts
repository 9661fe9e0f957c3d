/**
 * The default export: one XML document per conversation in Parley's own
 * schema (schema/parley-compliance-1.xsd, namespace urn:parley:compliance:1).
 *
 * Text a user wrote (messages, topics, names) is element content. XML 1.0
 * cannot carry some characters at all, not even as references (most C0
 * controls, U+FFFE, U+FFFF, lone surrogates): such a value is written
 * base64-encoded (UTF-8) with `encoding="base64"`, so nothing is lost and the
 * file stays well-formed. Carriage returns are written as `&#13;` so parsers
 * do not fold them into line feeds.
 */
import type { ComplianceRecord } from "../common/compliance.js";
import type { Conversation } from "./conversation.js";
import type { Participant } from "./store.js";

export const XML_NAMESPACE = "urn:parley:compliance:1";

// Anything outside XML 1.0's Char production.
const NOT_XML_CHAR = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const NOT_XML_CHAR_G = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

const escapeText = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");

/** An attribute value; characters XML cannot carry become U+FFFD (attributes hold ids, names of roles, times). */
export const attr = (s: string | number | boolean) =>
  String(s).replace(NOT_XML_CHAR_G, "\uFFFD").replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;").replace(/\t/g, "&#9;").replace(/\n/g, "&#10;").replace(/\r/g, "&#13;");

/** An element holding user text: escaped, or base64 when XML cannot hold it. */
export function textElement(name: string, value: string, indent: string): string {
  if (NOT_XML_CHAR.test(value)) return `${indent}<${name} encoding="base64">${Buffer.from(value, "utf8").toString("base64")}</${name}>\n`;
  return `${indent}<${name}>${escapeText(value)}</${name}>\n`;
}

export const iso = (ms: number) => new Date(ms).toISOString();
export const ROLE_NAMES: Record<number, string> = { 0: "none", 1: "member", 2: "manager", 3: "owner" };
export const ROOM_TYPE_NAMES: Record<number, string> = { 0: "unspecified", 1: "open", 2: "invite-only" };

const attrs = (pairs: Record<string, string | number | boolean | undefined>) =>
  Object.entries(pairs).filter(([, v]) => v !== undefined && v !== "").map(([k, v]) => ` ${k}="${attr(v!)}"`).join("");

function participants(when: "start" | "end", list: Participant[]): string {
  if (!list.length) return `  <participants when="${when}"/>\n`;
  const rows = list.map((p) => `    <participant${attrs({ user: p.userId, role: ROLE_NAMES[p.role] ?? "member" })}/>\n`).join("");
  return `  <participants when="${when}">\n${rows}  </participants>\n`;
}

function roomElement(tag: string, room: Record<string, unknown>, extra: Record<string, string | number | boolean | undefined>, indent: string): string {
  const head = attrs({
    ...extra,
    type: ROOM_TYPE_NAMES[Number(room.type ?? 0)] ?? "unspecified",
    archived: Boolean(room.archived),
    createdBy: room.createdBy as string | undefined,
    createdAt: room.createdAtMs ? iso(Number(room.createdAtMs)) : undefined,
  });
  return `${indent}<${tag}${head}>\n${textElement("topic", String(room.topic ?? ""), indent + "  ")}${textElement("description", String(room.description ?? ""), indent + "  ")}${indent}</${tag}>\n`;
}

/** The name a file has in the output directory, when it was archived (see exporter). */
export type ArchivedNames = Map<string, string>;

function eventElement(e: ComplianceRecord, archived: ArchivedNames): string {
  const i = "    ";
  const [family, what = family] = e.kind.split(".") as [string, string?];
  const common = { event: what, at: iso(e.atMs), id: e.id, actor: e.actor };
  if (family === "message" && e.message) {
    const m = e.message;
    let body = textElement("text", m.text ?? "", i + "  ");
    for (const u of m.mentions ?? []) body += `${i}  <mention${attrs({ user: u })}/>\n`;
    for (const a of m.attachments ?? []) {
      body += `${i}  <attachment${attrs({ fileId: a.fileId, contentType: a.contentType, size: Number(a.size ?? 0), sha256: a.sha256 })}>\n${textElement("name", a.name ?? "", i + "    ")}${i}  </attachment>\n`;
    }
    const head = attrs({
      ...common,
      messageId: m.messageId,
      seq: Number(m.seq),
      eventSeq: Number(m.eventSeq),
      author: m.author,
      replyTo: Number(m.replyTo ?? 0) || undefined,
      createdAt: m.createdAtMs ? iso(Number(m.createdAtMs)) : undefined,
      editedAt: Number(m.editedAtMs ?? 0) ? iso(Number(m.editedAtMs)) : undefined,
      deleted: m.deleted ? true : undefined,
    });
    return `${i}<message${head}>\n${body}${i}</message>\n`;
  }
  if (family === "membership" && e.member) {
    return `${i}<membership${attrs({ ...common, user: e.member.userId, role: ROLE_NAMES[e.member.role] ?? "none" })}/>\n`;
  }
  if (family === "room" && e.room) return roomElement("roomChange", e.room as unknown as Record<string, unknown>, common, i);
  if (family === "file" && e.file) {
    const f = e.file;
    const head = attrs({ ...common, fileId: f.fileId, contentType: f.contentType, size: Number(f.size), sha256: f.sha256, uploadedBy: f.uploadedBy, archivedAs: archived.get(f.fileId) });
    return `${i}<file${head}>\n${textElement("name", f.name ?? "", i + "  ")}${i}</file>\n`;
  }
  // An event this version does not know: kept, with its raw JSON.
  return `${i}<other${attrs({ ...common, kind: e.kind })}>\n${textElement("json", JSON.stringify(e), i + "  ")}${i}</other>\n`;
}

export function conversationXml(c: Conversation, archived: ArchivedNames = new Map()): string {
  const head = attrs({ batch: c.batchId, room: c.roomId, start: iso(c.startMs), end: iso(c.endMs), events: c.events.length });
  let out = `<?xml version="1.0" encoding="UTF-8"?>\n<conversation xmlns="${XML_NAMESPACE}"${head}>\n`;
  if (c.room) out += roomElement("room", c.room, {}, "  ");
  out += participants("start", c.atStart);
  out += "  <events>\n" + c.events.map((e) => eventElement(e, archived)).join("") + "  </events>\n";
  out += participants("end", c.atEnd);
  return out + "</conversation>\n";
}
