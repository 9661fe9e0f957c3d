/** Checks on client input; each failure names the field and the rule. */
import { InvalidArgumentError } from "../common/errors.js";
import { FILE_ID, ROOM_ID } from "../common/file-tokens.js";
import { RoomType, type Attachment, type ChannelLimits } from "./types.js";

const USER_ID = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const CLIENT_ID = /^[\x21-\x7e]{1,128}$/;
export { FILE_ID };

export function roomId(field: string, v: string): string {
  if (!ROOM_ID.test(v)) throw new InvalidArgumentError(`${field} '${v.slice(0, 80)}' is not a valid room id (1–63 of a-z 0-9 _ -, starting with a letter or digit)`);
  return v;
}

export function userId(field: string, v: string): string {
  if (!USER_ID.test(v)) throw new InvalidArgumentError(`${field} '${v.slice(0, 140)}' is not a valid user id`);
  return v;
}

export function clientMessageId(v: string): string {
  if (!CLIENT_ID.test(v)) throw new InvalidArgumentError("client_message_id must be 1–128 printable ASCII characters");
  return v;
}

export function text(field: string, v: string, maxChars: number, allowEmpty = false): string {
  if (!allowEmpty && !v.trim()) throw new InvalidArgumentError(`${field} is empty`);
  if (v.length > maxChars) throw new InvalidArgumentError(`${field} has ${v.length} characters; at most ${maxChars}`);
  return v;
}

export function roomType(v: RoomType): RoomType {
  if (v === RoomType.ROOM_TYPE_UNSPECIFIED) return RoomType.ROOM_TYPE_OPEN;
  if (v !== RoomType.ROOM_TYPE_OPEN && v !== RoomType.ROOM_TYPE_INVITE_ONLY) throw new InvalidArgumentError(`type ${v} is not a room type (1 open, 2 invite-only)`);
  return v;
}

export function seq(field: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`${field} must be a non-negative integer`);
  return v;
}

export function attachments(list: Attachment[], limits: ChannelLimits): Attachment[] {
  if (list.length > limits.maxAttachments) throw new InvalidArgumentError(`${list.length} attachments; at most ${limits.maxAttachments}`);
  return list.map((a, i) => {
    if (!FILE_ID.test(a.fileId)) throw new InvalidArgumentError(`attachments[${i}].file_id is not a file id issued by IssueUploadToken`);
    if (a.name.length > 255) throw new InvalidArgumentError(`attachments[${i}].name is longer than 255 characters`);
    if (!/^[0-9a-f]{64}$|^$/.test(a.sha256)) throw new InvalidArgumentError(`attachments[${i}].sha256 must be 64 lower-case hex digits`);
    return { fileId: a.fileId, name: a.name, contentType: a.contentType.slice(0, 128), size: a.size, sha256: a.sha256 };
  });
}
