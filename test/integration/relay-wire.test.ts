/** The relay's batch forms on the wire, seen by a raw gRPC client: one signature per SendBatch answer, grouped Fetch events. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as pb from "../../generated/parley/v1/relay.js";
import { verifyBytes } from "../../services/common/crypto.js";
import { batchReceiptStatement, receiptStatement } from "../../services/common/receipts.js";
import { registry } from "../../services/common/metrics.js";
import { wakeSubject } from "../../services/relay/subjects.js";
import { QueueKind } from "../../generated/parley/v1/common.js";
import type { Bus } from "../../services/common/bus/types.js";
import type { InboxMessage, RelayClient } from "../../client/relay.js";
import { bearer, Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

describe("relay batch forms on the wire", () => {
  const h = new Harness();
  const key = newRelayKey();
  let relay: RelayInstance;
  let bus: Bus;
  let raw: pb.RelayClient;
  let alice: Awaited<ReturnType<Harness["identityWithDevice"]>>;
  let bob: Awaited<ReturnType<Harness["identityWithDevice"]>>;
  const tokens = new Map<string, string>();

  before(async () => {
    bus = await h.nats();
    relay = await h.relay({ databaseUrl: await h.database("relaywire"), bus, key });
    raw = new pb.RelayClient(relay.address, grpc.credentials.createInsecure());
    h.defer(() => raw.close());
    alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    for (const d of [alice, bob]) tokens.set(d.deviceId, (await h.client([relay.address], d).authenticate()).token);
  });
  after(() => h.cleanup());

  const md = (deviceId: string) => bearer(tokens.get(deviceId));
  const toBob = (text: string): pb.SendRequest => ({
    messageId: unique("m"),
    recipients: [{ target: { $case: "deviceId", value: bob.deviceId } }],
    payload: Buffer.from(text),
    contentType: "text/plain",
  });
  const sendBatch = (messages: pb.SendRequest[]) =>
    new Promise<pb.SendBatchResponse>((res, rej) => raw.sendBatch({ messages }, md(alice.deviceId), (e, r) => (e ? rej(e) : res(r))));
  /** Follows the client's inbox (until cleanup): what it receives, once the backlog is in. */
  const following = async (client: RelayClient): Promise<InboxMessage[]> => {
    const got: InboxMessage[] = [];
    const ctl = new AbortController();
    let caughtUp!: () => void;
    const backlogDone = new Promise<void>((r) => (caughtUp = r));
    const inbox = client.inbox((m) => void got.push(m), { follow: true, signal: ctl.signal, onBacklogComplete: () => caughtUp() });
    h.defer(async () => {
      ctl.abort();
      await inbox;
    });
    await backlogDone;
    return got;
  };
  const fetchAll = (batched: boolean) =>
    new Promise<pb.FetchEvent[]>((resolve, reject) => {
      const events: pb.FetchEvent[] = [];
      const s = raw.fetch({ follow: false, deviceAfterSeq: 0, identityAfterSeq: 0, batched }, md(bob.deviceId));
      s.on("data", (e: pb.FetchEvent) => events.push(e));
      s.on("end", () => resolve(events));
      s.on("error", reject);
    });

  it("signs a SendBatch answer once, over every receipt in order; a Send answer carries its own signature", async () => {
    const messages = ["one", "two", "three"].map(toBob);
    const res = await sendBatch(messages);
    assert.deepEqual(res.receipts.map((r) => r.messageId), messages.map((m) => m.messageId));
    assert.ok(res.receipts.every((r) => r.relaySignature === undefined), "receipts inside a batch are not signed one by one");
    const sig = res.relaySignature!;
    const expected = batchReceiptStatement(alice.deviceId, res.receipts);
    assert.deepEqual(Buffer.from(sig.body), Buffer.from(expected));
    assert.ok(verifyBytes(key.publicKey, expected, sig.signature), "the relay's key verifies the batch signature");
    assert.ok(!verifyBytes(key.publicKey, batchReceiptStatement(alice.deviceId, res.receipts.slice(0, 2)), sig.signature));
    assert.ok(!verifyBytes(newRelayKey().publicKey, expected, sig.signature), "another relay's key does not");

    const single = await new Promise<pb.SendReceipt>((res, rej) => raw.send(toBob("four"), md(alice.deviceId), (e, r) => (e ? rej(e) : res(r))));
    assert.ok(verifyBytes(key.publicKey, receiptStatement(alice.deviceId, single), single.relaySignature!.signature));
  });

  it("sends what one read finds as one event to a client that asks for batches, and one event per message otherwise", async () => {
    const singles = await fetchAll(false);
    const batched = await fetchAll(true);
    const texts = ["one", "two", "three", "four"];
    assert.deepEqual(singles.map((e) => e.event?.$case), [...texts.map(() => "message"), "backlogComplete"]);
    assert.deepEqual(batched.map((e) => e.event?.$case), ["messages", "backlogComplete"]);
    const inSingles = singles.flatMap((e) => (e.event?.$case === "message" ? [e.event.value] : []));
    const inBatch = batched[0]!.event?.$case === "messages" ? batched[0]!.event.value.messages : [];
    assert.deepEqual(inBatch.map((m) => Buffer.from(m.payload).toString()), texts);
    assert.deepEqual(inBatch, inSingles, "the same messages, sequences and senders either way");
    assert.deepEqual(inBatch.map((m) => m.seq), [1, 2, 3, 4]);
  });

  it("sends live messages from the entries their wake-ups carry; a wake-up with a forged body only makes the stream read Postgres", async () => {
    const reads = async (source: string) => {
      const m = await registry.getSingleMetric("parley_relay_delivery_reads_total")!.get();
      return m.values.filter((v) => v.labels.source === source).reduce((sum, v) => sum + v.value, 0);
    };
    const carol = await h.identityWithDevice([relay.address], unique("carol"), unique("c-dev"));
    const got = await following(h.client([relay.address], carol));
    const a = h.client([relay.address], alice);
    const [fromPg, fromWake] = [await reads("postgres"), await reads("wake-up")];
    for (const text of ["live-1", "live-2", "live-3"]) await a.send({ to: [{ deviceId: carol.deviceId }], payload: Buffer.from(text) });
    await waitFor("three live messages", () => got.length === 3);
    assert.deepEqual(got.map((m) => [m.seq, Buffer.from(m.payload).toString()]), [[1, "live-1"], [2, "live-2"], [3, "live-3"]]);
    // Wake-ups that arrive while the stream is writing are sent together: at least one run.
    assert.ok((await reads("wake-up")) - fromWake >= 1, "they came with their wake-ups");
    assert.equal((await reads("postgres")) - fromPg, 0, "none was read back from Postgres");

    // Anyone on the bus can publish on the wake subject; without the relay's
    // seal the body is ignored: the stream reads Postgres, which has nothing new.
    const forged = pb.QueuedMessages.encode({
      messages: [{ queue: QueueKind.QUEUE_KIND_DEVICE, seq: 4, messageId: "forged", senderDeviceId: alice.deviceId, senderIdentityId: alice.identityId, payload: Buffer.from("forged"), contentType: "", enqueuedAtMs: Date.now() }],
    }).finish();
    const pgBeforeForgery = await reads("postgres");
    bus.publish(wakeSubject("relay-test", { kind: "device", id: carol.deviceId }), Buffer.concat([Buffer.alloc(32), forged]));
    await waitFor("the stream to read Postgres after the forged wake-up", async () => (await reads("postgres")) > pgBeforeForgery);
    await a.send({ to: [{ deviceId: carol.deviceId }], payload: Buffer.from("live-4") });
    await waitFor("the fourth message", () => got.length >= 4);
    assert.deepEqual(got.map((m) => Buffer.from(m.payload).toString()), ["live-1", "live-2", "live-3", "live-4"]);
    assert.equal(got[3]!.seq, 4);
  });

  it("holds entries past a lost wake-up briefly, then reads Postgres: nothing lost or reordered", async () => {
    // The relay's own bus, losing the next wake-up on one subject (as across a NATS reconnect).
    let lose: string | undefined;
    const lossy = new Proxy(bus, {
      get: (target, prop, receiver) =>
        prop === "publish"
          ? (subject: string, ...rest: unknown[]) => {
              if (subject === lose) return void (lose = undefined);
              return (target.publish as (...a: unknown[]) => unknown)(subject, ...rest);
            }
          : Reflect.get(target, prop, receiver),
    });
    const gapRelay = await h.relay({ databaseUrl: await h.database("relaywiregap"), bus: lossy, key, options: { relayId: "relay-gap" } });
    const [sender, dave] = [await h.identityWithDevice([gapRelay.address], unique("s"), unique("s-dev")), await h.identityWithDevice([gapRelay.address], unique("dave"), unique("d-dev"))];
    const got = await following(h.client([gapRelay.address], dave));
    const s = h.client([gapRelay.address], sender);
    lose = wakeSubject("relay-gap", { kind: "device", id: dave.deviceId });
    await s.send({ to: [{ deviceId: dave.deviceId }], payload: Buffer.from("lost wake-up") });
    assert.equal(lose, undefined, "the first message's wake-up was lost");
    await s.send({ to: [{ deviceId: dave.deviceId }], payload: Buffer.from("after the gap") });
    await waitFor("both messages", () => got.length >= 2);
    assert.deepEqual(got.map((m) => [m.seq, Buffer.from(m.payload).toString()]), [[1, "lost wake-up"], [2, "after the gap"]]);
  });
});
