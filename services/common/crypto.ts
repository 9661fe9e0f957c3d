/**
 * Ed25519 keys and the exact byte strings that get signed. Keys travel as raw
 * 32-byte public keys; private keys stay in PKCS#8 PEM on their owner's disk.
 * Every signed statement starts with a domain tag so a signature made for one
 * purpose can never be replayed as another.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface KeyPair {
  publicKey: Uint8Array;
  privateKeyPem: string;
}

export function generateKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  return {
    publicKey: rawPublicKey(publicKey),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

export function rawPublicKey(key: KeyObject): Uint8Array {
  const der = key.export({ type: "spki", format: "der" });
  return new Uint8Array(der.subarray(SPKI_ED25519_PREFIX.length));
}

export function publicKeyFromPem(privateKeyPem: string): Uint8Array {
  return rawPublicKey(createPublicKey(createPrivateKey(privateKeyPem)));
}

const publicKeys = new Map<string, KeyObject>();

function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new RangeError(`an Ed25519 public key is 32 bytes, got ${raw.length}`);
  const id = Buffer.from(raw).toString("base64");
  let key = publicKeys.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" });
    if (publicKeys.size >= 4096) publicKeys.clear();
    publicKeys.set(id, key);
  }
  return key;
}

// Parsing a PEM costs about as much as signing: keep the parsed keys.
const parsedKeys = new Map<string, KeyObject>();

export function signBytes(privateKeyPem: string, data: Uint8Array): Uint8Array {
  let key = parsedKeys.get(privateKeyPem);
  if (!key) {
    key = createPrivateKey(privateKeyPem);
    if (parsedKeys.size >= 256) parsedKeys.clear();
    parsedKeys.set(privateKeyPem, key);
  }
  return new Uint8Array(sign(null, data, key));
}

/** False for a wrong signature, a malformed key or a malformed signature. */
export function verifyBytes(publicKey: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

type Part = string | Uint8Array;

/**
 * Length-prefixed concatenation, so ("ab","c") and ("a","bc") differ. Written
 * into one buffer: receipts build one statement per message.
 */
export function statement(tag: string, ...parts: Part[]): Uint8Array {
  return statements([[tag, ...parts]]);
}

/** statement() of each item, concatenated, in one buffer (a batch receipt hashes its receipts' statements at once). */
export function statements(items: Part[][]): Uint8Array {
  let size = 0;
  for (const parts of items) for (const part of parts) size += 4 + (typeof part === "string" ? Buffer.byteLength(part) : part.length);
  // Every byte is written below.
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const parts of items) {
    for (const part of parts) {
      if (typeof part === "string") {
        const n = out.write(part, at + 4, "utf8");
        out.writeUInt32BE(n, at);
        at += 4 + n;
      } else {
        out.writeUInt32BE(part.length, at);
        out.set(part, at + 4);
        at += 4 + part.length;
      }
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The parts of what the relay signs for one accepted message (a receipt: services/common/receipts.ts). */
export const relayReceiptParts = (senderDeviceId: string, messageId: string, acceptedAtMs: number, queued: string): Part[] => [
  "parley.v1.relay-receipt",
  senderDeviceId,
  messageId,
  String(acceptedAtMs),
  queued,
];

/** What each party signs. Clients and servers build them with these only. */
export const Statements = {
  registerIdentity: (identityId: string, publicKey: Uint8Array) =>
    statement("parley.v1.register-identity", identityId, publicKey),
  registerDevice: (identityId: string, deviceId: string, devicePublicKey: Uint8Array) =>
    statement("parley.v1.register-device", identityId, deviceId, devicePublicKey),
  authenticate: (deviceId: string, challenge: Uint8Array) => statement("parley.v1.authenticate", deviceId, challenge),
  /** The relay seals the challenges it issues, so any instance can check one. */
  challengeSeal: (deviceId: string, body: Uint8Array) => statement("parley.v1.challenge-seal", deviceId, body),
  relayChallenge: (clientNonce: Uint8Array, challenge: Uint8Array) =>
    statement("parley.v1.relay-challenge", clientNonce, challenge),
  relaySession: (token: string) => statement("parley.v1.relay-session", token),
  relayRegistration: (kind: "identity" | "device", id: string, publicKey: Uint8Array) =>
    statement("parley.v1.relay-registration", kind, id, publicKey),
  /** Every receipt of one SendBatch answer (services/common/receipts.ts). */
  relayBatchReceipt: (senderDeviceId: string, count: number, receiptsDigest: Uint8Array) =>
    statement("parley.v1.relay-batch-receipt", senderDeviceId, String(count), receiptsDigest),
};
