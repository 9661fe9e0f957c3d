/**
 * gRPC handlers of the relay: thin. They validate, call the store, sign
 * what the client should be able to check, and publish wake-ups after the
 * commit.
 */
import { randomBytes } from "node:crypto";
import type { ServerDuplexStream, ServerWritableStream } from "@grpc/grpc-js";
import type { Bus } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { signBytes, Statements, verifyBytes } from "../common/crypto.js";
import { batchReceiptStatement, receiptStatement } from "../common/receipts.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnauthenticatedError } from "../common/errors.js";
import type { CallContext } from "../common/grpc.js";
import type { TokenIssuer } from "../common/tokens.js";
import type { RelaySignature } from "../../generated/parley/v1/common.js";
import * as pb from "../../generated/parley/v1/relay.js";
import { FetchSession } from "./delivery.js";
import type { RelayKey } from "./keys.js";
import { sendSeries, type RelayMetrics } from "./metrics.js";
import type { SendGroups } from "./send-groups.js";
import { batchFrame, SendStreamSession } from "./send-stream.js";
import type { RelayStore } from "./store.js";
import { suspendedSubject } from "./subjects.js";
import type { WakeUpCodec } from "./wake-ups.js";
import type { Limits, OutgoingMessage, QueueRef, SendOutcome, Sender } from "./types.js";
import { checkBytes, checkId, toOutgoing, toOutgoingBatch, toQueueRef } from "./validate.js";

export interface RelayCore {
  relayId: string;
  key: RelayKey;
  store: RelayStore;
  /** Sends go through group commit. */
  sends: SendGroups;
  bus: Bus;
  clock: Clock;
  limits: Limits;
  retentionMs: number;
  challengeTtlMs: number;
  tokens: TokenIssuer;
  metrics: RelayMetrics;
  /** metrics' send series bound to this relay (made on first use). */
  sendSeries?: ReturnType<typeof sendSeries>;
  /** Opens the wake-ups streams receive: the entries a commit carried (wake-ups.ts). */
  wakeUps: WakeUpCodec;
  /** Open fetch and send streams, so shutdown can end them. */
  sessions: Set<FetchSession | SendStreamSession>;
  purgeNow(cutoffMs: number): Promise<{ messages: number; bytes: number }>;
  /** Refuses a send before it is stored (workspace suspensions, see workspace-server.ts). */
  beforeSend?: (messages: OutgoingMessage[]) => Promise<void>;
}

const CHALLENGE_NONCE = 16;

function session(ctx: CallContext) {
  if (!ctx.session) throw new UnauthenticatedError("session required");
  return ctx.session;
}

function relaySignature(core: RelayCore, body: Uint8Array): RelaySignature {
  return { body, signature: signBytes(core.key.privateKeyPem, body), relayId: core.relayId };
}

function toReceipt(o: SendOutcome): pb.SendReceipt {
  return {
    messageId: o.messageId,
    duplicate: o.duplicate,
    acceptedAtMs: o.acceptedAtMs,
    queued: o.queued.map((q) => ({ queue: address(q.queue), seq: q.seq })),
    relaySignature: undefined,
  };
}

const address = (q: QueueRef) => ({ target: q.kind === "device" ? { $case: "deviceId" as const, value: q.id } : { $case: "identityId" as const, value: q.id } });

const senderOf = (ctx: CallContext): Sender => {
  const s = session(ctx);
  return { deviceId: s.sub, identityId: s.idn };
};

/** Queues the messages; returns their receipts, unsigned (the handlers sign). */
async function send(core: RelayCore, sender: Sender, messages: OutgoingMessage[]): Promise<pb.SendReceipt[]> {
  await core.beforeSend?.(messages);
  return commit(core, sender, messages);
}

/** send() after the gate: group commit, then metrics. */
async function commit(core: RelayCore, sender: Sender, messages: OutgoingMessage[]): Promise<pb.SendReceipt[]> {
  const started = performance.now();
  const outcomes = await core.sends.submit(sender, messages);
  const series = (core.sendSeries ??= sendSeries(core.metrics, core.relayId));
  series.seconds.observe((performance.now() - started) / 1000);
  let duplicates = 0;
  let devices = 0;
  let identities = 0;
  for (const o of outcomes) {
    if (o.duplicate) duplicates++;
    else for (const q of o.queued) q.queue.kind === "device" ? devices++ : identities++;
  }
  if (duplicates) series.duplicates.inc(duplicates);
  if (outcomes.length > duplicates) series.sent.inc(outcomes.length - duplicates);
  if (devices) series.queued.device.inc(devices);
  if (identities) series.queued.identity.inc(identities);
  return outcomes.map(toReceipt);
}

