/** Bad input gets a precise status and changes nothing. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as pb from "../../generated/parley/v1/relay.js";
import { ManualClock, MINUTE } from "../../services/common/clock.js";
import { generateKeyPair, signBytes, Statements } from "../../services/common/crypto.js";
import { TokenIssuer } from "../../services/common/tokens.js";
import { adminClient } from "../support/admin.js";
import { bearer, Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";

type Call<T> = (c: pb.RelayClient, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: T) => void) => void;

describe("relay bad input", () => {
  const h = new Harness();
  const clock = new ManualClock(Date.now());
  const key = newRelayKey();
  let relay: RelayInstance;
  let raw: pb.RelayClient;
  let alice: Awaited<ReturnType<Harness["identityWithDevice"]>>;
  let bob: Awaited<ReturnType<Harness["identityWithDevice"]>>;
  let token: string;

  before(async () => {
    relay = await h.relay({
      databaseUrl: await h.database("relaybad"),
      bus: await h.nats(),
      key,
      clock,
      options: { limits: { maxMessageBytes: 1024, maxQueueMessages: 3, maxQueueBytes: 1 << 20, maxBatchMessages: 10, maxRecipients: 5 } },
    });
    raw = new pb.RelayClient(relay.address, grpc.credentials.createInsecure());
    h.defer(() => raw.close());
    alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    token = (await h.client([relay.address], alice).authenticate()).token;
  });
  after(() => h.cleanup());

  const md = (t = token) => bearer(t);
  const call = <T>(fn: Call<T>, meta = md()) => new Promise<T>((res, rej) => fn(raw, meta, (e, r) => (e ? rej(e) : res(r))));
  const rejects = (p: Promise<unknown>, code: grpc.status, re: RegExp) =>
    assert.rejects(p, (e: grpc.ServiceError) => {
      assert.equal(grpc.status[e.code], grpc.status[code], e.details);
      assert.match(e.details, re);
      return true;
    });
  const depth = async () => (await adminClient(h, relay.address).stats()).depth;
  const to = (deviceId: string) => [{ target: { $case: "deviceId" as const, value: deviceId } }];
  const send = (req: Partial<pb.SendRequest>, meta = md()) =>
    call<pb.SendReceipt>((c, m, cb) => c.send({ messageId: unique("m"), recipients: to(bob.deviceId), payload: Buffer.from("x"), contentType: "", ...req }, m, cb), meta);

  it("refuses malformed fields with INVALID_ARGUMENT naming the field", async () => {
    const before = await depth();
    await rejects(send({ messageId: "" }), grpc.status.INVALID_ARGUMENT, /message_id/);
    await rejects(send({ messageId: "has space" }), grpc.status.INVALID_ARGUMENT, /message_id/);
    await rejects(send({ recipients: [] }), grpc.status.INVALID_ARGUMENT, /no recipients/);
    await rejects(send({ recipients: [{ target: undefined }] }), grpc.status.INVALID_ARGUMENT, /recipients\[0\] must name/);
    await rejects(send({ recipients: to("../etc") }), grpc.status.INVALID_ARGUMENT, /device_id '..\/etc' is not a valid id/);
    await rejects(send({ recipients: Array.from({ length: 6 }, (_, i) => to(`d${i}`)[0]!) }), grpc.status.INVALID_ARGUMENT, /at most 5/);
    await rejects(
      call((c, m, cb) => c.registerIdentity({ identityId: "x", publicKey: Buffer.alloc(31), signature: Buffer.alloc(64) }, m, cb)),
      grpc.status.INVALID_ARGUMENT,
      /public_key must be 32 bytes, got 31/,
    );
    await rejects(call((c, m, cb) => c.getChallenge({ deviceId: alice.deviceId, clientNonce: Buffer.alloc(3) }, m, cb)), grpc.status.INVALID_ARGUMENT, /client_nonce/);
    await rejects(call((c, m, cb) => c.ack({ deviceSeq: 0, identitySeq: 0 }, m, cb)), grpc.status.INVALID_ARGUMENT, /names no sequence/);
    await rejects(call((c, m, cb) => c.sendBatch({ messages: [] }, m, cb)), grpc.status.INVALID_ARGUMENT, /empty/);
    assert.equal(await depth(), before);
  });

  it("refuses bytes that are not a protobuf message with INVALID_ARGUMENT", async () => {
    const before = await depth();
    const Generic = grpc.makeGenericClientConstructor({
      send: { ...pb.RelayService.send, requestSerialize: (b: Buffer) => b },
    }, "parley.v1.Relay");
    const generic = new Generic(relay.address, grpc.credentials.createInsecure()) as unknown as {
      send(b: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void): void;
      close(): void;
    };
    h.defer(() => generic.close());
    // Field 3 (payload) declared length-delimited with a length running past the end.
    const garbage = Buffer.from([0x1a, 0xff, 0x01, 0x00]);
    await rejects(new Promise((res, rej) => generic.send(garbage, md(), (e) => (e ? rej(e) : res(undefined)))), grpc.status.INVALID_ARGUMENT, /not a valid relay.send message/);
    assert.equal(await depth(), before);
  });

  it("refuses an oversized message with INVALID_ARGUMENT and a full queue with RESOURCE_EXHAUSTED", async () => {
    const carol = await h.identityWithDevice([relay.address], unique("carol"), unique("c-dev"));
    const before = await depth();
    await rejects(send({ recipients: to(carol.deviceId), payload: Buffer.alloc(1025) }), grpc.status.INVALID_ARGUMENT, /1025 bytes; this relay accepts at most 1024/);
    for (let i = 0; i < 3; i++) await send({ recipients: to(carol.deviceId) });
    await rejects(send({ recipients: to(carol.deviceId) }), grpc.status.RESOURCE_EXHAUSTED, /queue '.*' is full/);
    assert.equal(await depth(), before + 3);
  });

  it("refuses unknown devices and identities with NOT_FOUND", async () => {
    const before = await depth();
    await rejects(send({ recipients: to("nobody-here") }), grpc.status.NOT_FOUND, /unknown device 'nobody-here'/);
    await rejects(send({ recipients: [{ target: { $case: "identityId", value: "no-one" } }] }), grpc.status.NOT_FOUND, /unknown identity 'no-one'/);
    await rejects(call((c, m, cb) => c.lookupIdentity({ identityId: "no-one" }, m, cb)), grpc.status.NOT_FOUND, /unknown identity/);
    assert.equal(await depth(), before);
  });

  it("refuses missing, forged and expired tokens with UNAUTHENTICATED", async () => {
    const before = await depth();
    await rejects(send({}, md("")), grpc.status.UNAUTHENTICATED, /missing session token/);
    await rejects(send({}, md("pt1.abc.def")), grpc.status.UNAUTHENTICATED, /signature is not valid/);
    await rejects(send({}, md("garbage")), grpc.status.UNAUTHENTICATED, /malformed/);
    // Signed by another relay's key: not this relay's token.
    const forged = new TokenIssuer("relay-test", newRelayKey().privateKeyPem, clock, MINUTE).issue(alice.deviceId, alice.identityId).token;
    await rejects(send({}, md(forged)), grpc.status.UNAUTHENTICATED, /signature is not valid/);
    // A real token with its claims edited keeps the old signature.
    const [p, claims, sig] = token.split(".");
    const edited = JSON.parse(Buffer.from(claims!, "base64url").toString());
    edited.sub = bob.deviceId;
    await rejects(send({}, md(`${p}.${Buffer.from(JSON.stringify(edited)).toString("base64url")}.${sig}`)), grpc.status.UNAUTHENTICATED, /signature is not valid/);
    const expiring = new TokenIssuer("relay-test", key.privateKeyPem, clock, MINUTE).issue(alice.deviceId, alice.identityId).token;
    clock.advance(2 * MINUTE);
    await rejects(send({}, md(expiring)), grpc.status.UNAUTHENTICATED, /expired/);
    assert.equal(await depth(), before);
  });

  it("refuses to authenticate a device with another device's key or a replayed challenge", async () => {
    const nonce = Buffer.alloc(16, 1);
    const ch = await call<pb.Challenge>((c, m, cb) => c.getChallenge({ deviceId: bob.deviceId, clientNonce: nonce }, m, cb), md(""));
    // Alice's device key signs a challenge issued for Bob's device.
    const wrong = signBytes(alice.privateKeyPem, Statements.authenticate(bob.deviceId, ch.challenge));
    await rejects(call((c, m, cb) => c.authenticate({ deviceId: bob.deviceId, challenge: ch.challenge, signature: wrong }, m, cb), md("")), grpc.status.UNAUTHENTICATED, /does not match the device key/);
    // A challenge for Bob's device cannot be used for Alice's.
    const forAlice = signBytes(alice.privateKeyPem, Statements.authenticate(alice.deviceId, ch.challenge));
    await rejects(call((c, m, cb) => c.authenticate({ deviceId: alice.deviceId, challenge: ch.challenge, signature: forAlice }, m, cb), md("")), grpc.status.UNAUTHENTICATED, /not issued by this relay for this device/);
    const good = signBytes(bob.privateKeyPem, Statements.authenticate(bob.deviceId, ch.challenge));
    await call((c, m, cb) => c.authenticate({ deviceId: bob.deviceId, challenge: ch.challenge, signature: good }, m, cb), md(""));
    await rejects(call((c, m, cb) => c.authenticate({ deviceId: bob.deviceId, challenge: ch.challenge, signature: good }, m, cb), md("")), grpc.status.UNAUTHENTICATED, /already used/);
  });

  it("refuses a device signed by another identity and a key swap on an existing id", async () => {
    const mallory = generateKeyPair();
    const dev = generateKeyPair();
    const sig = signBytes(mallory.privateKeyPem, Statements.registerDevice(alice.identityId, "evil-dev", dev.publicKey));
    await rejects(call((c, m, cb) => c.registerDevice({ deviceId: "evil-dev", identityId: alice.identityId, publicKey: dev.publicKey, identitySignature: sig }, m, cb), md("")), grpc.status.UNAUTHENTICATED, /not signed by identity/);
    const info = await call<pb.IdentityInfo>((c, m, cb) => c.lookupIdentity({ identityId: alice.identityId }, m, cb));
    assert.deepEqual(info.devices.map((d) => d.deviceId), [alice.deviceId]);
    const selfSig = signBytes(mallory.privateKeyPem, Statements.registerIdentity(alice.identityId, mallory.publicKey));
    await rejects(call((c, m, cb) => c.registerIdentity({ identityId: alice.identityId, publicKey: mallory.publicKey, signature: selfSig }, m, cb), md("")), grpc.status.ALREADY_EXISTS, /another key/);
  });

  it("lets a device read and ack only its own queue", async () => {
    await send({ messageId: unique("for-bob") });
    const before = await depth();
    // Alice's token fetches Alice's queue, whatever she asks: Bob's message is not there.
    const events: pb.FetchEvent[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = raw.fetch({ follow: false, deviceAfterSeq: 0, identityAfterSeq: 0, batched: false }, md());
      s.on("data", (e: pb.FetchEvent) => events.push(e));
      s.on("end", resolve);
      s.on("error", reject);
    });
    assert.deepEqual(events.map((e) => e.event?.$case), ["backlogComplete"]);
    // Acking past her own queue's end is out of range and deletes nothing of Bob's.
    await rejects(call((c, m, cb) => c.ack({ deviceSeq: 1, identitySeq: 0 }, m, cb)), grpc.status.OUT_OF_RANGE, /past the last sequence 0/);
    assert.equal(await depth(), before);
  });

  it("keeps the admin API behind the admin token", async () => {
    const wrong = adminClient(h, relay.address, "not-the-token");
    await assert.rejects(wrong.stats(), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED && /admin token required/.test(e.details));
    await assert.rejects(adminClient(h, relay.address).stats(5000), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
  });

  it("lets the client detect a relay that is not the one it pinned", async () => {
    const impostorKey = newRelayKey().publicKey;
    const c = h.client([relay.address], alice, impostorKey);
    await assert.rejects(c.authenticate(), /different from the pinned one/);
  });
});
