/** Checks the relay's signatures on what it returns, against the pinned relay key. */
import { verifyBytes } from "../services/common/crypto.js";
import type { RelaySignature } from "../generated/parley/v1/common.js";

export class RelayVerificationError extends Error {
  override name = "RelayVerificationError";
}

export function checkRelaySignature(relayKey: Uint8Array, relayId: string, expected: Uint8Array, sig: RelaySignature | undefined, what: string): void {
  if (!sig) throw new RelayVerificationError(`${what}: the relay did not sign its answer`);
  if (sig.relayId !== relayId) throw new RelayVerificationError(`${what}: signed by relay '${sig.relayId}', expected '${relayId}'`);
  if (!Buffer.from(sig.body).equals(Buffer.from(expected))) throw new RelayVerificationError(`${what}: the relay signed something else`);
  if (!verifyBytes(relayKey, expected, sig.signature)) throw new RelayVerificationError(`${what}: bad signature from relay '${relayId}' (is this the relay you pinned?)`);
}
