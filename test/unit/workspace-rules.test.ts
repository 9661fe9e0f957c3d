/** The seed's alert and suspension rules, one by one, on an injected clock. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DAY, ManualClock } from "../../services/common/clock.js";
import { autoSuspensions, memberSuspended, SIZE_LIMIT_BYTES, suspendChoices, syncAlerts, type AlertInput, type EndpointView, type QueueFigure } from "../../client/sync/rules.js";
import { capRanges, missingRanges, rankPeers } from "../../client/sync/recovery.js";

const clock = new ManualClock(Date.UTC(2026, 0, 31, 12));
const BIG = SIZE_LIMIT_BYTES + 1;
const ep = (endpointId: string, memberId: string, suspended = false): EndpointView => ({ endpointId, memberId, suspended });
const queued = (endpointId: string, daysAgo: number, outstanding = 3): QueueFigure => ({ endpointId, outstanding, bytes: outstanding * 100, oldestQueuedAtMs: clock.now() - daysAgo * DAY });

const base = (over: Partial<AlertInput> = {}): AlertInput => ({
  self: { memberId: "jane", role: "manager" },
  madeChange: true,
  workspaceBytes: BIG,
  legacy: false,
  nowMs: clock.now(),
  queue: [queued("fred-pc", 21)],
  endpoints: [ep("jane-pc", "jane"), ep("fred-pc", "fred"), ep("mary-pc", "mary")],
  ...over,
});

describe("synchronisation alerts", () => {
  it("alert when all four conditions hold", () => {
    assert.deepEqual(syncAlerts(base()).map((a) => a.memberId), ["fred"]);
  });
  it("no alert without outstanding changes for a member", () => {
    assert.deepEqual(syncAlerts(base({ queue: [] })), []);
    assert.deepEqual(syncAlerts(base({ queue: [queued("fred-pc", 30, 0)] })), []);
  });
  it("no alert before the oldest queued change is 21 days old (20 days 23 hours is not enough)", () => {
    assert.deepEqual(syncAlerts(base({ queue: [{ ...queued("fred-pc", 21), oldestQueuedAtMs: clock.now() - 21 * DAY + 3_600_000 }] })), []);
    assert.equal(syncAlerts(base({ queue: [queued("fred-pc", 40)] })).length, 1);
  });
  it("no alert unless the manager makes a change", () => {
    assert.deepEqual(syncAlerts(base({ madeChange: false })), []);
  });
  it("no alert at or under 100 MB, except in legacy (Groove 2.5) mode", () => {
    assert.deepEqual(syncAlerts(base({ workspaceBytes: SIZE_LIMIT_BYTES })), []);
    assert.deepEqual(syncAlerts(base({ workspaceBytes: 10, legacy: true })).map((a) => a.memberId), ["fred"]);
  });
  it("participants never get alerts; a participant promoted to manager does", () => {
    assert.deepEqual(syncAlerts(base({ self: { memberId: "mary", role: "participant" } })), []);
    assert.equal(syncAlerts(base({ self: { memberId: "mary", role: "manager" } })).length, 1);
  });
  it("no alert about a suspended member; an alert while one of its endpoints is still active", () => {
    const endpoints = [ep("jane-pc", "jane"), ep("fred-pc", "fred", true), ep("fred-laptop", "fred", true)];
    assert.deepEqual(syncAlerts(base({ endpoints, queue: [queued("fred-pc", 30), queued("fred-laptop", 30)] })), []);
    endpoints[2] = ep("fred-laptop", "fred");
    assert.deepEqual(syncAlerts(base({ endpoints, queue: [queued("fred-pc", 30), queued("fred-laptop", 30)] }))[0]!.endpointIds, ["fred-laptop"]);
    assert.ok(memberSuspended([ep("a", "x", true)], "x"));
  });
});

describe("automatic suspension", () => {
  const three = [ep("jane-pc", "jane"), ep("fred-pc", "fred"), ep("fred-laptop", "fred"), ep("fred-home", "fred")];
  it("suspends stale endpoints oldest first until the member is queued on one endpoint", () => {
    const queue = [queued("fred-pc", 30), queued("fred-laptop", 25), queued("fred-home", 22)];
    assert.deepEqual(autoSuspensions({ workspaceBytes: BIG, nowMs: clock.now(), queue, endpoints: three }), ["fred-pc", "fred-laptop"]);
  });
  it("keeps an up-to-date endpoint and suspends only stale ones", () => {
    const queue = [queued("fred-pc", 30), queued("fred-laptop", 2)];
    assert.deepEqual(autoSuspensions({ workspaceBytes: BIG, nowMs: clock.now(), queue, endpoints: three }), ["fred-pc"]);
  });
  it("never the last endpoint, never a single-endpoint member", () => {
    const endpoints = [ep("jane-pc", "jane"), ep("fred-pc", "fred", true), ep("fred-laptop", "fred", true), ep("fred-home", "fred"), ep("mary-pc", "mary")];
    const queue = [queued("fred-home", 60), queued("mary-pc", 60)];
    assert.deepEqual(autoSuspensions({ workspaceBytes: BIG, nowMs: clock.now(), queue, endpoints }), []);
  });
  it("never in a workspace of 100 MB or less (legacy mode included)", () => {
    const queue = [queued("fred-pc", 30), queued("fred-laptop", 30), queued("fred-home", 30)];
    assert.deepEqual(autoSuspensions({ workspaceBytes: SIZE_LIMIT_BYTES, nowMs: clock.now(), queue, endpoints: three }), []);
  });
  it("offers managers, not participants, the members to suspend with the space it frees", () => {
    const endpoints = [ep("jane-pc", "jane"), ep("fred-pc", "fred")];
    const choices = suspendChoices({ memberId: "jane", role: "manager" }, [queued("fred-pc", 21, 4)], endpoints, clock.now());
    assert.deepEqual(choices, [{ memberId: "fred", endpointIds: ["fred-pc"], outstanding: 4, bytes: 400, oldestQueuedAtMs: clock.now() - 21 * DAY, stale: true }]);
    assert.deepEqual(suspendChoices({ memberId: "mary", role: "participant" }, [queued("fred-pc", 21)], endpoints, clock.now()), []);
  });
});

describe("gap recovery planning", () => {
  it("finds the missing ranges around changes already pending", () => {
    assert.deepEqual(missingRanges({ a: 2 }, { a: 9, b: 2 }, new Map([["a", [5, 6]]])), [
      { origin: "a", from: 3, to: 4 },
      { origin: "a", from: 7, to: 9 },
      { origin: "b", from: 1, to: 2 },
    ]);
    assert.deepEqual(missingRanges({ a: 9 }, { a: 9 }, new Map()), []);
  });
  it("caps a request and ranks peers that hold the ranges, most recently heard first", () => {
    assert.deepEqual(capRanges([{ origin: "a", from: 1, to: 10 }, { origin: "b", from: 1, to: 10 }], 12), [{ origin: "a", from: 1, to: 10 }, { origin: "b", from: 1, to: 2 }]);
    const ranges = [{ origin: "mary", from: 1, to: 5 }];
    assert.deepEqual(rankPeers(ranges, ["mary", "jane", "bob"], { jane: { mary: 5 }, mary: { mary: 5 } }, new Map([["jane", 10], ["mary", 5]])), ["jane", "mary", "bob"]);
  });
});
