/**
 * Who may do what in a room. Pure functions over RoomAccess, so the rules
 * read in one place and are unit-tested without a database.
 *
 *   owner    everything, incl. archive and roles; cannot be kicked
 *   manager  topic/description, invite, revoke, kick members, delete any message
 *   member   read, post, edit/delete own messages; invite in open rooms
 *   anyone   read, search and join open rooms they are not banned from
 */
import { FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../common/errors.js";
import { Role, RoomType, type RoomAccess } from "./types.js";

export const roleName = (r: Role) => ({ [Role.ROLE_OWNER]: "owner", [Role.ROLE_MANAGER]: "manager", [Role.ROLE_MEMBER]: "member" })[r as 1 | 2 | 3] ?? "non-member";

export function existing(access: RoomAccess | undefined, roomId: string): RoomAccess {
  if (!access) throw new NotFoundError(`room '${roomId}' does not exist`);
  return access;
}

export function canRead(a: RoomAccess): boolean {
  return a.role !== Role.ROLE_UNSPECIFIED || (a.room.type === RoomType.ROOM_TYPE_OPEN && !a.banned);
}

export function requireRead(a: RoomAccess): void {
  if (!canRead(a)) throw new PermissionDeniedError(`you may not read room '${a.room.roomId}': it is invite-only and you are not a member`);
}

export function requireMember(a: RoomAccess): void {
  if (a.role === Role.ROLE_UNSPECIFIED) throw new PermissionDeniedError(`you are not a member of room '${a.room.roomId}'`);
}

export function requireRole(a: RoomAccess, min: Role, action: string): void {
  requireMember(a);
  if (a.role < min) throw new PermissionDeniedError(`${action} in room '${a.room.roomId}' needs the ${roleName(min)} role; you are ${roleName(a.role)}`);
}

export function requireActive(a: RoomAccess): void {
  if (a.room.archived) throw new FailedPreconditionError(`room '${a.room.roomId}' is archived (read-only)`);
}

export function requireCanInvite(a: RoomAccess): void {
  requireActive(a);
  if (a.room.type === RoomType.ROOM_TYPE_OPEN) requireMember(a);
  else requireRole(a, Role.ROLE_MANAGER, "inviting");
}

export function requireCanJoin(a: RoomAccess): void {
  requireActive(a);
  if (a.role !== Role.ROLE_UNSPECIFIED) throw new FailedPreconditionError(`you are already a member of room '${a.room.roomId}'`);
  if (a.room.type !== RoomType.ROOM_TYPE_OPEN) throw new PermissionDeniedError(`room '${a.room.roomId}' is invite-only: accept an invitation to join`);
  if (a.banned) throw new PermissionDeniedError(`you were removed from room '${a.room.roomId}'; ask a manager to invite you again`);
}

/** The actor must outrank the target: managers kick members, owners kick managers; owners are never kicked. */
export function requireCanKick(actor: RoomAccess, target: Role, targetId: string): void {
  requireRole(actor, Role.ROLE_MANAGER, "kicking");
  if (target === Role.ROLE_UNSPECIFIED) throw new NotFoundError(`'${targetId}' is not a member of room '${actor.room.roomId}'`);
  if (target >= actor.role) throw new PermissionDeniedError(`a ${roleName(actor.role)} cannot kick a ${roleName(target)} from room '${actor.room.roomId}'`);
}

export function requireCanEdit(a: RoomAccess, author: string, userId: string): void {
  requireMember(a);
  requireActive(a);
  if (author !== userId) throw new PermissionDeniedError(`only the author may edit a message (it is ${author}'s)`);
}

export function requireCanDelete(a: RoomAccess, author: string, userId: string): void {
  requireMember(a);
  requireActive(a);
  if (author !== userId && a.role < Role.ROLE_MANAGER) throw new PermissionDeniedError(`only the author or a manager may delete ${author}'s message`);
}

/** @name tokens in a text, lower-cased as ids are compared, deduplicated. */
export function mentionsIn(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(/(?:^|[^\w@])@([A-Za-z0-9][A-Za-z0-9._+-]{0,127})/g)) out.add(m[1]!.replace(/[.]+$/, ""));
  return [...out];
}
