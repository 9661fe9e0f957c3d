/** Two relay instances on one Postgres + NATS: live wake-up across instances and resume after a lost instance. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { InboxMessage } from "../../client/relay.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { waitFor, withTimeout } from "../support/wait.js";

describe("relay instances on one database", () => {
  const h = new Harness();
  let a: RelayInstance;
  let b: RelayInstance;
  let databaseUrl: string;
  const key = newRelayKey();
  before(async () => {
    databaseUrl = await h.database("relayab");
    a = await h.relay({ databaseUrl, bus: await h.nats(), key });
    b = await h.relay({ databaseUrl, bus: await h.nats(), key });
  });
  after(() => h.cleanup());

  it("pushes a message sent through A to a recipient streaming from B as soon as it commits", async () => {
    const alice = await h.identityWithDevice([a.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([a.address], unique("bob"), unique("b-dev"));
    const sender = h.client([a.address], alice);
    const receiver = h.client([b.address], bob);
    const ctl = new AbortController();
    const got: InboxMessage[] = [];
    let caughtUp!: () => void;
    const ready = new Promise<void>((r) => (caughtUp = r));
    const inbox = receiver.inbox((m) => void got.push(m), { follow: true, signal: ctl.signal, onBacklogComplete: () => caughtUp() });
    await withTimeout("backlog complete", ready);
    for (let i = 0; i < 20; i++) {
      await sender.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`live ${i}`) });
      // Each one arrives by push before the next is sent: no batching by a poll interval.
      await waitFor(`live message ${i} on B`, () => got.length === i + 1, 5000, 1);
    }
    ctl.abort();
    await inbox;
    assert.deepEqual(got.map((m) => Buffer.from(m.payload).toString()), Array.from({ length: 20 }, (_, i) => `live ${i}`));
  });

  it("resumes on the other instance after its instance goes away, with nothing lost or reordered", async () => {
    // A third instance the receiver starts on, which we then take away.
    const doomed = await h.relay({ databaseUrl, bus: await h.nats(), key });
    const alice = await h.identityWithDevice([a.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([a.address], unique("bob"), unique("b-dev"));
    const sender = h.client([a.address], alice);
    const receiver = h.client([doomed.address, b.address], bob);
    const ctl = new AbortController();
    const got: string[] = [];
    let reconnects = 0;
    const inbox = receiver.inbox((m) => void got.push(Buffer.from(m.payload).toString()), {
      follow: true,
      signal: ctl.signal,
      onReconnect: () => reconnects++,
    });
    const total = 300;
    const sending = (async () => {
      for (let i = 0; i < total; i += 10) {
        await sender.sendBatch(Array.from({ length: 10 }, (_, j) => ({ messageId: `m-${i + j}`, to: [{ deviceId: bob.deviceId }], payload: Buffer.from(String(i + j)) })));
      }
    })();
    await waitFor("some deliveries before the instance stops", () => got.length >= 50, 10_000, 1);
    await doomed.stop();
    await sending;
    await waitFor("every message after the failover", () => got.length >= total, 20_000);
    ctl.abort();
    await inbox;
    assert.ok(reconnects >= 1, "the inbox reconnected");
    assert.deepEqual(got, Array.from({ length: total }, (_, i) => String(i)));
  });
});
