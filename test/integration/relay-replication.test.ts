/**
 * Relay replication on real Postgres + NATS, replicas in this process: a
 * secondary applies everything the primary commits, reports its lag,
 * refuses clients; promotion fences the old primary (split brain refused).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ParleyClientError } from "../../client/errors.js";
import { RelayAdmin } from "../../client/admin.js";
import { RelayClient, type DeviceCredentials } from "../../client/relay.js";
import { RelayTransport } from "../../client/sync/transport.js";
import { systemClock } from "../../services/common/clock.js";
import { registry } from "../../services/common/metrics.js";
import { headers } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { ReplicaRole } from "../../generated/parley/v1/relay.js";
import { Harness, NATS_URL, unique } from "../support/harness.js";
import { ADMIN_TOKEN, ReplicaSet } from "../support/relay-replicas.js";
import { StreamMovedError } from "../../services/relay/replication/change-stream.js";
import { waitFor } from "../support/wait.js";

describe("relay replication (in process)", () => {
  const h = new Harness();
  /** A client that reports the first error instead of retrying elsewhere. */
  const oneShot = (addresses: string[], device: DeviceCredentials) => {
    const c = RelayClient.create({ addresses, device, maxAttempts: 1, deadlineMs: 5000 });
    h.defer(() => c.close());
    return c;
  };
  after(() => h.cleanup());
  let set: ReplicaSet;
  before(async () => {
    set = new ReplicaSet(h, unique("ha"));
    await set.fresh();
  });

  it("applies every change on the secondary, then fails over and fences the old primary", async () => {
    const a = await set.inProcess("a", "primary");
    const b = await set.inProcess("b", "secondary");
    const adminA = RelayAdmin.create(a.address, ADMIN_TOKEN);
    const adminB = RelayAdmin.create(b.address, ADMIN_TOKEN);
    h.defer(() => (adminA.close(), adminB.close()));
    assert.equal((await adminA.replicationStatus()).role, ReplicaRole.REPLICA_ROLE_PRIMARY);
    assert.equal((await adminB.replicationStatus()).role, ReplicaRole.REPLICA_ROLE_SECONDARY);

    const alice = await h.identityWithDevice([a.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([a.address], unique("bob"), unique("b-dev"));
    const sender = h.client([a.address], alice);
    for (let i = 0; i < 20; i++) await sender.send({ messageId: `m${i}`, to: [{ deviceId: bob.deviceId }, { identityId: bob.identityId }], payload: Buffer.from(`hello ${i}`) });
    // A replicating relay commits SendStream messages one at a time, in the order written.
    const out = sender.sendStream();
    await Promise.all(Array.from({ length: 5 }, (_, i) => out.send({ messageId: `s${i}`, to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`streamed ${i}`) })));
    await out.close();
    // A change larger than one stream message (1.6 MB once encoded) travels in parts.
    await sender.sendBatch(Array.from({ length: 20 }, (_, i) => ({ messageId: `big${i}`, to: [{ identityId: bob.identityId }], payload: Buffer.alloc(60_000, i) })));
    await adminA.purgeQueue({ identityId: bob.identityId });
    await adminA.suspend(alice.deviceId);
    await adminA.resume(alice.deviceId);
    // Workspace directory writes replicate too.
    const ws = unique("ws");
    const wsAtA = RelayTransport.create({ device: alice, relays: [a.address], clock: systemClock });
    h.defer(() => wsAtA.close());
    await wsAtA.directory()!.register(ws);
    await wsAtA.directory()!.setMember(ws, bob.identityId, "participant");
    const receiver = h.client([a.address], bob);
    const ids: string[] = [];
    await receiver.inbox((m) => void ids.push(m.messageId), { follow: false, ack: false });
    assert.deepEqual(ids, [...Array.from({ length: 20 }, (_, i) => `m${i}`), ...Array.from({ length: 5 }, (_, i) => `s${i}`)]);
    // Ack half, so the secondary must apply deletes too.
    assert.equal(await receiver.ack(10, 0), 10);

    // The secondary converges to the same queues, byte for byte.
    const primarySums = await adminA.queueChecksums();
    await waitFor("secondary caught up", async () => (await adminB.replicationStatus()).appliedStreamSeq === primarySums.streamSeq, 10_000);
    assert.deepEqual(await adminB.queueChecksums(), primarySums);
    const figures = ({ oldestAgeSeconds: _a, top, ...rest }: Awaited<ReturnType<RelayAdmin["stats"]>>) => ({ ...rest, top: top.map(({ oldestAgeSeconds: _b, ...q }) => q) });
    assert.deepEqual(figures(await adminB.stats()), figures(await adminA.stats()));
    const status = await adminB.replicationStatus();
    assert.equal(status.behindMessages, 0);
    // Lag and role are in Prometheus too.
    const metrics = await registry.metrics();
    assert.match(metrics, new RegExp(`parley_relay_replication_behind_messages\\{relay="${set.relayId}",replica="b"\\} 0`));
    assert.match(metrics, new RegExp(`parley_relay_replication_role\\{relay="${set.relayId}",replica="b",role="secondary"\\} 1`));
    assert.equal(status.primary, "a");

    // A secondary refuses clients with UNAVAILABLE (so the SDK tries the next address).
    const direct = oneShot([b.address], alice);
    await assert.rejects(direct.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("x") }), (err: unknown) =>
      err instanceof ParleyClientError && err.codeName === "UNAVAILABLE" && /secondary/.test(err.message),
    );

    // Promote B: A is fenced at once; a client given both addresses carries on at B.
    const promoted = await adminB.promote(10);
    assert.equal(promoted.role, ReplicaRole.REPLICA_ROLE_PRIMARY);
    assert.equal(promoted.epoch, status.epoch + 1);
    await waitFor("old primary fenced", async () => (await adminA.replicationStatus()).role === ReplicaRole.REPLICA_ROLE_SECONDARY, 10_000);
    await assert.rejects(oneShot([a.address], alice).send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("split") }), /UNAVAILABLE|not accepting writes|secondary/);
    const both = h.client([a.address, b.address], alice);
    const receipt = await both.send({ messageId: "after-failover", to: [{ deviceId: bob.deviceId }], payload: Buffer.from("after") });
    assert.equal(receipt.duplicate, false);
    // A resend of a message accepted by the old primary is recognised by the new one.
    assert.equal((await both.send({ messageId: "m3", to: [{ deviceId: bob.deviceId }], payload: Buffer.from("hello 3") })).duplicate, true);
    const wsAtB = RelayTransport.create({ device: alice, relays: [b.address], clock: systemClock });
    h.defer(() => wsAtB.close());
    const replicated = await wsAtB.directory()!.setMember(ws, bob.identityId, "manager");
    assert.deepEqual(replicated.members.map((m) => m.identityId).sort(), [alice.identityId, bob.identityId].sort());
    const newSums = await adminB.queueChecksums();
    await waitFor("old primary follows the new one", async () => (await adminA.replicationStatus()).appliedStreamSeq === newSums.streamSeq, 10_000);
    assert.deepEqual(await adminA.queueChecksums(), newSums);
  });

  it("a stale primary that wakes after a promotion refuses writes (split brain)", async () => {
    const s2 = new ReplicaSet(h, unique("ha"));
    await s2.fresh();
    const a = await s2.inProcess("a", "primary");
    const b = await s2.inProcess("b", "secondary");
    const alice = await h.identityWithDevice([a.address], unique("alice"), unique("a-dev"));
    const atA = oneShot([a.address], alice);
    await atA.send({ to: [{ deviceId: alice.deviceId }], payload: Buffer.from("before") });
    // Promote B behind A's back: A missed the claim notification (as if it had been paused).
    const stream = await s2.changeStream();
    const claim = await stream.claimEpoch(99, "b", Date.now());
    assert.ok(claim > 0);
    // The fence itself: an append that expects the stream to end where it did before the claim is refused.
    await assert.rejects(stream.append({ change: 1_000_000, epoch: 1, primary: "a", atMs: Date.now() }, [Buffer.from("[]")], claim - 1), StreamMovedError);
    await b.service.replica!.resync("test: claim written directly");
    assert.equal(b.service.replica!.role, "primary");
    // A's next commit names a stream position that no longer is the end: rolled back, UNAVAILABLE.
    const before = await RelayAdmin.create(b.address, ADMIN_TOKEN).queueChecksums();
    await assert.rejects(atA.send({ messageId: "stale", to: [{ deviceId: alice.deviceId }], payload: Buffer.from("stale") }), (err: unknown) =>
      err instanceof ParleyClientError && err.codeName === "UNAVAILABLE",
    );
    await waitFor("A becomes secondary", () => a.service.replica!.role === "secondary", 10_000);
    // Nothing of the refused write exists anywhere.
    const adminA = RelayAdmin.create(a.address, ADMIN_TOKEN);
    h.defer(() => adminA.close());
    await waitFor("A caught up", async () => (await adminA.replicationStatus()).appliedStreamSeq >= before.streamSeq, 10_000);
    assert.deepEqual(await adminA.queueChecksums(), before);
  });

  it("steps over the first parts of a change whose append failed, on the primary and the secondary", async () => {
    const s3 = new ReplicaSet(h, unique("ha"));
    await s3.fresh();
    const a = await s3.inProcess("a", "primary");
    const b = await s3.inProcess("b", "secondary");
    const alice = await h.identityWithDevice([a.address], unique("alice"), unique("a-dev"));
    const atA = RelayClient.create({ addresses: [a.address], device: alice, deadlineMs: 5000, maxAttempts: 5 });
    h.defer(() => atA.close());
    await atA.send({ messageId: "one", to: [{ deviceId: alice.deviceId }], payload: Buffer.from("one") });
    // What a primary leaves behind when it dies after the first of two parts: part 1/2 of its next change.
    const pos = await a.service.replication.status();
    const nc = await connect({ servers: NATS_URL });
    h.defer(() => nc.close());
    const hdrs = headers();
    for (const [k, v] of Object.entries({ "Parley-Change": String(pos.change + 1), "Parley-Epoch": String(pos.epoch), "Parley-Primary": "a", "Parley-At": String(Date.now()), "Parley-Part": "1/2" })) hdrs.set(k, v);
    const subject = `parley.relay-changes.${Buffer.from(s3.relayId).toString("base64url")}.change`;
    await jetstream(nc).publish(subject, Buffer.from('[{"t":"suspend","deviceId":"'), { headers: hdrs, expect: { lastSequence: pos.streamSeq } });
    // The next send is refused once (the stream moved), then the primary steps over the orphan and accepts it.
    const receipt = await atA.send({ messageId: "two", to: [{ deviceId: alice.deviceId }], payload: Buffer.from("two") });
    assert.equal(receipt.duplicate, false);
    assert.equal(a.service.replica!.role, "primary");
    const adminA = RelayAdmin.create(a.address, ADMIN_TOKEN);
    const adminB = RelayAdmin.create(b.address, ADMIN_TOKEN);
    h.defer(() => (adminA.close(), adminB.close()));
    const sums = await adminA.queueChecksums();
    await waitFor("secondary caught up", async () => (await adminB.replicationStatus()).appliedStreamSeq === sums.streamSeq, 10_000);
    assert.deepEqual(await adminB.queueChecksums(), sums);
    assert.equal((await adminB.stats()).depth, 2);
  });
});
