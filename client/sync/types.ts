/**
 * The vocabulary of workspace sync, shared by the engine, its store and the
 * wire messages. A workspace's state is a last-writer-wins map: content
 * keys (`c/…`) and membership keys (`m/<member>` role, `e/<endpoint>`
 * endpoint record, `s/<endpoint>` suspension) are replicated by the same
 * changes, so every endpoint converges on content and membership alike.
 */
import type { Role } from "./rules.js";

/** Applied changes per origin endpoint: every seq ≤ vector[origin] is applied. */
export type Vector = Record<string, number>;

export interface Change {
  origin: string;
  seq: number;
  /** Lamport time: orders writes to one key the same way on every endpoint. */
  lamport: number;
  atMs: number;
  author: string;
  key: string;
  value: string;
  /** Size of a file the change attaches (its bytes travel through the files service). */
  fileBytes: number;
}

export interface StateEntry {
  key: string;
  value: string;
  fileBytes: number;
  lamport: number;
  origin: string;
}

export interface Range {
  origin: string;
  from: number;
  to: number;
}

export interface EndpointRecord {
  memberId: string;
  /** Relay addresses holding this endpoint's device queue, preferred first. */
  relays: string[];
}

export interface Suspension {
  suspended: boolean;
  reason: "auto" | "manager" | "resumed";
  by: string;
}

export interface Invitation {
  workspaceId: string;
  name: string;
  legacy: boolean;
  memberId: string;
  role: Role;
  invitedBy: string;
  state: StateEntry[];
  vector: Vector;
}

export interface WorkspaceStatus {
  workspaceId: string;
  name: string;
  self: { memberId: string; endpointId: string; role: Role | undefined; suspended: boolean };
  legacy: boolean;
  sizeBytes: number;
  vector: Vector;
  /** Missing changes known to exist, per origin. */
  missing: Range[];
  members: Array<{ memberId: string; role: Role; endpoints: Array<{ endpointId: string; suspended: boolean; reason?: string }> }>;
  /** This endpoint's outgoing queue, per recipient endpoint. */
  outgoing: Array<{ endpointId: string; memberId: string; outstanding: number; bytes: number; oldestQueuedAtMs: number }>;
  alerts: Array<{ memberId: string; raisedAtMs: number; oldestQueuedAtMs: number; outstanding: number; bytes: number }>;
}

export const KEY = {
  content: (k: string) => `c/${k}`,
  member: (m: string) => `m/${m}`,
  endpoint: (e: string) => `e/${e}`,
  suspension: (e: string) => `s/${e}`,
  meta: "w/meta",
} as const;
