/** Room rules without a database. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ParleyError } from "../../services/common/errors.js";
import * as rules from "../../services/channel/rules.js";
import { Role, RoomType, type RoomAccess } from "../../services/channel/types.js";

const access = (role: Role, type = RoomType.ROOM_TYPE_OPEN, over: Partial<RoomAccess> = {}): RoomAccess => ({
  room: { roomId: "r", type, topic: "", description: "", archived: false, createdBy: "o", createdAtMs: 0, lastSeq: 0, memberCount: 1, myRole: role },
  role, banned: false, invited: false, lastReadSeq: 0, ...over,
});
const denied = (fn: () => void, re: RegExp) => assert.throws(fn, (e: unknown) => e instanceof ParleyError && re.test(e.message));

describe("room rules", () => {
  it("lets anyone read open rooms, only members read invite-only ones, never the banned", () => {
    assert.equal(rules.canRead(access(Role.ROLE_UNSPECIFIED)), true);
    assert.equal(rules.canRead(access(Role.ROLE_UNSPECIFIED, RoomType.ROOM_TYPE_INVITE_ONLY)), false);
    assert.equal(rules.canRead(access(Role.ROLE_MEMBER, RoomType.ROOM_TYPE_INVITE_ONLY)), true);
    assert.equal(rules.canRead(access(Role.ROLE_UNSPECIFIED, RoomType.ROOM_TYPE_OPEN, { banned: true })), false);
  });

  it("orders kicks by rank", () => {
    rules.requireCanKick(access(Role.ROLE_MANAGER), Role.ROLE_MEMBER, "m");
    rules.requireCanKick(access(Role.ROLE_OWNER), Role.ROLE_MANAGER, "m");
    denied(() => rules.requireCanKick(access(Role.ROLE_MANAGER), Role.ROLE_MANAGER, "m"), /a manager cannot kick a manager/);
    denied(() => rules.requireCanKick(access(Role.ROLE_OWNER), Role.ROLE_OWNER, "o"), /cannot kick a owner/);
    denied(() => rules.requireCanKick(access(Role.ROLE_MEMBER), Role.ROLE_MEMBER, "m"), /needs the manager role/);
  });

  it("invites: members in open rooms, managers in invite-only rooms, nobody in archived ones", () => {
    rules.requireCanInvite(access(Role.ROLE_MEMBER));
    denied(() => rules.requireCanInvite(access(Role.ROLE_MEMBER, RoomType.ROOM_TYPE_INVITE_ONLY)), /needs the manager role/);
    denied(() => rules.requireCanInvite(access(Role.ROLE_OWNER, RoomType.ROOM_TYPE_OPEN, { room: { ...access(Role.ROLE_OWNER).room, archived: true } })), /archived/);
  });

  it("finds @mentions", () => {
    assert.deepEqual(rules.mentionsIn("hi @bob and @carol.smith, mail me@example.com @bob"), ["bob", "carol.smith"]);
  });
});
