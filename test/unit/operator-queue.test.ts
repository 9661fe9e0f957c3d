// The operator's work queue: one run per burst of adds, never two runs of one
// key at once, failures retried with a growing backoff.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { WorkQueue } from "../../operator/kube/queue.js";
import { waitFor } from "../support/wait.js";

describe("WorkQueue", () => {
  test("a key added many times while it waits runs once", async () => {
    const runs: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(async (key) => {
      if (key === "block") await gate;
      runs.push(key);
    });
    q.add("block"); // occupies the single worker while "a" is added repeatedly
    for (let i = 0; i < 5; i++) q.add("a");
    release();
    await waitFor("a processed", () => runs.includes("a"));
    await q.stop();
    assert.deepEqual(runs, ["block", "a"]);
  });

  test("a key added during its own run runs again afterwards, never concurrently", async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs++;
      if (runs === 1) await gate;
      running--;
    }, { workers: 4 });
    q.add("k");
    await waitFor("first run started", () => runs === 1);
    q.add("k");
    q.add("k");
    release();
    await waitFor("second run", () => runs === 2 && running === 0);
    await q.stop();
    assert.equal(maxRunning, 1);
    assert.equal(runs, 2);
  });

  test("failures are retried with a growing delay until the key succeeds", async () => {
    const at: number[] = [];
    const results: string[] = [];
    const q = new WorkQueue(async () => {
      at.push(Date.now());
      if (at.length < 4) throw new Error("apiserver said no");
    }, { baseRetryMs: 40, onResult: (_key, result) => results.push(result) });
    q.add("k");
    await waitFor("success after three failures", () => results.at(-1) === "success", 5000);
    await q.stop();
    assert.deepEqual(results, ["error", "error", "error", "success"]);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    assert.ok(gaps[0]! >= 35 && gaps[1]! >= 75 && gaps[2]! >= 155, `retry gaps ${gaps.join(", ")} ms should double from 40 ms`);
  });

  test("different keys are processed in parallel by several workers", async () => {
    let running = 0;
    let maxRunning = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await gate;
      running--;
    }, { workers: 3 });
    for (const k of ["a", "b", "c"]) q.add(k);
    await waitFor("three at once", () => maxRunning === 3);
    release();
    await q.stop();
  });

  test("a key asked for later twice before its time runs once, after the delay", async () => {
    const runs: string[] = [];
    const q = new WorkQueue(async (key) => void runs.push(key));
    const asked = Date.now();
    q.addAfter("later", 30);
    q.addAfter("later", 30);
    await waitFor("the delayed key", () => runs.includes("later"));
    assert.ok(Date.now() - asked >= 25, "not before its delay");
    // A second delayed key, asked for after the first ran, runs too: nothing is left pending.
    q.addAfter("sentinel", 10);
    await waitFor("the sentinel", () => runs.includes("sentinel"));
    await q.stop();
    assert.deepEqual(runs, ["later", "sentinel"]);
  });
});
