/** Group commit: concurrent sends share transactions, yet each request keeps its own outcome and error. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import type { InboxMessage } from "../../client/relay.js";
import { NotFoundError, ResourceExhaustedError } from "../../services/common/errors.js";
import { adminClient } from "../support/admin.js";
import { DEFAULT_RELAY_OPTIONS, Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";

describe("relay group commit", () => {
  const h = new Harness();
  let relay: RelayInstance;
  before(async () => {
    relay = await h.relay({ databaseUrl: await h.database("relaygc"), bus: await h.nats(), key: newRelayKey() });
  });
  after(() => h.cleanup());

  it("commits the good requests of a group and rolls back only the failing one", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const msg = (id: string, to: string) => ({ messageId: id, recipients: [{ kind: "device" as const, id: to }], payload: Buffer.from(id), contentType: "" });
    const sender = { deviceId: alice.deviceId, identityId: alice.identityId };
    const results = await relay.service.store.sendMany(
      [
        { sender, messages: [msg("g-1", bob.deviceId)] },
        { sender, messages: [msg("g-2", "no-such-device")] },
        { sender, messages: [msg("g-3", bob.deviceId), msg("g-4", bob.deviceId)] },
      ],
      DEFAULT_RELAY_OPTIONS.limits,
      Date.now(),
    );
    assert.ok(!(results[0] instanceof Error) && results[0]![0]!.queued[0]!.seq === 1);
    assert.ok(results[1] instanceof NotFoundError);
    assert.ok(!(results[2] instanceof Error));
    assert.deepEqual(results[2]!.map((o) => o.queued[0]!.seq), [2, 3]);
    const got: InboxMessage[] = [];
    await h.client([relay.address], bob).inbox((m) => void got.push(m));
    assert.deepEqual(got.map((m) => [m.messageId, m.seq]), [["g-1", 1], ["g-3", 2], ["g-4", 3]]);
  });

  it("queues an id used twice in one group once, and finds the request that would pass a quota", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const sender = { deviceId: alice.deviceId, identityId: alice.identityId };
    const msg = (id: string) => ({ messageId: id, recipients: [{ kind: "device" as const, id: bob.deviceId }], payload: Buffer.from(id), contentType: "" });
    const twice = await relay.service.store.sendMany([{ sender, messages: [msg("d-1")] }, { sender, messages: [msg("d-1"), msg("d-2")] }], DEFAULT_RELAY_OPTIONS.limits, Date.now());
    assert.deepEqual(twice.map((r) => (r as Array<{ duplicate: boolean; queued: Array<{ seq: number }> }>).map((o) => [o.duplicate, o.queued[0]!.seq])), [[[false, 1]], [[true, 1], [false, 2]]]);

    const tight = { ...DEFAULT_RELAY_OPTIONS.limits, maxQueueMessages: 3 };
    const quota = await relay.service.store.sendMany([{ sender, messages: [msg("q-1")] }, { sender, messages: [msg("q-2")] }], tight, Date.now());
    assert.ok(!(quota[0] instanceof Error), "the queue's third message fits");
    assert.ok(quota[1] instanceof ResourceExhaustedError, "the fourth does not");
    const got: InboxMessage[] = [];
    await h.client([relay.address], bob).inbox((m) => void got.push(m));
    assert.deepEqual(got.map((m) => m.messageId), ["d-1", "d-2", "q-1"]);
  });

  it("answers a resend with the first receipt even after the recipient was suspended", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    const first = await a.send({ messageId: "r-1", to: [{ deviceId: bob.deviceId }], payload: Buffer.from("x") });
    const admin = adminClient(h, relay.address);
    await new Promise((res, rej) => admin.raw.suspendDevice({ deviceId: bob.deviceId }, admin.md, (e) => (e ? rej(e) : res(undefined))));
    const again = await a.send({ messageId: "r-1", to: [{ deviceId: bob.deviceId }], payload: Buffer.from("x") });
    assert.equal(again.duplicate, true);
    assert.deepEqual(again.queued, first.queued);
    await assert.rejects(a.send({ messageId: "r-2", to: [{ deviceId: bob.deviceId }], payload: Buffer.from("y") }), /suspended/);
  });

  it("keeps every concurrent sender's messages in its own order and refuses only the bad requests", async () => {
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const carol = await h.identityWithDevice([relay.address], unique("carol"), unique("c-dev"));
    const admin = adminClient(h, relay.address);
    await new Promise((res, rej) => admin.raw.suspendDevice({ deviceId: carol.deviceId }, admin.md, (e) => (e ? rej(e) : res(undefined))));
    const senders = await Promise.all([0, 1, 2, 3].map((i) => h.identityWithDevice([relay.address], unique(`s${i}`), unique(`s${i}-dev`))));
    const clients = senders.map((s) => h.client([relay.address], s));
    // Each sender sends one after another (so its order is defined); the
    // four senders run at once, more than the groups in flight, so requests group.
    const outcomes = (
      await Promise.all(
        clients.map(async (c, i) => {
          const mine: PromiseSettledResult<unknown>[] = [];
          for (let j = 0; j < 25; j++) {
            const to = [{ deviceId: j % 10 === 9 ? carol.deviceId : bob.deviceId }];
            mine.push(...(await Promise.allSettled([c.send({ messageId: `s${i}-${j}`, to, payload: Buffer.from(`${i}:${j}`) })])));
          }
          return mine;
        }),
      )
    ).flat();
    const refused = outcomes.filter((o) => o.status === "rejected");
    assert.equal(refused.length, 4 * 2, "the sends to the suspended device, and only those");
    for (const r of refused) assert.equal((r as PromiseRejectedResult).reason.code, grpc.status.FAILED_PRECONDITION);

    const got: InboxMessage[] = [];
    await h.client([relay.address], bob).inbox((m) => void got.push(m));
    assert.equal(got.length, 4 * 23);
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: got.length }, (_, k) => k + 1), "no gaps in the queue's sequence");
    for (let i = 0; i < 4; i++) {
      const mine = got.filter((m) => m.senderDeviceId === senders[i]!.deviceId).map((m) => Number(Buffer.from(m.payload).toString().split(":")[1]));
      assert.deepEqual(mine, [...mine].sort((a, b) => a - b), `sender ${i}'s messages stay in send order`);
    }
  });

  it("gives the same receipt for a message sent to a device and an identity, first and on a resend", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const sender = { deviceId: alice.deviceId, identityId: alice.identityId };
    const msg = (id: string, payload: string) => ({
      messageId: id,
      recipients: [{ kind: "identity" as const, id: bob.identityId }, { kind: "device" as const, id: bob.deviceId }],
      payload: Buffer.from(payload),
      contentType: "text/plain",
    });
    const [first] = await relay.service.store.sendMany(
      [{ sender, messages: [msg("m-1", "one"), msg("m-2", "two")] }, { sender, messages: [msg("m-3", "three")] }],
      DEFAULT_RELAY_OPTIONS.limits,
      Date.now(),
    );
    assert.ok(!(first instanceof Error));
    assert.deepEqual(first!.map((o) => o.queued.map((q) => [q.queue.kind, q.seq])), [[["identity", 1], ["device", 1]], [["identity", 2], ["device", 2]]]);
    const [again] = await relay.service.store.sendMany([{ sender, messages: [msg("m-2", "two"), msg("m-1", "one")] }], DEFAULT_RELAY_OPTIONS.limits, Date.now());
    assert.ok(!(again instanceof Error));
    assert.deepEqual(again, [first![1]!, first![0]!].map((o) => ({ ...o, duplicate: true })), "the stored receipts equal the first answers");
    // Both queues hold each message, its own bytes sliced out of the group's payloads.
    for (const queue of [{ kind: "identity" as const, id: bob.identityId }, { kind: "device" as const, id: bob.deviceId }]) {
      const entries = await relay.service.store.readEntries(queue, 0, 10);
      assert.deepEqual(entries.map((e) => [e.seq, e.messageId, Buffer.from(e.payload).toString(), e.contentType, e.senderDevice]), [
        [1, "m-1", "one", "text/plain", alice.deviceId], [2, "m-2", "two", "text/plain", alice.deviceId], [3, "m-3", "three", "text/plain", alice.deviceId],
      ]);
    }
  });

  it("queues a message id sent by two concurrent groups once; the other group gets its receipt", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const sender = { deviceId: alice.deviceId, identityId: alice.identityId };
    const msg = { messageId: "c-1", recipients: [{ kind: "device" as const, id: bob.deviceId }], payload: Buffer.from("c"), contentType: "" };
    const results = await Promise.all(
      Array.from({ length: 6 }, () => relay.service.store.sendMany([{ sender, messages: [msg] }], DEFAULT_RELAY_OPTIONS.limits, Date.now())),
    );
    const outcomes = results.map(([r]) => {
      assert.ok(!(r instanceof Error));
      return r![0]!;
    });
    assert.equal(outcomes.filter((o) => !o.duplicate).length, 1, "one group queued it");
    for (const o of outcomes) assert.deepEqual(o.queued, [{ queue: { kind: "device", id: bob.deviceId }, seq: 1 }]);
    const got: InboxMessage[] = [];
    await h.client([relay.address], bob).inbox((m) => void got.push(m));
    assert.deepEqual(got.map((m) => m.messageId), ["c-1"]);
  });
});
