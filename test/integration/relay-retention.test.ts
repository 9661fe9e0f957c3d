/** Retention purge on a simulated clock, admin purges, and device suspension. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { InboxMessage } from "../../client/relay.js";
import { DAY, ManualClock } from "../../services/common/clock.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { withTimeout } from "../support/wait.js";
import { adminClient } from "../support/admin.js";

const payloads = (ms: InboxMessage[]) => ms.map((m) => Buffer.from(m.payload).toString());

describe("relay retention and maintenance", () => {
  const h = new Harness();
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  let relay: RelayInstance;
  before(async () => {
    relay = await h.relay({ databaseUrl: await h.database("relayret"), bus: await h.nats(), key: newRelayKey(), clock });
  });
  after(() => h.cleanup());

  const call = <T>(fn: (md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: T) => void) => void) => {
    const admin = adminClient(h, relay.address);
    return new Promise<T>((res, rej) => fn(admin.md, (e, r) => (e ? rej(e) : res(r))));
  };

  it("purges messages older than the retention and keeps younger ones", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const fred = await h.identityWithDevice([relay.address], unique("fred"), unique("f-dev"));
    const a = h.client([relay.address], alice);
    clock.set(Date.UTC(2026, 0, 5));
    await a.send({ to: [{ deviceId: fred.deviceId }], payload: Buffer.from("jan 5") });
    clock.set(Date.UTC(2026, 0, 10));
    await a.send({ to: [{ deviceId: fred.deviceId }], payload: Buffer.from("jan 10") });

    clock.set(Date.UTC(2026, 1, 3)); // 29 days after Jan 5: nothing is old enough yet
    assert.equal((await relay.service.retention.runOnce()).messages, 0);
    const purgedBefore = (await adminClient(h, relay.address).stats()).purgedMessages;
    clock.set(Date.UTC(2026, 1, 4, 0, 0, 1)); // Feb 4: Jan 5 is past 30 days
    const purged = await relay.service.retention.runOnce();
    assert.equal(purged.messages, 1);
    const stats = await adminClient(h, relay.address).stats();
    assert.equal(stats.purgedMessages, purgedBefore + 1);

    const f = h.client([relay.address], fred);
    const got: InboxMessage[] = [];
    await f.inbox((m) => void got.push(m), { ack: false });
    assert.deepEqual(payloads(got), ["jan 10"]);
    // The purged message's sequence number stays taken: the gap is visible to the reader.
    assert.equal(got[0]!.seq, 2);
  });

  it("purges one queue, or everything older than an age, on an admin's request", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const carol = await h.identityWithDevice([relay.address], unique("carol"), unique("c-dev"));
    const a = h.client([relay.address], alice);
    await a.sendBatch([1, 2, 3].map((i) => ({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`b${i}`) })));
    const older = clock.now();
    clock.advance(DAY);
    await a.send({ to: [{ deviceId: carol.deviceId }], payload: Buffer.from("new") });
    await a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("b4") });

    const r1 = await call<{ deleted: number }>((md, cb) => adminClient(h, relay.address).raw.purgeQueue({ queue: { target: { $case: "deviceId", value: bob.deviceId } } }, md, cb));
    assert.equal(r1.deleted, 4);
    assert.ok(older < clock.now());
    await a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("b5") });
    clock.advance(2 * DAY);
    const r2 = await call<{ deleted: number }>((md, cb) => adminClient(h, relay.address).raw.purgeOlderThan({ ageSeconds: DAY / 1000 }, md, cb));
    assert.ok(r2.deleted >= 2, `purged ${r2.deleted}`); // carol's and b5, plus older leftovers
    const got: InboxMessage[] = [];
    await h.client([relay.address], carol).inbox((m) => void got.push(m));
    assert.deepEqual(got, []);
  });

  it("suspends a device: nothing is queued for it, it cannot sign in, its stream ends; resumed, it works again", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    await a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("before") });
    const b = h.client([relay.address], bob);
    let backlog!: () => void;
    const caughtUp = new Promise<void>((r) => (backlog = r));
    const got: string[] = [];
    const stream = b.inbox((m) => void got.push(Buffer.from(m.payload).toString()), { follow: true, onBacklogComplete: () => backlog() });
    await withTimeout("backlog", caughtUp);

    await call((md, cb) => adminClient(h, relay.address).raw.suspendDevice({ deviceId: bob.deviceId }, md, cb));
    await assert.rejects(withTimeout("stream ends", stream), /suspended/);
    await assert.rejects(a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("during") }), (e: Error & { code?: number }) => e.code === grpc.status.FAILED_PRECONDITION && /suspended/.test(e.message));
    await assert.rejects(h.client([relay.address], bob).authenticate(), /suspended/);
    const stats = await adminClient(h, relay.address).stats();
    assert.ok(stats.suspendedDevices >= 1);

    await call((md, cb) => adminClient(h, relay.address).raw.resumeDevice({ deviceId: bob.deviceId }, md, cb));
    await a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("after") });
    const later: InboxMessage[] = [];
    await h.client([relay.address], bob).inbox((m) => void later.push(m));
    assert.deepEqual(payloads(later), ["after"]);
    assert.deepEqual(got, ["before"]);
  });
});