/** SendStream, or SendStreamBatches (frames unpacked by batchFrame): one session until the call ends. */
async function sendStreamSession(
  core: RelayCore,
  ctx: CallContext,
  stream: ServerDuplexStream<pb.SendRequest, pb.SendStreamAck> | ServerDuplexStream<pb.SendBatchRequest, pb.SendStreamAck>,
  unpack?: (frame: unknown) => pb.SendRequest[],
): Promise<void> {
  const sender = senderOf(ctx);
  const session = new SendStreamSession(
    {
      limits: core.limits,
      gate: async (messages) => core.beforeSend?.(messages),
      commit: (messages) => commit(core, sender, messages),
      commitsInOrder: core.sends.commitsInOrder,
      sign: (receipts) => relaySignature(core, batchReceiptStatement(sender.deviceId, receipts)),
    },
    stream,
    ctx.signal,
    unpack,
  );
  core.sessions.add(session);
  try {
    await session.run();
  } finally {
    core.sessions.delete(session);
  }
}

/** Handlers for parley.v1.Relay. */
export function relayHandlers(core: RelayCore) {
  return {
    getRelayInfo: async (): Promise<pb.RelayInfo> => ({
      relayId: core.relayId,
      publicKey: core.key.publicKey,
      maxMessageBytes: core.limits.maxMessageBytes,
      retentionSeconds: Math.floor(core.retentionMs / 1000),
      maxBatchMessages: core.limits.maxBatchMessages,
      sendStreamBatches: true,
    }),

    registerIdentity: async (req: pb.RegisterIdentityRequest): Promise<pb.Registration> => {
      const id = checkId("identity_id", req.identityId);
      checkBytes("public_key", req.publicKey, 32);
      checkBytes("signature", req.signature, 64);
      if (!verifyBytes(req.publicKey, Statements.registerIdentity(id, req.publicKey), req.signature)) {
        throw new UnauthenticatedError("the signature does not prove possession of the identity key");
      }
      const created = await core.store.registerIdentity(id, req.publicKey, core.clock.now());
      return { created, relaySignature: relaySignature(core, Statements.relayRegistration("identity", id, req.publicKey)) };
    },

    registerDevice: async (req: pb.RegisterDeviceRequest): Promise<pb.Registration> => {
      const id = checkId("device_id", req.deviceId);
      const identityId = checkId("identity_id", req.identityId);
      checkBytes("public_key", req.publicKey, 32);
      checkBytes("identity_signature", req.identitySignature, 64);
      const identity = await core.store.getIdentity(identityId);
      if (!identity) throw new NotFoundError(`unknown identity '${identityId}'`);
      if (!verifyBytes(identity.publicKey, Statements.registerDevice(identityId, id, req.publicKey), req.identitySignature)) {
        throw new UnauthenticatedError(`the device is not signed by identity '${identityId}'`);
      }
      const created = await core.store.registerDevice(id, identityId, req.publicKey, core.clock.now());
      return { created, relaySignature: relaySignature(core, Statements.relayRegistration("device", id, req.publicKey)) };
    },

    getChallenge: async (req: pb.GetChallengeRequest): Promise<pb.Challenge> => {
      const deviceId = checkId("device_id", req.deviceId);
      checkBytes("client_nonce", req.clientNonce, 16, 64);
      // Stateless: the challenge carries its expiry and the relay's signature,
      // so any instance can check it; used ones are recorded on answer.
      const nonce = randomBytes(CHALLENGE_NONCE);
      const expiresAtMs = core.clock.now() + core.challengeTtlMs;
      const expiry = Buffer.alloc(8);
      expiry.writeBigUInt64BE(BigInt(expiresAtMs));
      const body = Buffer.concat([nonce, expiry]);
      const sig = signBytes(core.key.privateKeyPem, Statements.challengeSeal(deviceId, body));
      const challenge = new Uint8Array(Buffer.concat([body, sig]));
      return { challenge, expiresAtMs, relaySignature: relaySignature(core, Statements.relayChallenge(req.clientNonce, challenge)) };
    },

    authenticate: async (req: pb.AuthenticateRequest): Promise<pb.Session> => {
      const deviceId = checkId("device_id", req.deviceId);
      checkBytes("challenge", req.challenge, CHALLENGE_NONCE + 8 + 64);
      checkBytes("signature", req.signature, 64);
      const body = req.challenge.subarray(0, CHALLENGE_NONCE + 8);
      const relaySig = req.challenge.subarray(CHALLENGE_NONCE + 8);
      if (!verifyBytes(core.key.publicKey, Statements.challengeSeal(deviceId, body), relaySig)) {
        throw new UnauthenticatedError("the challenge was not issued by this relay for this device");
      }
      const expiresAtMs = Number(Buffer.from(body).readBigUInt64BE(CHALLENGE_NONCE));
      if (expiresAtMs <= core.clock.now()) throw new UnauthenticatedError("the challenge expired; ask for a new one");
      const device = await core.store.getDevice(deviceId);
      if (!device) throw new NotFoundError(`unknown device '${deviceId}'`);
      if (!verifyBytes(device.publicKey, Statements.authenticate(deviceId, req.challenge), req.signature)) {
        throw new UnauthenticatedError("the signature does not match the device key");
      }
      if (device.suspended) throw new FailedPreconditionError(`device '${deviceId}' is suspended`);
      if (!(await core.store.useChallenge(body.subarray(0, CHALLENGE_NONCE), expiresAtMs))) {
        throw new UnauthenticatedError("the challenge was already used; ask for a new one");
      }
      const { token, claims } = core.tokens.issue(deviceId, device.identityId);
      return { token, expiresAtMs: claims.exp, identityId: device.identityId, relaySignature: relaySignature(core, Statements.relaySession(token)) };
    },

    lookupIdentity: async (req: pb.LookupIdentityRequest, ctx: CallContext): Promise<pb.IdentityInfo> => {
      session(ctx);
      const identity = await core.store.getIdentity(checkId("identity_id", req.identityId));
      if (!identity) throw new NotFoundError(`unknown identity '${req.identityId}'`);
      return {
        identityId: identity.id,
        publicKey: identity.publicKey,
        devices: identity.devices.map((d) => ({ deviceId: d.id, publicKey: d.publicKey, suspended: d.suspended })),
      };
    },

    send: async (req: pb.SendRequest, ctx: CallContext): Promise<pb.SendReceipt> => {
      const sender = senderOf(ctx);
      const [receipt] = await send(core, sender, [toOutgoing(req, core.limits)]);
      return { ...receipt!, relaySignature: relaySignature(core, receiptStatement(sender.deviceId, receipt!)) };
    },

    sendBatch: async (req: pb.SendBatchRequest, ctx: CallContext): Promise<pb.SendBatchResponse> => {
      const sender = senderOf(ctx);
      const receipts = await send(core, sender, toOutgoingBatch(req.messages, core.limits));
      return { receipts, relaySignature: relaySignature(core, batchReceiptStatement(sender.deviceId, receipts)) };
    },

    sendStream: (ctx: CallContext, stream: ServerDuplexStream<pb.SendRequest, pb.SendStreamAck>) => sendStreamSession(core, ctx, stream),

    sendStreamBatches: (ctx: CallContext, stream: ServerDuplexStream<pb.SendBatchRequest, pb.SendStreamAck>) => sendStreamSession(core, ctx, stream, (frame) => batchFrame(frame, core.limits.maxBatchMessages)),

    fetch: async (req: pb.FetchRequest, ctx: CallContext, stream: ServerWritableStream<pb.FetchRequest, pb.FetchEvent>): Promise<void> => {
      const s = session(ctx);
      const device = await core.store.getDevice(s.sub);
      if (!device) throw new NotFoundError(`unknown device '${s.sub}'`);
      if (device.suspended) throw new FailedPreconditionError(`device '${s.sub}' is suspended`);
      const fetchSession = new FetchSession(core, stream, s.sub, s.idn, ctx.signal);
      core.sessions.add(fetchSession);
      try {
        await fetchSession.run(req);
      } finally {
        core.sessions.delete(fetchSession);
      }
    },

    ack: async (req: pb.AckRequest, ctx: CallContext): Promise<pb.AckResponse> => {
      const s = session(ctx);
      if (!req.deviceSeq && !req.identitySeq) throw new InvalidArgumentError("ack names no sequence (device_seq or identity_seq)");
      const deleted = await core.store.ack(s.sub, s.idn, req.deviceSeq, req.identitySeq);
      core.metrics.acked.inc({ relay: core.relayId }, deleted);
      return { deleted };
    },
  };
}

