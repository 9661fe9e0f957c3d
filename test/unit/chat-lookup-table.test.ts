/** The lookup's choice is a pure function of the load reports. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../services/common/clock.js";
import { InstanceTable } from "../../services/lookup/table.js";

const report = (instanceId: string, sessions: number, sentAtMs: number, healthy = true) => ({ instanceId, address: `${instanceId}:1`, sessions, users: sessions, healthy, sentAtMs, intervalMs: 1000 });

describe("lookup instance table", () => {
  it("picks the least-loaded instance, ties broken by instance id, the same in every replica", () => {
    const clock = new ManualClock();
    const reports = [report("c", 3, 1), report("b", 2, 1), report("a", 2, 1)];
    const one = new InstanceTable(clock, 3000);
    const two = new InstanceTable(clock, 3000);
    for (const r of reports) one.apply(r);
    for (const r of [...reports].reverse()) two.apply(r);
    assert.equal(one.choose([])?.instanceId, "a");
    assert.equal(two.choose([])?.instanceId, "a");
    assert.equal(one.choose(["a"])?.instanceId, "b");
  });

  it("drops an instance that stops reporting, ignores unhealthy ones and stale reports", () => {
    const clock = new ManualClock();
    const t = new InstanceTable(clock, 3000);
    t.apply(report("a", 0, 10));
    t.apply(report("b", 5, 10));
    clock.advance(2000);
    t.apply(report("b", 6, 20));
    t.apply(report("b", 1, 15)); // older, arrives late: ignored
    clock.advance(1500);
    assert.equal(t.choose([])?.instanceId, "b");
    assert.deepEqual(t.states().map((s) => s.report?.instanceId), ["b"]);
    t.apply(report("b", 6, 30, false));
    assert.equal(t.choose([]), undefined);
    // Excluding the only live instance still returns it rather than nothing.
    t.apply(report("c", 0, 30));
    assert.equal(t.choose(["c"])?.instanceId, "c");
  });

  it("sends every new session to a resumed instance until it has caught up", () => {
    const clock = new ManualClock();
    const t = new InstanceTable(clock, 3000);
    t.apply(report("a", 10, 1));
    t.apply(report("b", 0, 1)); // resumed, empty
    const picks: string[] = [];
    for (let b = 0; b <= 10; b++) {
      t.apply(report("b", b, 2 + b));
      picks.push(t.choose([])!.instanceId);
    }
    assert.deepEqual(picks, [..."bbbbbbbbbb", "a"]);
  });
});
