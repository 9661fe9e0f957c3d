/**
 * What the relay signs when it accepts messages, built from the receipts as
 * they travel, so the relay (signing) and the SDK (verifying) cannot disagree.
 *
 * A Send answer is one receipt with its own signature. A SendBatch answer is
 * signed once: the statement names the sender, the number of receipts and a
 * SHA-256 over every receipt's own statement, in order. One Ed25519 signature
 * per batch instead of one per message (signing and verifying were the
 * largest per-message costs of a batch); a receipt taken out of a batch is
 * proven by the batch answer it came in.
 */
import { createHash } from "node:crypto";
import { relayReceiptParts, statements, Statements } from "./crypto.js";
import type { SendReceipt } from "../../generated/parley/v1/relay.js";

function receiptParts(senderDeviceId: string, r: SendReceipt) {
  const queued = r.queued
    .map((q) => {
      const t = q.queue?.target;
      const kind = t?.$case === "deviceId" ? "device" : "identity";
      return `${kind}:${t?.value ?? ""}:${q.seq}`;
    })
    .join(",");
  return relayReceiptParts(senderDeviceId, r.messageId, r.acceptedAtMs, queued);
}

export function receiptStatement(senderDeviceId: string, r: SendReceipt): Uint8Array {
  return statements([receiptParts(senderDeviceId, r)]);
}

/** The digest covers each receipt's statement, in order: hashed as one buffer of all of them. */
export function batchReceiptStatement(senderDeviceId: string, receipts: SendReceipt[]): Uint8Array {
  const digest = createHash("sha256").update(statements(receipts.map((r) => receiptParts(senderDeviceId, r)))).digest();
  return Statements.relayBatchReceipt(senderDeviceId, receipts.length, digest);
}
