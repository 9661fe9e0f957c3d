/** Presence in large rooms: past the threshold, changes are batched at most once per throttle interval. */
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

  it("batches a 10,000-member room's arrivals instead of sending one update per member", async () => {
    const { p, batches } = room();
    const started = Date.now();
    // 10,000 members arrive one announcement at a time, as heartbeats from other instances would bring them.
    for (let i = 0; i < 10_000; i++) {
      p.applyRemote(`instance-${i % 4}`, [`user-${i}`], [], false, 60_000);
      if (i % 500 === 0) await new Promise((r) => setImmediate(r)); // let timers run in between
    }
    await waitFor("every arrival reported", () => batches.reduce((n, b) => n + b.online.length, 0) === 10_000, 5000);
    const elapsed = Date.now() - started;
    assert.equal(batches.at(-1)!.count, 10_000);
    assert.equal(new Set(batches.flatMap((b) => b.online)).size, 10_000, "each member reported online once");
    // Past the threshold, at most one batch per throttle interval (plus the unthrottled ones before it).
    const throttled = batches.filter((b) => b.count > opts.throttleThreshold);
    assert.ok(throttled.length <= Math.ceil(elapsed / opts.throttleMs) + 1, `${throttled.length} batches in ${elapsed} ms`);
    for (let i = 1; i < throttled.length; i++) assert.ok(throttled[i]!.at - throttled[i - 1]!.at >= opts.throttleMs - 5);
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
