/** Send, fetch and ack on real Postgres + NATS: device and identity queues, idempotency, stats. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { InboxMessage, RelayClient } from "../../client/relay.js";
import { adminClient } from "../support/admin.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

const text = (m: InboxMessage) => Buffer.from(m.payload).toString();

/** Reads the backlog once (no follow) and returns it, acking as it goes. */
async function drain(c: RelayClient, ack = true): Promise<InboxMessage[]> {
  const got: InboxMessage[] = [];
  await c.inbox((m) => void got.push(m), { ack });
  return got;
}

describe("relay queues", () => {
  const h = new Harness();
  let relay: RelayInstance;
  before(async () => {
    relay = await h.relay({ databaseUrl: await h.database("relayq"), bus: await h.nats(), key: newRelayKey() });
  });
  after(() => h.cleanup());

  it("delivers a device-targeted message in order and deletes it once acked", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("alice-laptop"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("bob-phone"));
    const a = h.client([relay.address], alice);
    for (let i = 0; i < 5; i++) await a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`m${i}`) });

    const b = h.client([relay.address], bob);
    const first = await drain(b, false);
    assert.deepEqual(first.map(text), ["m0", "m1", "m2", "m3", "m4"]);
    assert.deepEqual(first.map((m) => m.seq), [1, 2, 3, 4, 5]);
    assert.ok(first.every((m) => m.senderDeviceId === alice.deviceId && m.senderIdentityId === alice.identityId && m.queue === "device"));

    // Unacked: a fresh client sees the same backlog again.
    const again = await drain(h.client([relay.address], bob));
    assert.deepEqual(again.map(text), ["m0", "m1", "m2", "m3", "m4"]);
    // Acked by the previous drain: gone for good.
    assert.deepEqual(await drain(h.client([relay.address], bob)), []);
    const stats = await adminClient(h, relay.address).stats(1000);
    assert.equal(stats.top.find((q) => q.queue?.target?.value === bob.deviceId), undefined);
  });

  it("acknowledges a live message promptly while following, without waiting for more to arrive", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const ctl = new AbortController();
    const got: string[] = [];
    const inbox = h.client([relay.address], bob).inbox((m) => void got.push(text(m)), { follow: true, signal: ctl.signal });
    await h.client([relay.address], alice).send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("just one") });
    await waitFor("delivery", () => got.length === 1);
    const admin = adminClient(h, relay.address);
    await waitFor("the single live message acked (its queue empty)", async () => !(await admin.stats(1000)).top.some((q) => q.queue?.target?.value === bob.deviceId));
    ctl.abort();
    await inbox;
    assert.deepEqual(got, ["just one"]);
  });

  it("acknowledges a send only once committed and returns the same receipt for a resend", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    const messageId = unique("msg");
    const r1 = await a.send({ messageId, to: [{ deviceId: bob.deviceId }], payload: Buffer.from("once") });
    const r2 = await a.send({ messageId, to: [{ deviceId: bob.deviceId }], payload: Buffer.from("once") });
    assert.equal(r1.duplicate, false);
    assert.equal(r2.duplicate, true);
    assert.deepEqual(r2.queued, r1.queued);
    assert.equal(r2.acceptedAtMs, r1.acceptedAtMs);
    const got = await drain(h.client([relay.address], bob));
    assert.deepEqual(got.map(text), ["once"]);
  });

  it("stores message ids and content types with quotes, backslashes, commas and braces exactly as sent", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    // Each of these is quoted or escaped in a SQL array literal; "NULL" unquoted would be a null.
    const sent = [
      { messageId: 'q"uote', contentType: 'text/plain; charset="utf-8"' },
      { messageId: "back\\slash", contentType: "a\\b" },
      { messageId: "NULL", contentType: "{braces},commas" },
      { messageId: unique("plain"), contentType: "" },
    ];
    await a.sendBatch(sent.map((s, i) => ({ ...s, to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`p${i}`) })));
    const again = await a.sendBatch(sent.map((s, i) => ({ ...s, to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`p${i}`) })));
    assert.deepEqual(again.map((r) => [r.messageId, r.duplicate]), sent.map((s) => [s.messageId, true]));
    const got = await drain(h.client([relay.address], bob));
    assert.deepEqual(got.map((m) => [m.messageId, m.contentType, text(m)]), sent.map((s, i) => [s.messageId, s.contentType, `p${i}`]));
  });

  it("sends a batch atomically: one failing recipient queues nothing", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    const receipts = await a.sendBatch(Array.from({ length: 50 }, (_, i) => ({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`b${i}`) })));
    assert.equal(receipts.length, 50);
    await assert.rejects(
      a.sendBatch([
        { to: [{ deviceId: bob.deviceId }], payload: Buffer.from("x") },
        { to: [{ deviceId: unique("ghost") }], payload: Buffer.from("y") },
      ]),
      /unknown device/,
    );
    const got = await drain(h.client([relay.address], bob));
    assert.deepEqual(got.map(text), Array.from({ length: 50 }, (_, i) => `b${i}`));
  });

  it("delivers identity messages to every device, including one registered after the send, and deletes them when all have acked", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("bob-desk"));
    const a = h.client([relay.address], alice);
    await a.send({ to: [{ identityId: bob.identityId }], payload: Buffer.from("invite") });
    // Registered after the send, while the message is still queued.
    const phone = await h.addDevice([relay.address], bob.identityId, bob.identityKeys, unique("bob-phone"));

    const desk = await drain(h.client([relay.address], bob));
    assert.deepEqual(desk.map((m) => [m.queue, text(m)]), [["identity", "invite"]]);
    // The desk acked, but the phone has not: the message stays queued for it.
    assert.deepEqual(await drain(h.client([relay.address], bob)), []);
    const onPhone = await drain(h.client([relay.address], phone));
    assert.deepEqual(onPhone.map(text), ["invite"]);
    // Every device has acked: the entry is deleted, so a device added now finds nothing.
    const tablet = await h.addDevice([relay.address], bob.identityId, bob.identityKeys, unique("bob-tablet"));
    assert.deepEqual(await drain(h.client([relay.address], tablet)), []);
    const stats = await adminClient(h, relay.address).stats(1000);
    assert.equal(stats.top.find((q) => q.queue?.target?.value === bob.identityId), undefined);
  });

  it("reports per-queue depth, bytes and oldest age in stats", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    const admin = adminClient(h, relay.address);
    const before = await admin.stats();
    await a.sendBatch(Array.from({ length: 7 }, () => ({ to: [{ deviceId: bob.deviceId }], payload: Buffer.alloc(100) })));
    const stats = await admin.stats(1000);
    const q = stats.top.find((x) => x.queue?.target?.value === bob.deviceId);
    assert.equal(q?.depth, 7);
    assert.equal(q?.bytes, 700);
    assert.ok(q!.oldestAgeSeconds >= 0 && q!.oldestAgeSeconds < 60);
    assert.equal(stats.depth, before.depth + 7);
    assert.equal(stats.bytes, before.bytes + 700);
    assert.ok(stats.devices >= before.devices);
    await drain(h.client([relay.address], bob));
    await waitFor("queue emptied in stats", async () => ((await admin.stats()).depth === before.depth ? true : undefined));
  });
});
