/**
 * The "stray claim" seen now and then in test/e2e/relay-failover.test.ts,
 * made deterministic: a promotion's position read is executed before the
 * follower applies the promotion's own epoch claim, but answered after. The
 * promotion must still serve (before the fix the stale read replaced the newer
 * position and the replica reported "claimed epoch N but '<old primary>'
 * claimed after it", as if someone had claimed after it).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { systemClock } from "../../services/common/clock.js";
import { createPool, type Pool } from "../../services/common/db.js";
import { RelayService } from "../../services/relay/service.js";
import { DEFAULT_RELAY_OPTIONS, Harness, unique } from "../support/harness.js";
import { ReplicaSet } from "../support/relay-replicas.js";
import { waitFor } from "../support/wait.js";

describe("relay promotion (in process)", () => {
  const h = new Harness();
  after(() => h.cleanup());

  it("serves after a promotion whose position read was overtaken by the follower applying the claim", async () => {
    const set = new ReplicaSet(h, unique("race"));
    await set.fresh();
    await set.inProcess("a", "primary");

    const url = await h.database("ha_b");
    const real = createPool(url);
    const probe = createPool(url);
    h.defer(() => Promise.all([real.end(), probe.end()]));
    let armed = false;
    let readExecuted!: () => void;
    const readDone = new Promise<void>((r) => (readExecuted = r));
    const claimApplied = () =>
      waitFor("b's database applied b's claim", async () => (await probe.query<{ primary_replica: string }>("SELECT primary_replica FROM replication_state")).rows[0]?.primary_replica === "b", 10_000);
    // While armed: transactions (the follower's apply) start only after the position read has
    // run in Postgres, and that read is answered only after the apply committed.
    const pool = new Proxy(real, {
      get(target, prop) {
        if (prop === "connect") return async () => (armed && (await readDone), target.connect());
        if (prop === "query") {
          return async (text: unknown, ...rest: unknown[]) => {
            const result = await (target.query as (...a: unknown[]) => Promise<unknown>)(text, ...rest);
            if (armed && typeof text === "string" && /FROM replication_state$/.test(text.trim())) {
              armed = false;
              readExecuted();
              await claimApplied();
            }
            return result;
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as Pool;
    const b = await RelayService.create(
      { ...DEFAULT_RELAY_OPTIONS, relayId: set.relayId, replication: { role: "secondary", replicaName: "b" } },
      { pool, bus: await h.nats(), clock: systemClock, log: h.log, key: set.key, changes: await set.changeStream() },
    );
    h.defer(() => b.stop());
    assert.equal(b.replica!.role, "secondary");

    armed = true;
    const status = await b.replica!.promote(10_000);
    assert.equal(armed, false, "the position read was delayed as intended");
    assert.equal(status.role, "primary");
    assert.equal(status.primary, "b");
    assert.equal(b.replica!.role, "primary");
  });
});
