/**
 * Wire messages between endpoints, carried as relay messages to the
 * recipients' device queues. JSON keeps them inspectable in relay queues;
 * the content type names the workspace so the relay can enforce its
 * suspensions (services/relay/workspace-server.ts parses the same form).
 *
 * Every message carries the sender's applied vector and what it knows of
 * the others' vectors ("known"): receiving any message can reveal a gap
 * and can clear outgoing-queue entries.
 */
import type { Change, Range, StateEntry, Vector } from "./types.js";

export const CONTENT_TYPE_BASE = "application/vnd.parley.workspace+json";
export const contentTypeFor = (workspaceId: string) => `${CONTENT_TYPE_BASE}; ws=${workspaceId}`;

interface Envelope {
  ws: string;
  from: string;
  vector: Vector;
  known: Record<string, Vector>;
}

/** New changes, or (with reply) an answer to a range request. */
export interface ChangesMessage extends Envelope {
  t: "changes";
  changes: Change[];
  reply?: string;
  /** On an answer's last part: the requested ranges this peer does not hold ("don't have"). */
  missing?: Range[];
  last?: boolean;
}

/** "Synchronised at vector V": lets senders clear their queues for this endpoint. */
export interface AckMessage extends Envelope {
  t: "ack";
  /**
   * Set by an endpoint that just finished a catch-up: receivers pass the news
   * on (one hop), so peers the catching-up endpoint cannot reach (a hub's
   * other side) also learn it and free their queues.
   */
  synchronised?: boolean;
}

/** Asks a peer for missing ranges, or for a state snapshot when no one holds them. */
export interface RequestMessage extends Envelope {
  t: "request";
  id: string;
  ranges: Range[];
  snapshot?: boolean;
}

export interface SnapshotMessage extends Envelope {
  t: "snapshot";
  reply: string;
  state: StateEntry[];
}

export type SyncMessage = ChangesMessage | AckMessage | RequestMessage | SnapshotMessage;

export function encode(m: SyncMessage): Uint8Array {
  return Buffer.from(JSON.stringify(m), "utf8");
}

export class MalformedSyncMessage extends Error {
  override name = "MalformedSyncMessage";
}

const isVector = (v: unknown): v is Vector => typeof v === "object" && v !== null && Object.values(v).every((n) => Number.isSafeInteger(n) && (n as number) >= 0);

/** Parses and checks the envelope; a peer's malformed message is dropped, never applied. */
export function decode(bytes: Uint8Array): SyncMessage {
  let m: SyncMessage;
  try {
    m = JSON.parse(Buffer.from(bytes).toString("utf8")) as SyncMessage;
  } catch (err) {
    throw new MalformedSyncMessage(`not JSON: ${(err as Error).message}`);
  }
  if (typeof m?.ws !== "string" || typeof m.from !== "string" || !isVector(m.vector) || typeof m.known !== "object" || m.known === null) {
    throw new MalformedSyncMessage("missing ws, from, vector or known");
  }
  if (!Object.values(m.known).every(isVector)) throw new MalformedSyncMessage("known holds a malformed vector");
  switch (m.t) {
    case "changes":
      if (!Array.isArray(m.changes) || !m.changes.every(validChange)) throw new MalformedSyncMessage("changes holds a malformed change");
      return m;
    case "request":
      if (typeof m.id !== "string" || !Array.isArray(m.ranges) || !m.ranges.every(validRange)) throw new MalformedSyncMessage("request needs an id and valid ranges");
      return m;
    case "snapshot":
      if (typeof m.reply !== "string" || !Array.isArray(m.state) || !m.state.every(validEntry)) throw new MalformedSyncMessage("snapshot needs reply and valid state entries");
      return m;
    case "ack":
      return m;
    default:
      throw new MalformedSyncMessage(`unknown message type '${(m as { t?: unknown }).t}'`);
  }
}

function validRange(r: Range): boolean {
  return typeof r === "object" && r !== null && typeof r.origin === "string" && Number.isSafeInteger(r.from) && Number.isSafeInteger(r.to) && r.from >= 1 && r.to >= r.from;
}

function validEntry(e: StateEntry): boolean {
  return (
    typeof e === "object" && e !== null && typeof e.key === "string" && typeof e.value === "string" && typeof e.origin === "string" &&
    Number.isSafeInteger(e.lamport) && Number.isSafeInteger(e.fileBytes) && e.fileBytes >= 0
  );
}

function validChange(c: Change): boolean {
  return (
    typeof c === "object" && c !== null && typeof c.origin === "string" && Number.isSafeInteger(c.seq) && c.seq > 0 &&
    Number.isSafeInteger(c.lamport) && typeof c.key === "string" && typeof c.value === "string" && Number.isSafeInteger(c.fileBytes) && c.fileBytes >= 0
  );
}

/** Bytes a change adds to the workspace and to an outgoing queue. */
export const changeBytes = (c: Pick<Change, "value" | "fileBytes">) => Buffer.byteLength(c.value) + c.fileBytes;
