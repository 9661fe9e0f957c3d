/** Checks the relay's signatures on what it returns, against the pinned relay key. */
import { Statements, verifyBytes } from "../services/common/crypto.js";
import type { RelaySignature } from "../generated/parley/v1/common.js";
import type { SendReceipt } from "../generated/parley/v1/relay.js";

export class RelayVerificationError extends Error {
  override name = "RelayVerificationError";
}

export function checkRelaySignature(relayKey: Uint8Array, relayId: string, expected: Uint8Array, sig: RelaySignature | undefined, what: string): void {
  if (!sig) throw new RelayVerificationError(`${what}: the relay did not sign its answer`);
  if (sig.relayId !== relayId) throw new RelayVerificationError(`${what}: signed by relay '${sig.relayId}', expected '${relayId}'`);
  if (!Buffer.from(sig.body).equals(Buffer.from(expected))) throw new RelayVerificationError(`${what}: the relay signed something else`);
  if (!verifyBytes(relayKey, expected, sig.signature)) throw new RelayVerificationError(`${what}: bad signature from relay '${relayId}' (is this the relay you pinned?)`);
}

export function receiptStatement(senderDeviceId: string, r: SendReceipt): Uint8Array {
  const queued = r.queued
    .map((q) => {
      const t = q.queue?.target;
      const kind = t?.$case === "deviceId" ? "device" : "identity";
      return `${kind}:${t?.value ?? ""}:${q.seq}`;
    })
    .join(",");
  return Statements.relayReceipt(senderDeviceId, r.messageId, r.acceptedAtMs, queued);
}
