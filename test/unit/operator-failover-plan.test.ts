// The relay pair's failover rules as a pure function: when the operator waits,
// fails over, switches over, or refuses a request.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { durationMs, planFailover, type FailoverInput } from "../../operator/controllers/failover-plan.js";

const healthy = { healthy: true, reason: "Healthy", message: "1 ready instance(s); admin API answers" };
const down = { healthy: false, reason: "NoReadyInstances", message: "Deployment east has no ready instances" };
const t0 = new Date("2026-01-01T00:00:00Z");
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);

const input = (over: Partial<FailoverInput> = {}): FailoverInput => ({
  members: ["east", "west"],
  currentPrimary: "east",
  targetPrimary: "east",
  current: healthy,
  other: healthy,
  unhealthySince: undefined,
  now: t0,
  failoverDelayMs: 30_000,
  ...over,
});

describe("failover plan", () => {
  test("a healthy pair at rest does nothing", () => {
    assert.deepEqual(planFailover(input()), { decision: { action: "none" } });
    assert.deepEqual(planFailover(input({ targetPrimary: undefined })), { decision: { action: "none" } });
  });

  test("a requested switchover to the healthy other member goes ahead; to an unhealthy one it waits", () => {
    assert.deepEqual(planFailover(input({ targetPrimary: "west" })).decision, { action: "switchover", from: "east", to: "west", oldPrimaryHealthy: true });
    const wait = planFailover(input({ targetPrimary: "west", other: down })).decision;
    assert.equal(wait.action, "waitForTarget");
  });

  test("a primary unhealthy for less than failoverDelay is given time; then the other member is requested", () => {
    const early = planFailover(input({ current: down, unhealthySince: t0, now: at(10) })).decision;
    assert.deepEqual(early, { action: "none", checkAgainMs: 20_000 });
    const due = planFailover(input({ current: down, unhealthySince: t0, now: at(30) })).decision;
    assert.equal(due.action, "requestFailover");
    assert.equal(due.action === "requestFailover" && due.target, "west");
    assert.match(due.action === "requestFailover" ? due.message : "", /primary east has been unhealthy for 30s \(failoverDelay 30s\): Deployment east has no ready instances/);
  });

  test("no failover when the standby is unhealthy too (the note says why)", () => {
    const d = planFailover(input({ current: down, other: down, unhealthySince: t0, now: at(60) })).decision;
    assert.equal(d.action, "none");
    assert.match(d.action === "none" ? d.note ?? "" : "", /east is unhealthy but west cannot take over/);
  });

  test("after a failover the roles swap: west is current, east the target of the next switchover", () => {
    assert.deepEqual(planFailover(input({ currentPrimary: "west", targetPrimary: "east" })).decision, { action: "switchover", from: "west", to: "east", oldPrimaryHealthy: true });
  });

  test("a target outside the pair is reported and changes nothing, but never blocks a due failover", () => {
    const bad = planFailover(input({ targetPrimary: "north" }));
    assert.deepEqual(bad.decision, { action: "none" });
    assert.match(bad.invalidTarget ?? "", /status\.targetPrimary "north" is not a member of this pair \(east, west\); set it to "west" to switch over/);
    const due = planFailover(input({ targetPrimary: "north", current: down, unhealthySince: t0, now: at(31) }));
    assert.equal(due.decision.action, "requestFailover");
    assert.ok(due.invalidTarget);
  });

  test("durations as the CRD writes them", () => {
    assert.equal(durationMs("500ms"), 500);
    assert.equal(durationMs("30s"), 30_000);
    assert.equal(durationMs("2m"), 120_000);
    assert.throws(() => durationMs("soon"), /not a duration: soon/);
  });
});
