/** SendStream (publish with confirms): per-message settlement in write order, one signature per answer, refusals that leave the stream open, failover. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as pb from "../../generated/parley/v1/relay.js";
import { verifyBytes } from "../../services/common/crypto.js";
import { batchReceiptStatement } from "../../services/common/receipts.js";
import type { Bus } from "../../services/common/bus/types.js";
import type { InboxMessage, RelayClient } from "../../client/relay.js";
import { ParleyClientError } from "../../client/errors.js";
import { adminClient } from "../support/admin.js";
import { startGrpcServer, type BoundService } from "../../services/common/grpc.js";
import { bearer, Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";

const LIMITS = { maxMessageBytes: 1024, maxQueueMessages: 10_000, maxQueueBytes: 64 << 20, maxBatchMessages: 1000, maxRecipients: 5 };

describe("relay SendStream", () => {
  const h = new Harness();
  const key = newRelayKey();
  let a: RelayInstance;
  let b: RelayInstance;
  let bus: Bus;
  let raw: pb.RelayClient;
  let alice: Awaited<ReturnType<Harness["identityWithDevice"]>>;
  let bob: Awaited<ReturnType<Harness["identityWithDevice"]>>;
  let aliceToken: string;

  before(async () => {
    bus = await h.nats();
    const databaseUrl = await h.database("relaysendstream");
    a = await h.relay({ databaseUrl, bus, key, options: { limits: LIMITS } });
    b = await h.relay({ databaseUrl, bus, key, options: { limits: LIMITS } });
    raw = new pb.RelayClient(a.address, grpc.credentials.createInsecure());
    h.defer(() => raw.close());
    alice = await h.identityWithDevice([a.address], unique("alice"), unique("a-dev"));
    bob = await h.identityWithDevice([a.address], unique("bob"), unique("b-dev"));
    aliceToken = (await h.client([a.address], alice).authenticate()).token;
  });
  after(() => h.cleanup());

  const md = (token = aliceToken) => bearer(token);
  const toDevice = (deviceId: string, text: string, messageId = unique("m")): pb.SendRequest => ({
    messageId,
    recipients: [{ target: { $case: "deviceId", value: deviceId } }],
    payload: Buffer.from(text),
    contentType: "text/plain",
  });

  /** Writes the stream messages on a raw call, ends it, and collects the answers and the final status. */
  const answers = <T>(call: grpc.ClientDuplexStream<T, pb.SendStreamAck>, writes: T[]) =>
    new Promise<{ acks: pb.SendStreamAck[]; status: grpc.StatusObject }>((resolve, reject) => {
      const acks: pb.SendStreamAck[] = [];
      let failed: grpc.ServiceError | undefined;
      call.on("data", (ack: pb.SendStreamAck) => acks.push(ack));
      call.on("error", (e: grpc.ServiceError) => (failed = e));
      call.on("status", (status: grpc.StatusObject) => resolve({ acks, status: failed ?? status }));
      for (const w of writes) call.write(w);
      call.end();
      setTimeout(() => reject(new Error("no status within 10 s")), 10_000).unref();
    });

  /** One raw SendStream of the requests. */
  const rawStream = (requests: pb.SendRequest[], meta = md()) => answers(raw.sendStream(meta), requests);

  /** One raw SendStreamBatches, each frame one stream message; a Buffer goes out as it is (a frame that does not decode). */
  const rawBatches = (frames: Array<pb.SendRequest[] | Buffer>, meta = md()) => {
    const client = new (grpc.makeGenericClientConstructor(
      { ...pb.RelayService, sendStreamBatches: { ...pb.RelayService.sendStreamBatches, requestSerialize: (v: pb.SendBatchRequest | Buffer) => (Buffer.isBuffer(v) ? v : Buffer.from(pb.SendBatchRequest.encode(v).finish())) } },
      "parley.v1.Relay",
    ))(a.address, grpc.credentials.createInsecure()) as unknown as pb.RelayClient;
    h.defer(() => client.close());
    return answers(client.sendStreamBatches(meta), frames.map((f) => (Buffer.isBuffer(f) ? f : { messages: f }) as pb.SendBatchRequest));
  };

  /** Everything queued for bob, in queue order, acked as read. */
  const drainBob = async (): Promise<InboxMessage[]> => {
    const got: InboxMessage[] = [];
    await h.client([a.address], bob).inbox((m) => void got.push(m), { follow: false });
    return got;
  };

  it("settles every message in the order written, signs each answer once over its receipts, and queues them in that order", async () => {
    const requests = Array.from({ length: 64 }, (_, i) => toDevice(bob.deviceId, `m${i}`));
    const { acks, status } = await rawStream(requests);
    assert.equal(status.code, grpc.status.OK, status.details);
    let position = 0;
    for (const ack of acks) {
      assert.equal(ack.first, position, "each answer starts where the last one ended");
      position += ack.results.length;
      const receipts = ack.results.map((r) => (r.result?.$case === "receipt" ? r.result.value : assert.fail("refused")));
      const statement = batchReceiptStatement(alice.deviceId, receipts);
      assert.deepEqual(Buffer.from(ack.relaySignature!.body), Buffer.from(statement));
      assert.ok(verifyBytes(key.publicKey, statement, ack.relaySignature!.signature), "the relay key verifies the answer");
    }
    assert.equal(position, requests.length);
    assert.ok(acks.length < requests.length, `answers cover several messages each (${acks.length} answers for ${requests.length} messages)`);
    const receipts = acks.flatMap((ack) => ack.results.map((r) => r.result!.value as pb.SendReceipt));
    assert.deepEqual(receipts.map((r) => r.messageId), requests.map((r) => r.messageId));
    const got = await drainBob();
    assert.deepEqual(got.map((m) => m.messageId), requests.map((r) => r.messageId), "queued in the order written");
  });

  it("refuses a bad message with its own status at its position, queues nothing for it, and goes on", async () => {
    const depthBefore = (await adminClient(h, a.address).stats()).depth;
    const good1 = toDevice(bob.deviceId, "before");
    const oversized = { ...toDevice(bob.deviceId, ""), payload: Buffer.alloc(LIMITS.maxMessageBytes + 1) };
    const unknown = toDevice(unique("nobody"), "lost");
    const badId = toDevice(bob.deviceId, "bad id", "has space");
    const good2 = toDevice(bob.deviceId, "after");
    const { acks, status } = await rawStream([good1, oversized, unknown, badId, good2]);
    assert.equal(status.code, grpc.status.OK, status.details);
    const results = acks.flatMap((ack) => ack.results);
    assert.deepEqual(results.map((r) => r.result?.$case), ["receipt", "refused", "refused", "refused", "receipt"]);
    const refusals = results.filter((r) => r.result?.$case === "refused").map((r) => r.result!.value as pb.SendRefusal);
    assert.deepEqual(refusals.map((r) => grpc.status[r.code]), ["INVALID_ARGUMENT", "NOT_FOUND", "INVALID_ARGUMENT"]);
    assert.match(refusals[0]!.message, /payload is 1025 bytes; this relay accepts at most 1024/);
    assert.match(refusals[1]!.message, /unknown device/);
    assert.match(refusals[2]!.message, /message_id/);
    assert.equal((await adminClient(h, a.address).stats()).depth, depthBefore + 2, "only the two good messages are queued");
    assert.deepEqual((await drainBob()).map((m) => m.messageId), [good1.messageId, good2.messageId]);
  });

  it("SendStreamBatches settles each message of a frame on its own, counting positions by message, as if written one by one", async () => {
    const info = await h.client([a.address]).info();
    assert.equal(info.sendStreamBatches, true);
    const frames = [
      [toDevice(bob.deviceId, "b1"), toDevice(bob.deviceId, "b2")],
      [toDevice(bob.deviceId, "b3"), toDevice(unique("nobody"), "lost"), { ...toDevice(bob.deviceId, ""), payload: Buffer.alloc(LIMITS.maxMessageBytes + 1) }, toDevice(bob.deviceId, "b4")],
      [],
      [toDevice(bob.deviceId, "b5")],
    ];
    const { acks, status } = await rawBatches(frames);
    assert.equal(status.code, grpc.status.OK, status.details);
    let position = 0;
    for (const ack of acks) {
      assert.equal(ack.first, position, "each answer starts where the last one ended");
      position += ack.results.length;
      const receipts = ack.results.flatMap((r) => (r.result?.$case === "receipt" ? [r.result.value] : []));
      if (receipts.length) assert.ok(verifyBytes(key.publicKey, batchReceiptStatement(alice.deviceId, receipts), ack.relaySignature!.signature));
    }
    const results = acks.flatMap((ack) => ack.results);
    assert.deepEqual(results.map((r) => (r.result?.$case === "refused" ? grpc.status[r.result.value.code] : r.result?.value.messageId)), [
      frames[0]![0]!.messageId, frames[0]![1]!.messageId, frames[1]![0]!.messageId, "NOT_FOUND", "INVALID_ARGUMENT", frames[1]![3]!.messageId, frames[3]![0]!.messageId,
    ]);
    assert.deepEqual((await drainBob()).map((m) => Buffer.from(m.payload).toString()), ["b1", "b2", "b3", "b4", "b5"]);
  });

  it("SendStreamBatches ends the stream with INVALID_ARGUMENT at a frame that does not decode, after answering what came before", async () => {
    const good = toDevice(bob.deviceId, "before the bad frame");
    const { acks, status } = await rawBatches([[good], Buffer.from([0x0a, 0x7f, 0x01])]);
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, /not a valid parley\.v1\.SendBatchRequest/);
    assert.deepEqual(acks.flatMap((a) => a.results.map((r) => r.result?.value && "messageId" in r.result.value ? r.result.value.messageId : "?")), [good.messageId]);
    assert.deepEqual((await drainBob()).map((m) => m.messageId), [good.messageId]);
  });

  it("SendStreamBatches refuses a frame of more messages than one batch may hold, naming the limit", async () => {
    const tooMany = Array.from({ length: LIMITS.maxBatchMessages + 1 }, (_, i) => toDevice(bob.deviceId, `x${i}`));
    const { status } = await rawBatches([tooMany]);
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, new RegExp(`holds ${LIMITS.maxBatchMessages + 1} messages; this relay takes at most ${LIMITS.maxBatchMessages}`));
    assert.deepEqual(await drainBob(), [], "nothing of it queued");
  });

  it("the SDK goes on as SendStream with an instance that answers SendStreamBatches with UNIMPLEMENTED (a rolling upgrade)", async () => {
    // The same relay behind a server that does not know the method.
    const without = (s: BoundService): BoundService => {
      const { sendStreamBatches: _d, ...definition } = s.definition;
      const { sendStreamBatches: _i, ...implementation } = s.implementation;
      return { definition, implementation };
    };
    const older = await startGrpcServer({ host: "127.0.0.1", port: 0, services: a.service.services.map(without) });
    h.defer(() => older.shutdown(1000));
    const out = h.client([`127.0.0.1:${older.port}`], alice, key.publicKey).sendStream();
    const ids = Array.from({ length: 30 }, () => unique("old"));
    const receipts = await Promise.all(ids.map((messageId) => out.send({ messageId, to: [{ deviceId: bob.deviceId }], payload: Buffer.from(messageId) })));
    await out.close();
    assert.deepEqual(receipts.map((r) => r.messageId), ids);
    assert.deepEqual((await drainBob()).map((m) => m.messageId), ids);
  });

  it("refuses a stream without a valid session with UNAUTHENTICATED", async () => {
    const { status } = await rawStream([toDevice(bob.deviceId, "x")], md("not-a-token"));
    assert.equal(grpc.status[status.code], "UNAUTHENTICATED");
    assert.equal((await adminClient(h, a.address).stats()).depth, 0);
  });

  it("answers a resend of accepted ids as duplicates and queues nothing new", async () => {
    const requests = [toDevice(bob.deviceId, "once"), toDevice(bob.deviceId, "twice")];
    await rawStream(requests);
    const { acks } = await rawStream(requests);
    const receipts = acks.flatMap((ack) => ack.results.map((r) => r.result!.value as pb.SendReceipt));
    assert.deepEqual(receipts.map((r) => r.duplicate), [true, true]);
    assert.equal((await drainBob()).length, 2);
  });

  it("resolves each SDK send with its verified receipt and rejects a refused one with the relay's status", async () => {
    const out = h.client([a.address], alice).sendStream();
    const sends = [
      out.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("sdk 1") }),
      out.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.alloc(LIMITS.maxMessageBytes + 1) }),
      out.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("sdk 2") }),
    ];
    const [r1, r2, r3] = await Promise.allSettled(sends);
    assert.equal(r1.status, "fulfilled");
    assert.equal(r3.status, "fulfilled");
    assert.equal(r2.status, "rejected");
    assert.ok(r2.reason instanceof ParleyClientError && r2.reason.codeName === "INVALID_ARGUMENT", String(r2.reason));
    await out.close();
    assert.deepEqual((await drainBob()).map((m) => Buffer.from(m.payload).toString()), ["sdk 1", "sdk 2"]);
  });

  it("takes a stream with more messages in flight than a relay holds unsettled: it reads on as they settle", async () => {
    const small = await h.relay({ databaseUrl: await h.database("relaysendstreamsmall"), bus, key, options: { limits: { ...LIMITS, maxBatchMessages: 3 } } });
    const [s, r] = [await h.identityWithDevice([small.address], unique("s"), unique("s-dev")), await h.identityWithDevice([small.address], unique("r"), unique("r-dev"))];
    const out = h.client([small.address], s).sendStream();
    const ids = Array.from({ length: 40 }, () => unique("m"));
    const receipts = await Promise.all(ids.map((messageId) => out.send({ messageId, to: [{ deviceId: r.deviceId }], payload: Buffer.from(messageId) })));
    await out.close();
    assert.deepEqual(receipts.map((x) => x.messageId), ids);
    const got: InboxMessage[] = [];
    await h.client([small.address], r).inbox((m) => void got.push(m), { follow: false });
    assert.deepEqual(got.map((m) => m.messageId), ids, "all queued, in the order written");
  });

  it("fails over when its relay shuts down mid-stream: every send resolves, nothing is lost or queued twice", async () => {
    const sender: RelayClient = h.client([a.address, b.address], alice);
    const out = sender.sendStream();
    const total = 600;
    const window = 32;
    const ids: string[] = [];
    let stopped: Promise<void> | undefined;
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < total; i++) {
      const id = unique("fo");
      ids.push(id);
      const p = out.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from(`fo ${i}`), messageId: id }).finally(() => inFlight.delete(p));
      inFlight.add(p);
      if (inFlight.size >= window) await Promise.race(inFlight);
      if (i === total / 3) stopped = a.stop();
    }
    await Promise.all(inFlight);
    await stopped;
    await out.close();
    const got: InboxMessage[] = [];
    await h.client([b.address], bob).inbox((m) => void got.push(m), { follow: false });
    assert.equal(new Set(got.map((m) => m.messageId)).size, got.length, "no message queued twice");
    assert.deepEqual(new Set(got.map((m) => m.messageId)), new Set(ids), "every message queued");
  });
});
