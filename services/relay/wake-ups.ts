/**
 * The wake-ups a send publishes after its commit: one per queue it added to,
 * carrying the entries it committed there (QueuedMessages), so that a stream
 * on any instance can send them without reading them back from Postgres
 * (delivery.ts). Past PUSH_BYTES of payload for one queue the wake-up is
 * empty, and streams read Postgres instead; so do streams of a relay that
 * does not look at the body.
 *
 * A body is sealed with an HMAC under a key derived from the relay's private
 * key, which every instance of the relay holds: whoever can publish on the
 * relay's NATS subjects can still only make streams read Postgres (as
 * before), never put a message into one. A body that does not verify is
 * taken as a plain wake-up.
 */
import { createHash, createHmac, createPrivateKey, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import { QueueKind } from "../../generated/parley/v1/common.js";
import type { QueuedMessage } from "../../generated/parley/v1/relay.js";
import { encodeQueuedMessages, readEntries, type EncodedEntry } from "./queued-codec.js";
import { wakeSubject } from "./subjects.js";
import type { Sent } from "./send-groups.js";
import { QueueMap, type QueueRef } from "./types.js";

export const PUSH_BYTES = 256 * 1024;
const MAC_BYTES = 32;

export interface WakeUp {
  subject: string;
  data: Uint8Array;
}

export class WakeUpCodec {
  // A KeyObject: createHmac with raw bytes converts them on every call.
  private readonly macKey: KeyObject;

  constructor(
    private readonly relayId: string,
    relayPrivateKeyPem: string,
  ) {
    const der = createPrivateKey(relayPrivateKeyPem).export({ type: "pkcs8", format: "der" });
    this.macKey = createSecretKey(createHash("sha256").update("parley.v1.wake-up-mac\0").update(der).digest());
  }

  /**
   * One wake-up per queue the requests of one commit newly queued to
   * (duplicates queue nothing), its entries in the order they were queued.
   */
  wakeUps(sent: Sent[]): WakeUp[] {
    const perQueue = new QueueMap<{ queue: QueueRef; entries: QueuedMessage[]; bytes: number }>();
    for (const { sender, messages, outcomes } of sent) {
      outcomes.forEach((o, i) => {
        if (o.duplicate) return;
        const m = messages[i];
        for (const { queue, seq } of o.queued) {
          let q = perQueue.get(queue);
          if (!q) perQueue.set(queue, (q = { queue, entries: [], bytes: 0 }));
          // Outcomes follow the messages' order; anything else gets a plain wake-up.
          if (!m || m.messageId !== o.messageId) q.bytes = Infinity;
          if (q.bytes > PUSH_BYTES) continue;
          q.bytes += m!.payload.length;
          q.entries.push({
            queue: queue.kind === "device" ? QueueKind.QUEUE_KIND_DEVICE : QueueKind.QUEUE_KIND_IDENTITY,
            seq,
            messageId: o.messageId,
            senderDeviceId: sender.deviceId,
            senderIdentityId: sender.identityId,
            payload: m!.payload,
            contentType: m!.contentType,
            enqueuedAtMs: o.acceptedAtMs,
          });
        }
      });
    }
    return perQueue.values().map((q) => ({
      subject: wakeSubject(this.relayId, q.queue),
      data: q.bytes > PUSH_BYTES ? new Uint8Array() : this.seal(encodeQueuedMessages(q.entries, MAC_BYTES)),
    }));
  }

  /** The entries a wake-up carries, as encoded; undefined for a plain wake-up, or a body that does not verify or parse. */
  pushedEntries(data: Uint8Array): EncodedEntry[] | undefined {
    if (data.length <= MAC_BYTES) return undefined;
    const body = data.subarray(MAC_BYTES);
    if (!timingSafeEqual(data.subarray(0, MAC_BYTES), this.mac(body))) return undefined;
    const entries = readEntries(body);
    return entries?.length ? entries : undefined;
  }

  /** Writes the MAC of what follows the first MAC_BYTES into them. */
  private seal(sealed: Buffer): Uint8Array {
    this.mac(sealed.subarray(MAC_BYTES)).copy(sealed, 0);
    return sealed;
  }

  private mac(body: Uint8Array): Buffer {
    return createHmac("sha256", this.macKey).update(body).digest();
  }
}
