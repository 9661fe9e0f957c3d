/**
 * The mail adapter: one RFC 5322 message per conversation for mail-based
 * archives. multipart/mixed: a plain-text transcript, the default XML export,
 * then each archived attachment as its own part. Every body part is base64
 * (lines of 76), so any text and any bytes travel intact; non-ASCII header
 * text is RFC 2047 encoded, file names RFC 2231 encoded. Attachments are
 * streamed from disk, never held whole.
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import type { ComplianceRecord } from "../common/compliance.js";
import type { Conversation } from "./conversation.js";
import { ROLE_NAMES, iso } from "./xml.js";

export interface EmlAttachment {
  fileId: string;
  name: string;
  contentType: string;
  path: string;
}

export interface EmlOptions {
  from: string;
  to: string;
  /** Domain of the Message-ID. */
  domain: string;
}

const CRLF = "\r\n";

/** RFC 2047 B-encoding when the text is not plain printable ASCII. */
export function encodeHeader(text: string): string {
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  // Encoded words of at most 75 characters: split on code points.
  const words: string[] = [];
  let chunk = "";
  for (const ch of text) {
    if (Buffer.byteLength(chunk + ch, "utf8") > 45) {
      words.push(chunk);
      chunk = "";
    }
    chunk += ch;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, "utf8").toString("base64")}?=`).join(`${CRLF} `);
}

function base64Lines(buf: Buffer): string {
  const b64 = buf.toString("base64");
  let out = "";
  for (let i = 0; i < b64.length; i += 76) out += b64.slice(i, i + 76) + CRLF;
  return out;
}

/** Base64 of a file in 76-character lines, read in chunks (multiples of 57 bytes keep lines whole). */
async function* base64File(path: string): AsyncIterable<string> {
  let rest = Buffer.alloc(0);
  for await (const c of createReadStream(path, { highWaterMark: 57 * 1024 })) {
    const buf = Buffer.concat([rest, c as Buffer]);
    const whole = buf.length - (buf.length % 57);
    yield base64Lines(buf.subarray(0, whole));
    rest = buf.subarray(whole);
  }
  if (rest.length) yield base64Lines(rest);
}

const asciiName = (s: string) => s.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
const disposition = (name: string) => `attachment; filename="${asciiName(name)}"; filename*=UTF-8''${encodeURIComponent(name)}`;

function line(e: ComplianceRecord): string {
  const at = iso(e.atMs);
  const m = e.message;
  switch (e.kind) {
    case "message.posted":
      return `[${at}] ${m?.author}: ${m?.text}${m?.attachments?.length ? ` (attachments: ${m.attachments.map((a) => a.name).join(", ")})` : ""}`;
    case "message.edited":
      return `[${at}] ${m?.author} edited message #${m?.seq}: ${m?.text}`;
    case "message.deleted":
      return `[${at}] ${e.actor} deleted message #${m?.seq} by ${m?.author}`;
    case "file.uploaded":
      return `[${at}] ${e.actor} uploaded ${e.file?.name} (${e.file?.size} bytes, sha256 ${e.file?.sha256})`;
    default: {
      const [family, what] = e.kind.split(".");
      if (family === "membership") return `[${at}] ${e.actor}: ${e.member?.userId} ${what} (${ROLE_NAMES[e.member?.role ?? 0]})`;
      if (family === "room") return `[${at}] ${e.actor} ${what} the room: topic "${e.room?.topic ?? ""}"`;
      return `[${at}] ${e.kind} by ${e.actor}`;
    }
  }
}

export function transcript(c: Conversation): string {
  const people = (list: Conversation["atStart"]) => list.map((p) => `${p.userId} (${ROLE_NAMES[p.role]})`).join(", ") || "nobody";
  return [
    `Room: ${c.roomId}`,
    `From ${iso(c.startMs)} to ${iso(c.endMs)}, batch ${c.batchId}`,
    `Present at the start: ${people(c.atStart)}`,
    "",
    ...c.events.map(line),
    "",
    `Present at the end: ${people(c.atEnd)}`,
    "",
  ].join("\n");
}

export async function* emlMessage(c: Conversation, xml: string, attachments: EmlAttachment[], opts: EmlOptions): AsyncIterable<string> {
  const boundary = `=_parley_${randomBytes(12).toString("hex")}`;
  const date = new Date(c.endMs).toUTCString().replace("GMT", "+0000");
  yield [
    `From: ${opts.from}`,
    `To: ${opts.to}`,
    `Date: ${date}`,
    `Subject: ${encodeHeader(`Parley room ${c.roomId}: ${iso(c.startMs)} to ${iso(c.endMs)}`)}`,
    `Message-ID: <${c.batchId}.${c.roomId}@${opts.domain}>`,
    `X-Parley-Room: ${c.roomId}`,
    `X-Parley-Batch: ${c.batchId}`,
    "MIME-Version: 1.0",
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    "",
    "This is a MIME-formatted message.",
    "",
  ].join(CRLF);
  const part = (headers: string[]) => `--${boundary}${CRLF}${headers.join(CRLF)}${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}`;
  yield part(["Content-Type: text/plain; charset=UTF-8", "Content-Disposition: inline"]);
  yield base64Lines(Buffer.from(transcript(c), "utf8"));
  yield part([`Content-Type: application/xml; charset=UTF-8; name="conversation.xml"`, `Content-Disposition: ${disposition(`${c.roomId}.xml`)}`]);
  yield base64Lines(Buffer.from(xml, "utf8"));
  for (const a of attachments) {
    yield part([`Content-Type: ${/^[\w.+-]+\/[\w.+-]+$/.test(a.contentType) ? a.contentType : "application/octet-stream"}`, `Content-Disposition: ${disposition(a.name)}`, `X-Parley-File-Id: ${a.fileId}`]);
    yield* base64File(a.path);
  }
  yield `--${boundary}--${CRLF}`;
}
