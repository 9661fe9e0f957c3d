/**
 * A room with 10,000 members on two channel instances (real Postgres and
 * NATS): posts reach the connected members in order and cost each instance
 * one delivery per session connected there, whatever the member count;
 * presence past the threshold comes in batches of changes, one per throttle
 * interval; unread counts, mentions and history paging stay right.
 *
 * The instances run on a clock the test moves, so "one batch per interval"
 * is checked exactly: nothing is sent before the interval has passed on it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ManualClock } from "../../services/common/clock.js";
import { ChatPool, follow, roomName, type ChannelInstance } from "../support/chat.js";
import { Harness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

const MEMBERS = 10_000;
const THRESHOLD = 10;
const THROTTLE_MS = 1000;

type User = Awaited<ReturnType<ChatPool["user"]>>;
type Follower = ReturnType<typeof follow>;

describe("a room with 10,000 members", () => {
  const h = new Harness();
  const clock = new ManualClock(Date.now());
  let pool: ChatPool;
  let a: ChannelInstance;
  let b: ChannelInstance;
  const room = roomName("big");
  /** Connected, viewing the room: three on each instance (alice posts from a, bob from b). */
  const viewers: Array<{ user: User; f: Follower; on: ChannelInstance }> = [];
  let alice: User;
  let bob: User;
  /** Connected but viewing nothing: gets unread counts. */
  let carol: { user: User; f: Follower };
  /** A member with no session. */
  let dave: User;

  const connect = async (name: string, on: ChannelInstance, view = true) => {
    const user = await pool.user(name, { channel: on.address });
    await user.chat.join(room);
    const f = follow(user.chat);
    f.live.subscribe(room);
    if (view) f.live.view(room);
    h.defer(() => f.live.close());
    await waitFor(`${name} caught up`, () => f.caughtUp(room));
    return { user, f };
  };

  before(async () => {
    pool = await ChatPool.create(h);
    const options = {
      presence: { heartbeatMs: 200, ttlMs: 60_000, throttleThreshold: THRESHOLD, throttleMs: THROTTLE_MS },
      complianceSweepIntervalMs: 3_600_000,
    };
    a = await pool.channel("ch-big-a", options, undefined, clock);
    b = await pool.channel("ch-big-b", options, undefined, clock);
    alice = await pool.user("alice", { channel: a.address });
    await alice.chat.createRoom(room, { topic: "everyone" });
    assert.equal((await pool.addMembers(room, MEMBERS)).length, MEMBERS);
    bob = await pool.user("bob", { channel: b.address });
    const fa = follow(alice.chat);
    fa.live.subscribe(room);
    fa.live.view(room);
    h.defer(() => fa.live.close());
    await waitFor("alice caught up", () => fa.caughtUp(room));
    viewers.push({ user: alice, f: fa, on: a });
    await bob.chat.join(room);
    const fb = follow(bob.chat);
    fb.live.subscribe(room);
    fb.live.view(room);
    h.defer(() => fb.live.close());
    await waitFor("bob caught up", () => fb.caughtUp(room));
    viewers.push({ user: bob, f: fb, on: b });
    for (const [name, on] of [["ann", a], ["ben", b], ["bea", b]] as const) viewers.push({ ...(await connect(name, on)), on });
    carol = await connect("carol", a, false);
    dave = await pool.user("dave", { channel: b.address });
    await dave.chat.join(room);
  });
  after(() => h.cleanup());

  it("delivers every post to each connected member in order, at one delivery per session connected to each instance", async () => {
    const details = await alice.chat.getRoom(room);
    assert.equal(details.room?.memberCount, MEMBERS + 7);
    const sessions = (on: ChannelInstance) => viewers.filter((v) => v.on === on).length + (on === a ? 1 : 0); // carol is on a
    const before = { a: a.service.core.feeds.tally.deliveries, b: b.service.core.feeds.tally.deliveries };

    // Concurrent posts from both instances; every third mentions carol, every fifth dave.
    const posts = 30;
    await Promise.all(Array.from({ length: posts }, (_, i) => {
      const mentions = [...(i % 3 === 0 ? [carol.user.id] : []), ...(i % 5 === 0 ? [dave.id] : [])];
      return (i % 2 ? alice : bob).chat.post(room, `post ${i}`, { mentions });
    }));
    const all = [...viewers.map((v) => v.f), carol.f];
    await waitFor(`${posts} posts at every session`, () => all.every((f) => f.messages(room).length === posts), 20_000);
    const order = Array.from({ length: posts }, (_, i) => i + 1);
    for (const f of all) assert.deepEqual(f.messages(room).map((m) => m.seq), order);
    const texts = all[0]!.messages(room).map((m) => m.text);
    for (const f of all) assert.deepEqual(f.messages(room).map((m) => m.text), texts);

    // The fan-out work: each post handed to the sessions connected to each instance, once.
    assert.deepEqual(
      { a: a.service.core.feeds.tally.deliveries - before.a, b: b.service.core.feeds.tally.deliveries - before.b },
      { a: posts * sessions(a), b: posts * sessions(b) },
    );

    // A member not viewing the room learns of the new posts and the mentions, live and by asking.
    const lastUnread = () => carol.f.events.flatMap((e) => (e.event?.$case === "unread" && e.event.value.roomId === room ? [e.event.value] : [])).at(-1);
    await waitFor("carol's unread count", () => lastUnread()?.unread === posts);
    assert.equal(lastUnread()?.mentions, 10);
    assert.deepEqual((await carol.user.chat.unread()).map((u) => [u.roomId, u.unread, u.mentions]), [[room, posts, 10]]);
    assert.deepEqual((await dave.chat.unread()).map((u) => [u.roomId, u.unread, u.mentions]), [[room, posts, 6]]);

    // History pages back from the newest, without overlap or gap.
    const seen: number[] = [];
    let page = await dave.chat.history(room, { limit: 12 });
    const pages = [page.messages.length];
    seen.push(...page.messages.map((m) => m.seq));
    while (page.nextBeforeSeq) {
      page = await dave.chat.history(room, { beforeSeq: page.nextBeforeSeq, limit: 12 });
      pages.push(page.messages.length);
      seen.push(...page.messages.map((m) => m.seq));
    }
    assert.deepEqual(pages, [12, 12, 6]);
    assert.deepEqual(seen, [...order].reverse());
  });

  it("sends presence changes at once below the threshold, and past it one batch of changes per throttle interval", async () => {
    const watchA = viewers[0]!.f; // alice, on a
    const watchB = viewers[1]!.f; // bob, on b
    const known = async (who: User, n: number) => (await who.chat.presence(room)).length === n;
    assert.equal(watchA.online(room).size, 6);

    // Below the threshold (10 online): each arrival is reported on its own, without the clock moving.
    const early: Array<{ user: User; f: Follower }> = [];
    for (const [i, on] of [a, b, a, b].entries()) {
      const seenA = watchA.presence(room).length;
      const u = await connect(`early${i}`, on);
      early.push(u);
      await waitFor(`alice sees early${i}`, () => watchA.presence(room).length === seenA + 1);
      assert.deepEqual(watchA.presence(room).at(-1), { roomId: room, online: [u.user.id], offline: [], onlineCount: 7 + i, full: false });
    }

    // Past it: twelve arrive; both instances know them all, and no one has been told yet.
    const quietA = watchA.presence(room).length;
    const quietB = watchB.presence(room).length;
    const late = await Promise.all(Array.from({ length: 12 }, (_, i) => connect(`late${i}`, i % 2 ? b : a)));
    await waitFor("both instances know all 22", async () => (await known(alice, 22)) && (await known(bob, 22)));
    assert.equal(watchA.presence(room).length, quietA, "no presence event before the throttle interval");
    assert.equal(watchB.presence(room).length, quietB);
    const fresh = late[0]!.f.presence(room);
    assert.equal(fresh[0]?.full, true, "a new subscriber gets the whole list once");

    // The interval passes: one event with just the twelve changes, at every session.
    clock.advance(THROTTLE_MS);
    const lateIds = late.map((u) => u.user.id).sort();
    for (const [name, w, quiet] of [["alice", watchA, quietA], ["bob", watchB, quietB]] as const) {
      await waitFor(`${name}'s batch`, () => w.presence(room).length > quiet);
      const batch = w.presence(room).slice(quiet);
      assert.equal(batch.length, 1, `${name} got ${batch.length} events`);
      assert.deepEqual([...batch[0]!.online].sort(), lateIds);
      assert.deepEqual(batch[0]!.offline, []);
      assert.equal(batch[0]!.onlineCount, 22);
    }

    // Departures past the threshold wait for the next interval the same way.
    const leaving = late.slice(0, 6);
    const beforeA = watchA.presence(room).length;
    for (const u of leaving) u.f.live.close();
    await waitFor("both instances saw six leave", async () => (await known(alice, 16)) && (await known(bob, 16)));
    assert.equal(watchA.presence(room).length, beforeA);
    clock.advance(THROTTLE_MS);
    await waitFor("alice's departures batch", () => watchA.presence(room).length > beforeA);
    const gone = watchA.presence(room).slice(beforeA);
    assert.equal(gone.length, 1);
    assert.deepEqual([...gone[0]!.offline].sort(), leaving.map((u) => u.user.id).sort());
    assert.equal(gone[0]!.onlineCount, 16);
    assert.deepEqual(watchA.online(room), new Set([...viewers.map((v) => v.user.id), carol.user.id, ...early.map((u) => u.user.id), ...late.slice(6).map((u) => u.user.id)]));
  });
});
