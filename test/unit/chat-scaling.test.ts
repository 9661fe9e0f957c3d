// The ChatPool scaling decision: bounds, hysteresis, cooldown, the manual
// override from /scale, and drain-before-scale-in (highest ordinal first).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decideScale, type InstanceLoad, type ScaleInput } from "../../operator/controllers/chat-scaling.js";

const load = (users: number[], over: Partial<InstanceLoad>[] = []): InstanceLoad[] =>
  users.map((u, ordinal) => ({ ordinal, users: u, sessions: u, healthy: true, ...over[ordinal] }));

const input = (over: Partial<ScaleInput>): ScaleInput => ({
  min: 1, max: 5, targetUsersPerInstance: 100, current: 2, instances: load([50, 50]), nowMs: 1_000_000, cooldownMs: 60_000, ...over,
});

describe("ChatPool scaling decision", () => {
  test("a new pool starts at minInstances, or at spec.channel.replicas when set", () => {
    assert.deepEqual(decideScale(input({ min: 2, current: undefined, instances: undefined })).replicas, 2);
    assert.equal(decideScale(input({ current: undefined, manualReplicas: 4 })).replicas, 4);
  });

  test("scales out as soon as users exceed instances × target, clamped to maxInstances", () => {
    const d = decideScale(input({ instances: load([150, 120]) }));
    assert.deepEqual([d.replicas, d.reason, d.totalUsers], [3, "ScaleOut", 270]);
    assert.equal(decideScale(input({ instances: load([900, 900]) })).replicas, 5);
    // Exactly at capacity is not over it.
    assert.equal(decideScale(input({ instances: load([100, 100]) })).reason, "Stable");
  });

  test("hysteresis: scales in only when the users fit in fewer instances at 80% of the target", () => {
    // 90 users would fit in one instance at 100, but not at 80: stay.
    assert.equal(decideScale(input({ instances: load([45, 45]) })).reason, "Stable");
    const d = decideScale(input({ instances: load([40, 30]) }));
    assert.deepEqual([d.target, d.reason, d.drain], [1, "ScaleIn", [1]]);
  });

  test("cooldown: no load-driven step within cooldownMs of the last one, in either direction", () => {
    const recently = { lastScaleAtMs: 1_000_000 - 10_000 };
    const out = decideScale(input({ instances: load([150, 120]), ...recently }));
    assert.deepEqual([out.replicas, out.reason], [2, "Cooldown"]);
    assert.match(out.message, /50 s left/);
    assert.equal(decideScale(input({ instances: load([10, 0]), ...recently })).reason, "Cooldown");
    assert.equal(decideScale(input({ instances: load([150, 120]), lastScaleAtMs: 1_000_000 - 60_000 })).replicas, 3);
  });

  test("bounds apply at once, cooldown or not", () => {
    const recently = { lastScaleAtMs: 1_000_000 - 1000 };
    assert.deepEqual(decideScale(input({ min: 3, ...recently })).replicas, 3);
    const down = decideScale(input({ max: 1, ...recently }));
    assert.deepEqual([down.target, down.reason], [1, "AboveMaximum"]);
  });

  test("no load reports: hold the current size", () => {
    assert.deepEqual(decideScale(input({ instances: undefined })).reason, "LoadUnknown");
    assert.equal(decideScale(input({ instances: [] })).replicas, 2);
  });

  test("spec.channel.replicas wins over load and bounds, without cooldown", () => {
    const d = decideScale(input({ manualReplicas: 7, instances: load([0, 0]), lastScaleAtMs: 1_000_000 }));
    assert.deepEqual([d.replicas, d.reason], [7, "Manual"]);
  });

  test("scale-in drains the highest ordinals first and lowers replicas only past drained instances", () => {
    const base = { current: 4, manualReplicas: 2 };
    // #2 and #3 still have sessions: both are told to drain, replicas stay at 4.
    const start = decideScale(input({ ...base, instances: load([5, 5, 3, 2]) }));
    assert.deepEqual([start.replicas, start.target, start.drain], [4, 2, [2, 3]]);
    assert.match(start.message, /draining #2, #3 before removing them/);
    // #3 is drained (unhealthy, no sessions); #2 still has one: only #3 may go.
    const half = decideScale(input({ ...base, instances: load([5, 5, 1, 0], [{}, {}, { healthy: false }, { healthy: false }]) }));
    assert.deepEqual([half.replicas, half.drain], [3, [2]]);
    // Healthy with no sessions is not drained yet: lookups could still assign it.
    assert.equal(decideScale(input({ ...base, instances: load([5, 5, 0, 0]) })).replicas, 4);
    // Both drained, or not reporting at all: down to the target.
    assert.equal(decideScale(input({ ...base, instances: load([5, 5, 0], [{}, {}, { healthy: false }]) })).replicas, 2);
  });

  test("an unwanted drain is lifted: instances below the target reporting unhealthy are resumed", () => {
    const d = decideScale(input({ current: 2, instances: load([150, 0], [{}, { healthy: false }]) }));
    assert.deepEqual([d.replicas, d.resume], [2, [1]]);
  });

  test("reports from instances beyond the current size are ignored", () => {
    const d = decideScale(input({ current: 1, instances: load([20, 500]) }));
    assert.deepEqual([d.totalUsers, d.reason], [20, "Stable"]);
  });
});
