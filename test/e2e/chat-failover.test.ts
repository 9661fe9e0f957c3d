/**
 * Channel and lookup instances as separate processes (`parley channel`,
 * `parley lookup`) on the real Postgres and NATS. SIGKILL the instance a
 * client is on mid-conversation: the client asks lookup again, reconnects
 * to the survivor and receives every message it missed, once, in order.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ServerEvent } from "../../client/chat.js";
import type { ChatMessage } from "../../generated/parley/v1/chat.js";
import { ChatPool, FILE_SECRET, roomName } from "../support/chat.js";
import { Harness, NATS_URL } from "../support/harness.js";
import { startParley, type Proc } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

describe("channel instance killed mid-conversation", () => {
  const h = new Harness();
  let pool: ChatPool;
  const procs: Proc[] = [];
  const lookups: string[] = [];
  const env = { PARLEY_LOG_LEVEL: "info" };

  const channel = async (id: string) => {
    const p = startParley([
      "channel", "--instance-id", id, "--database-url", pool.chatDb, "--nats-url", NATS_URL,
      "--relay-public-key", Buffer.from(pool.key.publicKey).toString("base64"), "--file-token-secret", FILE_SECRET,
      "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0",
      "--load-report-interval", "200ms", "--presence-heartbeat", "200ms", "--presence-ttl", "1s",
    ], env);
    procs.push(p);
    await p.waitForOutput(/"msg":"channel ready"/, 30_000);
    return p;
  };

  before(async () => {
    pool = await ChatPool.create(h);
    for (let i = 0; i < 2; i++) {
      const p = startParley(["lookup", "--nats-url", NATS_URL, "--relay-public-key", Buffer.from(pool.key.publicKey).toString("base64"), "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--drop-after", "1s"], env);
      procs.push(p);
      lookups.push(`127.0.0.1:${(await p.waitForOutput(/"grpcPort":(\d+)/, 30_000))[1]}`);
    }
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.stop("SIGKILL").catch(() => undefined)));
    await h.cleanup();
  });

  it("reassigns the client through lookup; it gets everything missed with no gap or duplicate", async () => {
    const ch1 = await channel("e2e-ch-1");
    const alice = await pool.user("alice", { lookup: lookups });
    const bob = await pool.user("bob", { lookup: [...lookups].reverse() });
    const room = roomName("failover");
    await waitFor("a channel is assigned", () => alice.chat.assign().then(() => true, () => false), 10_000, 100);
    await alice.chat.createRoom(room);

    const aliceOn: string[] = [];
    const aliceLive = alice.chat.live({ onEvent: () => undefined, onConnected: (id) => aliceOn.push(id) });
    h.defer(() => aliceLive.close());
    await waitFor("alice connected", () => aliceOn.length === 1);
    assert.equal(aliceOn[0], "e2e-ch-1");
    // Bob lands on a second instance once it reports less load than the first.
    const ch2 = await channel("e2e-ch-2");
    await waitFor("ch-2 preferred", async () => (await bob.chat.assign()).instanceId === "e2e-ch-2", 10_000, 100);
    await bob.chat.join(room); // bob's first call: his client is assigned ch-2 from here

    const got: ChatMessage[] = [];
    const bobOn: string[] = [];
    const bobLive = bob.chat.live({
      onEvent: (e: ServerEvent) => void (e.event?.$case === "message" && got.push(e.event.value)),
      onConnected: (id) => bobOn.push(id),
    });
    h.defer(() => bobLive.close());
    bobLive.subscribe(room, 0);
    await waitFor("bob connected to ch-2", () => bobOn[0] === "e2e-ch-2");

    // Alice keeps talking while bob's instance is killed under him.
    let posted = 0;
    let talking = true;
    const talk = (async () => {
      while (talking) await alice.chat.post(room, `m${++posted}`);
    })();
    await waitFor("bob hears 10", () => got.length >= 10, 10_000);
    await ch2.stop("SIGKILL");
    await waitFor("bob reconnected to ch-1", () => bobOn.length >= 2 && bobOn.at(-1) === "e2e-ch-1", 15_000);
    const atReconnect = posted;
    await waitFor("10 more posts after the reconnect", () => posted >= atReconnect + 10, 10_000);
    talking = false;
    await talk;
    await waitFor(`bob has all ${posted}`, () => got.length >= posted, 10_000);
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: posted }, (_, i) => i + 1), "no gap, no duplicate, in order");
    assert.deepEqual(got.map((m) => m.text), Array.from({ length: posted }, (_, i) => `m${i + 1}`));
    void ch1;
  });
});
