/**
 * Bus subjects of a relay. Ids are base64url-encoded so that any id is one
 * NATS token; the relay id prefix keeps relays sharing one NATS apart.
 */
import type { QueueRef } from "./types.js";

const token = (id: string) => Buffer.from(id, "utf8").toString("base64url");

/** Published after a commit that added entries to the queue. */
export const wakeSubject = (relayId: string, q: QueueRef) => `parley.relay.${token(relayId)}.wake.${q.kind}.${token(q.id)}`;

/** Published when a device is suspended, so its open streams end. */
export const suspendedSubject = (relayId: string, deviceId: string) => `parley.relay.${token(relayId)}.suspended.${token(deviceId)}`;
