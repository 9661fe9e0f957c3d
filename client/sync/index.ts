/**
 * Workspace sync, the SDK side: one engine per endpoint (device), state in
 * SQLite in the profile directory, changes through relays.
 *
 *   const engine = WorkspaceEngine.create({ store: SyncStore.open(path), transport: RelayTransport.create({ device, relays, clock }), clock });
 *   await engine.change("team-task", "todo/1", "write the spec");
 *   await engine.pump();
 */
export { WorkspaceEngine, WorkspaceError, MAX_VALUE_BYTES } from "./engine.js";
export type { EngineOptions } from "./engine.js";
export { SyncStore } from "./store.js";
export { RelayTransport, DirectoryClient } from "./transport.js";
export type { SyncTransport, Outbound, Inbound, SendResult, RelayTransportOptions } from "./transport.js";
export { syncAlerts, autoSuspensions, suspendChoices, memberSuspended, STALE_AFTER_MS, SIZE_LIMIT_BYTES } from "./rules.js";
export type { Role, SyncAlert, SuspendChoice, EndpointView, QueueFigure } from "./rules.js";
export type { Invitation, WorkspaceStatus, Change, Vector, Range } from "./types.js";
