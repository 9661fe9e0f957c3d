/** Presence in large rooms: past the threshold, changes are batched at most once per throttle interval (of the injected clock). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RoomPresence, type PresenceChanges } from "../../services/channel/presence.js";
import { waitFor } from "../support/wait.js";

const opts = { heartbeatMs: 1000, ttlMs: 3000, throttleThreshold: 100, throttleMs: 200 };

function room() {
  const batches: Array<PresenceChanges & { at: number }> = [];
  const p = new RoomPresence("me", opts, Date.now, (c) => batches.push({ ...c, at: Date.now() }));
  return { p, batches };
}

describe("room presence", () => {
  it("reports each change of a small room at once", async () => {
    const { p, batches } = room();
    p.addLocal("alice");
    await waitFor("alice online", () => batches.length === 1);
    p.applyRemote("other", ["bob"], [], false, opts.ttlMs);
    await waitFor("bob online", () => batches.length === 2);
    assert.deepEqual(batches.map((b) => [b.online, b.offline, b.count]), [[["alice"], [], 1], [["bob"], [], 2]]);
    p.close();
  });

  it("batches a 10,000-member room's arrivals: past the threshold, one batch per throttle interval of the clock", async () => {
    let now = 1_000_000;
    const batches: PresenceChanges[] = [];
    const p = new RoomPresence("me", opts, () => now, (c) => batches.push(c));
    // Up to the threshold, a tick's changes go out at once.
    for (let i = 0; i < opts.throttleThreshold; i++) p.applyRemote(`instance-${i % 4}`, [`user-${i}`], [], false, 60_000);
    await waitFor("the first 100 arrivals", () => batches.length === 1);
    // The other 9,900 arrive one announcement at a time, as other instances would bring them.
    for (let i = opts.throttleThreshold; i < 10_000; i++) {
      p.applyRemote(`instance-${i % 4}`, [`user-${i}`], [], false, 60_000);
      if (i % 500 === 0) await new Promise((r) => setImmediate(r)); // let timers run in between
    }
    assert.equal(batches.length, 1, "no batch before the throttle interval has passed on the clock");
    now += opts.throttleMs;
    await waitFor("one batch of the rest", () => batches.length === 2);
    assert.equal(batches[1]!.online.length, 9_900, "the batch carries the changes, not the whole list");
    assert.equal(batches[1]!.count, 10_000);
    assert.equal(new Set(batches.flatMap((b) => b.online)).size, 10_000, "each member reported online once");
    p.applyRemote("instance-0", [], ["user-0"], false, 60_000);
    now += opts.throttleMs;
    await waitFor("the departure, one interval later", () => batches.length === 3);
    assert.deepEqual(batches[2], { online: [], offline: ["user-0"], count: 9_999 });
    p.close();
  });

  it("lets a vanished instance's users expire, and cancels an arrival undone within a batch", async () => {
    let now = 1_000;
    const batches: PresenceChanges[] = [];
    const p = new RoomPresence("me", opts, () => now, (c) => batches.push(c));
    p.applyRemote("other", ["carol", "dave"], [], true, opts.ttlMs);
    await waitFor("both online", () => batches.length === 1);
    now += opts.ttlMs + 1;
    p.expire();
    await waitFor("expired", () => batches.length === 2);
    assert.deepEqual(batches[1]!.offline.sort(), ["carol", "dave"]);
    p.addLocal("erin");
    p.removeLocal("erin");
    p.addLocal("frank");
    await waitFor("frank", () => batches.length === 3);
    assert.deepEqual(batches[2], { online: ["frank"], offline: [], count: 1 });
    p.close();
  });
});
