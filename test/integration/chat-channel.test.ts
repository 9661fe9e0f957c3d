/** Two channel instances on one chat database and NATS: ordering, presence, rules, search, unread, resume, compliance. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ChatClient, Role, RoomType } from "../../client/chat.js";
import type { ChatMessage } from "../../generated/parley/v1/chat.js";
import { COMPLIANCE_STREAM, type ComplianceRecord } from "../../services/common/compliance.js";
import { NatsBus } from "../../services/common/bus/nats.js";
import { ParleyClientError } from "../../client/errors.js";
import { ChatPool, follow, roomName, type ChannelInstance } from "../support/chat.js";
import * as grpc from "@grpc/grpc-js";
import { ChannelClient } from "../../generated/parley/v1/chat.js";
import { Harness, NATS_URL } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

const texts = (ms: ChatMessage[]) => ms.map((m) => m.text);

async function rejects(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ParleyClientError, String(err));
    assert.equal(err.codeName, code, err.message);
    assert.match(err.message, re);
    return true;
  });
}

describe("chat across channel instances", () => {
  const h = new Harness();
  let pool: ChatPool;
  let a: ChannelInstance;
  let b: ChannelInstance;
  before(async () => {
    pool = await ChatPool.create(h);
    a = await pool.channel("ch-a");
    b = await pool.channel("ch-b");
  });
  after(() => h.cleanup());

  it("delivers every post to members on both instances in one order, with no gap", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const bob = await pool.user("bob", { channel: b.address });
    const room = roomName("order");
    await alice.chat.createRoom(room, { topic: "ordering" });
    await bob.chat.join(room);
    const fa = follow(alice.chat);
    const fb = follow(bob.chat);
    fa.live.subscribe(room);
    fb.live.subscribe(room);
    await waitFor("both subscribed", () => fa.caughtUp(room) && fb.caughtUp(room));
    // Concurrent posts from both instances: sequence order is the one order everyone sees.
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? alice : bob).chat.post(room, `m${i}`)));
    await waitFor("20 messages on both", () => fa.messages(room).length === 20 && fb.messages(room).length === 20, 10_000);
    const seqs = fa.messages(room).map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(texts(fb.messages(room)), texts(fa.messages(room)));
    fa.live.close();
    fb.live.close();
  });

  it("commits concurrent posts to one room together, each once, even when retried in the same batch", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const room = roomName("burst");
    await alice.chat.createRoom(room);
    const posts = await Promise.all([
      ...Array.from({ length: 25 }, (_, i) => alice.chat.post(room, `burst ${i}`, { clientMessageId: `burst-${i}` })),
      ...Array.from({ length: 5 }, () => alice.chat.post(room, "burst 0", { clientMessageId: "burst-0" })),
    ]);
    assert.deepEqual([...new Set(posts.map((m) => m.seq))].sort((x, y) => x - y), Array.from({ length: 25 }, (_, i) => i + 1));
    assert.ok(posts.slice(25).every((m) => m.seq === posts[0]!.seq && m.messageId === posts[0]!.messageId));
    const page = await alice.chat.history(room, { limit: 100 });
    assert.equal(page.messages.length, 25);
  });

  it("shows who is online in a room across instances, and drops a vanished instance's users", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const bob = await pool.user("bob", { channel: b.address });
    const room = roomName("presence");
    await alice.chat.createRoom(room);
    await bob.chat.join(room);
    const fa = follow(alice.chat);
    fa.live.subscribe(room);
    await waitFor("alice online", () => fa.online(room).has(alice.id));
    const fb = follow(bob.chat);
    fb.live.subscribe(room);
    await waitFor("alice sees bob", () => fa.online(room).has(bob.id));
    await waitFor("bob sees alice", () => fb.online(room).has(alice.id));
    fb.live.close();
    await waitFor("alice sees bob leave", () => !fa.online(room).has(bob.id));

    // An instance that disappears without a word: its bus connection is cut, so no goodbye.
    const bus = await NatsBus.connect({ servers: NATS_URL });
    const c = await pool.channel("ch-c", {}, bus);
    const carol = await pool.user("carol", { channel: c.address });
    await carol.chat.join(room);
    const fc = follow(carol.chat);
    fc.live.subscribe(room);
    await waitFor("alice sees carol", () => fa.online(room).has(carol.id));
    await bus.close();
    await waitFor("carol expires", () => !fa.online(room).has(carol.id), 5000);
    fc.live.close();
    fa.live.close();
  });

  it("enforces invitations and roles", async () => {
    const owner = await pool.user("owner", { channel: a.address });
    const mgr = await pool.user("mgr", { channel: b.address });
    const eve = await pool.user("eve", { channel: b.address });
    const room = roomName("secret");
    await owner.chat.createRoom(room, { type: RoomType.ROOM_TYPE_INVITE_ONLY });
    await rejects(eve.chat.join(room), "PERMISSION_DENIED", /invite-only/);
    await rejects(eve.chat.history(room), "PERMISSION_DENIED", /invite-only/);
    await rejects(eve.chat.post(room, "hi"), "PERMISSION_DENIED", /not a member/);
    await owner.chat.invite(room, mgr.id);
    assert.deepEqual((await mgr.chat.invitations()).map((i) => i.roomId), [room]);
    await mgr.chat.accept(room);
    await rejects(mgr.chat.invite(room, eve.id), "PERMISSION_DENIED", /needs the manager role; you are member/);
    await rejects(mgr.chat.setRole(room, mgr.id, Role.ROLE_OWNER), "PERMISSION_DENIED", /needs the owner role/);
    await owner.chat.setRole(room, mgr.id, Role.ROLE_MANAGER);
    await mgr.chat.invite(room, eve.id);
    await mgr.chat.revoke(room, eve.id);
    await rejects(eve.chat.accept(room), "NOT_FOUND", /no invitation/);
    await mgr.chat.invite(room, eve.id);
    await eve.chat.decline(room);
    await mgr.chat.invite(room, eve.id);
    await eve.chat.accept(room);
    await eve.chat.post(room, "eve was here");
    await rejects(eve.chat.kick(room, mgr.id), "PERMISSION_DENIED", /needs the manager role/);
    await rejects(mgr.chat.kick(room, owner.id), "PERMISSION_DENIED", /cannot kick a owner/);
    await rejects(mgr.chat.archiveRoom(room), "PERMISSION_DENIED", /owner/);
    await mgr.chat.updateRoom(room, { topic: "new topic" });
    await mgr.chat.kick(room, eve.id);
    await rejects(eve.chat.post(room, "back?"), "PERMISSION_DENIED", /not a member/);
    await rejects(owner.chat.leave(room), "FAILED_PRECONDITION", /only owner/);
    await owner.chat.archiveRoom(room);
    await rejects(mgr.chat.post(room, "after archive"), "FAILED_PRECONDITION", /archived/);
    const details = await owner.chat.getRoom(room);
    assert.equal(details.room?.topic, "new topic");
    assert.deepEqual(details.members.map((m) => [m.userId, m.role]), [[owner.id, Role.ROLE_OWNER], [mgr.id, Role.ROLE_MANAGER]]);

    // Open rooms: anyone joins, a kicked user cannot come back uninvited.
    const open = roomName("open");
    await owner.chat.createRoom(open);
    await eve.chat.join(open);
    await owner.chat.kick(open, eve.id);
    await rejects(eve.chat.join(open), "PERMISSION_DENIED", /removed from room/);
    await rejects(owner.chat.createRoom(open), "ALREADY_EXISTS", /already exists/);
    await rejects(owner.chat.createRoom("Bad Name!"), "INVALID_ARGUMENT", /room_id/);
  });

  it("edits, deletes, replies and mentions; only the author edits", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const bob = await pool.user("bob", { channel: b.address });
    const room = roomName("edits");
    await alice.chat.createRoom(room);
    await bob.chat.join(room);
    const q = await alice.chat.post(room, `question for @${bob.id}?`);
    assert.deepEqual(q.mentions, [bob.id]);
    const r = await bob.chat.post(room, "answer", { replyTo: q.seq });
    assert.equal(r.replyTo, q.seq);
    await rejects(bob.chat.edit(room, q.seq, "hijack"), "PERMISSION_DENIED", /only the author/);
    const e = await alice.chat.edit(room, q.seq, "edited question");
    assert.equal(e.seq, q.seq);
    assert.ok(e.eventSeq > r.eventSeq);
    await rejects(bob.chat.delete(room, q.seq), "PERMISSION_DENIED", /only the author or a manager/);
    await alice.chat.delete(room, r.seq); // the owner deletes anyone's
    const page = await bob.chat.history(room);
    assert.deepEqual(page.messages.map((m) => [m.seq, m.text, m.deleted]), [[2, "", true], [1, "edited question", false]]);
    await rejects(bob.chat.post(room, "x", { replyTo: 99 }), "NOT_FOUND", /no message 99/);
  });

  it("counts unread messages and mentions for rooms a member is not viewing", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const bob = await pool.user("bob", { channel: b.address });
    const room = roomName("unread");
    await alice.chat.createRoom(room);
    await bob.chat.join(room);
    const fb = follow(bob.chat);
    fb.live.subscribe(room);
    await waitFor("bob subscribed", () => fb.caughtUp(room));
    await alice.chat.post(room, "one");
    await alice.chat.post(room, `two @${bob.id}`);
    const lastUnread = () => fb.events.flatMap((e) => (e.event?.$case === "unread" && e.event.value.roomId === room ? [e.event.value] : [])).at(-1);
    await waitFor("unread 2, 1 mention", () => lastUnread()?.unread === 2 && lastUnread()?.mentions === 1);
    assert.deepEqual((await bob.chat.unread()).map((u) => [u.roomId, u.unread, u.mentions]), [[room, 2, 1]]);
    fb.live.view(room);
    await waitFor("read", () => lastUnread()?.unread === 0);
    await waitFor("stored as read", async () => (await bob.chat.unread())[0]?.unread === 0);
    fb.live.close();
  });

  it("searches only rooms the user may read", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const bob = await pool.user("bob", { channel: b.address });
    const word = `zebra${Date.now()}`;
    const open = roomName("pub");
    const secret = roomName("priv");
    await alice.chat.createRoom(open);
    await alice.chat.createRoom(secret, { type: RoomType.ROOM_TYPE_INVITE_ONLY });
    await alice.chat.post(open, `the ${word} in public`);
    await alice.chat.post(secret, `the ${word} in private`);
    assert.deepEqual((await alice.chat.search(word)).map((m) => m.roomId).sort(), [open, secret].sort());
    assert.deepEqual((await bob.chat.search(word)).map((m) => m.roomId), [open]);
    assert.deepEqual(await bob.chat.search(word, { roomId: secret }), []);
    assert.deepEqual((await bob.chat.findRooms(open)).map((r) => r.roomId), [open]);
    assert.deepEqual(await bob.chat.findRooms(secret), []);
  });

  it("resumes on another instance from the last sequence: missed messages once, then live", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const room = roomName("resume");
    await alice.chat.createRoom(room);
    const c = await pool.channel("ch-d");
    const bob = await pool.user("bob", { channel: c.address });
    await bob.chat.join(room);
    const fb = follow(bob.chat);
    fb.live.subscribe(room);
    await waitFor("subscribed", () => fb.caughtUp(room));
    for (let i = 0; i < 5; i++) await alice.chat.post(room, `before ${i}`);
    await waitFor("5 live", () => fb.messages(room).length === 5);
    const last = fb.live.lastSeq(room);
    fb.live.close();
    await c.stop();
    for (let i = 0; i < 5; i++) await alice.chat.post(room, `missed ${i}`);
    const bob2 = ChatClient.create({ relay: bob.relay, lookup: [], channel: b.address });
    const f2 = follow(bob2);
    f2.live.subscribe(room, last);
    await waitFor("caught up", () => f2.caughtUp(room));
    await alice.chat.post(room, "live again");
    await waitFor("all", () => f2.messages(room).length === 6);
    assert.deepEqual(texts(f2.messages(room)), ["missed 0", "missed 1", "missed 2", "missed 3", "missed 4", "live again"]);
    f2.live.close();
    bob2.close();
  });

  it("stores a compliance event for a post before acknowledging it", async () => {
    const alice = await pool.user("alice", { channel: a.address });
    const room = roomName("compliance");
    await alice.chat.createRoom(room);
    const m = await alice.chat.post(room, "for the record");
    const bus = await h.nats();
    const seen: ComplianceRecord[] = [];
    await bus.consume({ stream: COMPLIANCE_STREAM, durable: `t-${room}`, filterSubject: "parley.compliance.chat.message.posted" }, (msg) => {
      seen.push(JSON.parse(new TextDecoder().decode(msg.data)) as ComplianceRecord);
      msg.ack();
    });
    h.defer(() => bus.deleteConsumer(COMPLIANCE_STREAM, `t-${room}`)); // stops it; a test's durable is not left on the stream
    const rec = await waitFor("compliance record", () => seen.find((r) => r.roomId === room));
    assert.equal(rec.id, `msg:${room}:${m.eventSeq}`);
    assert.equal(rec.message?.text, "for the record");
    assert.equal(rec.actor, alice.id);

    // A change committed by an instance that died before JetStream confirmed
    // its event (stored here without one) is republished by the sweep.
    const orphan = await a.service.core.store.post({ roomId: room, author: alice.id, clientMessageId: "orphan", text: "committed, never confirmed", replyTo: 0, mentions: [], attachments: [] }, Date.now());
    await a.service.sweep.run(); // first sight: may still be in flight
    assert.ok((await a.service.sweep.run()) >= 1);
    const swept = await waitFor("swept record", () => seen.find((r) => r.id === `msg:${room}:${orphan.message.eventSeq}`));
    assert.equal(swept.message?.text, "committed, never confirmed");
    assert.equal(await a.service.sweep.run(), 0);
  });

  it("refuses calls without a valid token; a bad session command gets an error event and the session stays open", async () => {
    const raw = new ChannelClient(a.address, grpc.credentials.createInsecure());
    h.defer(() => raw.close());
    const md = new grpc.Metadata();
    md.set("authorization", "Bearer pt1.forged.token");
    await assert.rejects(
      new Promise((resolve, reject) => raw.listRooms({}, md, (err, res) => (err ? reject(err) : resolve(res)))),
      (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED && /signature is not valid/.test(e.details),
    );
    const alice = await pool.user("alice", { channel: a.address });
    const bob = await pool.user("bob", { channel: a.address });
    const secret = roomName("closed");
    await alice.chat.createRoom(secret, { type: RoomType.ROOM_TYPE_INVITE_ONLY });
    const open = roomName("still-open");
    await alice.chat.createRoom(open);
    const fb = follow(bob.chat);
    await waitFor("session ready", () => fb.events.some((e) => e.event?.$case === "ready")); // typing is not queued while offline
    fb.live.subscribe(secret, 0);
    fb.live.subscribe("Not A Room", 0);
    fb.live.typing(open);
    fb.live.subscribe(open);
    await waitFor("subscribed to the open room", () => fb.caughtUp(open));
    const errors = fb.events.flatMap((e) => (e.event?.$case === "error" ? [[e.event.value.code, e.event.value.message]] : []));
    assert.equal(errors.length, 3, JSON.stringify(errors));
    assert.equal(errors[0]![0], "PERMISSION_DENIED");
    assert.match(errors[0]![1]!, /invite-only/);
    assert.equal(errors[1]![0], "INVALID_ARGUMENT");
    assert.match(errors[1]![1]!, /subscribe.room_id/);
    assert.equal(errors[2]![0], "FAILED_PRECONDITION");
    assert.match(errors[2]![1]!, /as a member before typing/);
    await alice.chat.post(open, "still flowing");
    await waitFor("message after the errors", () => fb.messages(open).length === 1);
    fb.live.close();
  });
});
