/**
 * The relay's own key pair: a PKCS#8 PEM file (in Kubernetes, a Secret the
 * operator generates once). Created only when asked, so a missing mount
 * fails loudly instead of silently minting a new relay identity.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { generateKeyPair, publicKeyFromPem } from "../common/crypto.js";

export interface RelayKey {
  privateKeyPem: string;
  publicKey: Uint8Array;
}

export function loadRelayKey(path: string, createIfMissing: boolean): RelayKey {
  if (!existsSync(path)) {
    if (!createIfMissing) throw new Error(`relay key file ${path} does not exist (use --create-key to generate one)`);
    const pair = generateKeyPair();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, pair.privateKeyPem, { mode: 0o600, flag: "wx" });
  }
  const privateKeyPem = readFileSync(path, "utf8");
  try {
    return { privateKeyPem, publicKey: publicKeyFromPem(privateKeyPem) };
  } catch (err) {
    throw new Error(`relay key file ${path} is not an Ed25519 PKCS#8 PEM key: ${(err as Error).message}`);
  }
}
