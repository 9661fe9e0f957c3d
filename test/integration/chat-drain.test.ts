/** Draining a channel instance (the operator's step before scale-in): sessions move elsewhere with nothing missed, no new ones come, resume undoes it. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ServerEvent } from "../../generated/parley/v1/chat.js";
import type { Bus } from "../../services/common/bus/types.js";
import { controlSubject } from "../../services/channel/subjects.js";
import { ChatPool, roomName, type ChannelInstance } from "../support/chat.js";
import { Harness, unique } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

describe("channel drain", () => {
  const h = new Harness();
  let pool: ChatPool;
  let bus: Bus;
  let lookup: Awaited<ReturnType<ChatPool["lookup"]>>;
  let a: ChannelInstance;
  let b: ChannelInstance;
  before(async () => {
    pool = await ChatPool.create(h);
    bus = await h.nats();
    lookup = await pool.lookup(1000);
    a = await pool.channel(unique("dr-a"));
    b = await pool.channel(unique("dr-b"));
  });
  after(() => h.cleanup());

  const command = (instance: string, payload: string) => bus.publish(controlSubject(instance), new TextEncoder().encode(payload));
  const live = (id: string) => lookup.service.table.live().some((r) => r.instanceId === id);

  it("ends the sessions with a status sending clients elsewhere, refuses new ones, reports unhealthy; resume undoes it", async () => {
    await waitFor("both instances live in the lookup", () => live(a.id) && live(b.id), 5000);
    const poster = await pool.user("poster", { lookup: [lookup.address] });
    const reader = await pool.user("reader", { lookup: [lookup.address] });
    const room = roomName("drain");
    await poster.chat.createRoom(room);

    const received: number[] = [];
    const connected: string[] = [];
    const errors: string[] = [];
    const session = reader.chat.live({
      onEvent: (ev: ServerEvent) => void (ev.event?.$case === "message" && received.push(ev.event.value.seq)),
      onConnected: (id) => void connected.push(id),
      onReconnect: (err) => void errors.push(err.message),
    });
    h.defer(() => session.close());
    session.subscribe(room, 0);
    await waitFor("reader connected", () => connected.length === 1, 5000);
    for (let i = 0; i < 3; i++) await poster.chat.post(room, `before ${i}`);
    await waitFor("reader has the first posts", () => received.length === 3, 5000);

    const drained = connected[0] === a.id ? a : b;
    const other = drained === a ? b : a;
    // Not a command: ignored.
    command(drained.id, "{\"action\":\"explode\"}");
    command(drained.id, "{\"action\":\"drain\"}");
    await waitFor("the session moved to the other instance", () => connected.length === 2, 10_000);
    assert.deepEqual(connected, [drained.id, other.id]);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /channel instance draining; ask lookup for another/);
    assert.equal(drained.service.drain.draining, true);
    await waitFor("the drained instance is no longer live in the lookup", () => !live(drained.id), 5000);
    assert.equal(drained.service.core.sessions.size, 0);

    // A client pinned to the draining instance is refused.
    const pinned = await pool.user("pinned", { channel: drained.address });
    const refused = await new Promise<string>((resolve) => {
      const s = pinned.chat.live({ onEvent: () => {}, onReconnect: (err) => (s.close(), resolve(err.message)) });
    });
    assert.match(refused, /channel instance draining/);

    for (let i = 0; i < 3; i++) await poster.chat.post(room, `after ${i}`);
    await waitFor("reader has every post", () => received.length === 6, 5000);
    assert.deepEqual(received, [1, 2, 3, 4, 5, 6]);

    command(drained.id, "{\"action\":\"resume\"}");
    await waitFor("live again after resume", () => live(drained.id), 5000);
    assert.equal(drained.service.drain.draining, false);
  });

  it("ends a session with its status even while the client's commands are still queued on it", async () => {
    await waitFor("both instances live in the lookup", () => live(a.id) && live(b.id), 5000);
    const user = await pool.user("busy", { lookup: [lookup.address] });
    const connected: string[] = [];
    const errors: string[] = [];
    let answered = 0;
    const session = user.chat.live({ onEvent: () => void answered++, onConnected: (id) => void connected.push(id), onReconnect: (err) => void errors.push(err.message) });
    h.defer(() => session.close());
    await waitFor("connected", () => connected.length === 1, 5000);
    const drained = connected[0] === a.id ? a : b;
    // Each subscribe reads the database, so most of these are still queued when the drain ends the session.
    const before = answered;
    for (let i = 0; i < 3000; i++) session.subscribe(`missing-${i}`);
    await waitFor("the instance works through the subscribes", () => answered > before, 5000);
    command(drained.id, "{\"action\":\"drain\"}");
    await waitFor("the session was ended", () => errors.length === 1, 10_000);
    assert.match(errors[0]!, /channel instance draining; ask lookup for another/);
    command(drained.id, "{\"action\":\"resume\"}");
    await waitFor("live again after resume", () => live(drained.id), 5000);
  });
});