/** Handlers for parley.v1.RelayAdmin (the admin token is checked by the authorizer). */
export function adminHandlers(core: RelayCore) {
  const setSuspended = async (req: pb.DeviceRef, suspended: boolean): Promise<pb.DeviceState> => {
    const device = await core.store.setSuspended(checkId("device_id", req.deviceId), suspended);
    if (suspended) core.bus.publish(suspendedSubject(core.relayId, device.id), new Uint8Array());
    return { deviceId: device.id, suspended };
  };
  return {
    getStats: async (req: pb.GetStatsRequest): Promise<pb.RelayStats> => {
      if (req.top > 1000) throw new InvalidArgumentError(`top is ${req.top}; at most 1000`);
      const now = core.clock.now();
      const order = req.order === pb.StatsOrder.STATS_ORDER_OLDEST ? "oldest" : "depth";
      const [totals, top] = await Promise.all([core.store.totals(now), core.store.topQueues(req.top || 20, order, now)]);
      return { ...totals, top: top.map((q) => ({ queue: address(q.queue), depth: q.depth, bytes: q.bytes, oldestAgeSeconds: q.oldestAgeSeconds })) };
    },
    purgeQueue: async (req: pb.PurgeQueueRequest): Promise<pb.PurgeResult> => {
      const purged = await core.store.purgeQueue(toQueueRef("queue", req.queue));
      core.metrics.purged.inc({ relay: core.relayId, reason: "admin" }, purged.messages);
      return { deleted: purged.messages, bytes: purged.bytes };
    },
    purgeOlderThan: async (req: pb.PurgeOlderThanRequest): Promise<pb.PurgeResult> => {
      if (!req.ageSeconds) throw new InvalidArgumentError("age_seconds must be positive");
      const purged = await core.purgeNow(core.clock.now() - req.ageSeconds * 1000);
      return { deleted: purged.messages, bytes: purged.bytes };
    },
    suspendDevice: (req: pb.DeviceRef) => setSuspended(req, true),
    resumeDevice: (req: pb.DeviceRef) => setSuspended(req, false),
  };
}
