/** The relay's own vocabulary, independent of the wire types. */

export type QueueKindName = "device" | "identity";
export const KIND_CODE: Record<QueueKindName, number> = { device: 1, identity: 2 };
export const KIND_NAME: Record<number, QueueKindName> = { 1: "device", 2: "identity" };

export interface QueueRef {
  kind: QueueKindName;
  id: string;
}

/** The order every sender locks queue rows in (device queues first, then by id), so concurrent groups cannot deadlock. */
export function compareQueues(a: QueueRef, b: QueueRef): number {
  return KIND_CODE[a.kind] - KIND_CODE[b.kind] || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** A map keyed by queue, without building a string key per lookup (the send and wake-up paths look up every entry). */
export class QueueMap<T> {
  private readonly devices = new Map<string, T>();
  private readonly identities = new Map<string, T>();

  get(q: QueueRef): T | undefined {
    return (q.kind === "device" ? this.devices : this.identities).get(q.id);
  }

  set(q: QueueRef, value: T): void {
    (q.kind === "device" ? this.devices : this.identities).set(q.id, value);
  }

  get size(): number {
    return this.devices.size + this.identities.size;
  }

  /** Device queues first, each kind in insertion order. */
  values(): T[] {
    return [...this.devices.values(), ...this.identities.values()];
  }
}

export interface OutgoingMessage {
  messageId: string;
  recipients: QueueRef[];
  payload: Uint8Array;
  contentType: string;
}

export interface Sender {
  deviceId: string;
  identityId: string;
}

/** What a send did for one message. */
export interface SendOutcome {
  messageId: string;
  duplicate: boolean;
  acceptedAtMs: number;
  queued: Array<{ queue: QueueRef; seq: number }>;
}

export interface StoredEntry {
  kind: QueueKindName;
  queueId: string;
  seq: number;
  messageId: string;
  senderDevice: string;
  senderIdentity: string;
  contentType: string;
  payload: Uint8Array;
  enqueuedAtMs: number;
}

export interface QueueFigures {
  queue: QueueRef;
  depth: number;
  bytes: number;
  oldestAgeSeconds: number;
}

export interface RelayTotals {
  queues: number;
  depth: number;
  bytes: number;
  oldestAgeSeconds: number;
  identities: number;
  devices: number;
  suspendedDevices: number;
  purgedMessages: number;
  purgedBytes: number;
}

export interface Limits {
  maxMessageBytes: number;
  maxQueueMessages: number;
  maxQueueBytes: number;
  maxBatchMessages: number;
  maxRecipients: number;
}
