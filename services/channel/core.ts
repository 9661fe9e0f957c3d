/** What the handlers and sessions of one channel instance share. */
import type { Bus } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import type { FileTokens } from "../common/file-tokens.js";
import type { Logger } from "../common/log.js";
import type { ComplianceLog } from "../common/compliance.js";
import type { RoomFeeds } from "./feed.js";
import type { ChannelMetrics } from "./metrics.js";
import type { PostQueue } from "./post-queue.js";
import type { ChatSession } from "./session.js";
import type { ChannelStore } from "./store.js";
import type { ChannelLimits } from "./types.js";

export interface FileSettings {
  tokens: FileTokens;
  tokenTtlMs: number;
  maxFileBytes: number;
  /** Base URLs of the file service handed to clients. */
  urls: string[];
  /** Queues the file's removal from shared storage (durable: the file service consumes it). */
  deleteFile(roomId: string, fileId: string): Promise<void>;
}

export interface ChannelCore {
  instanceId: string;
  store: ChannelStore;
  /** Posts go through here: per-room group commit. */
  posts: PostQueue;
  bus: Bus;
  clock: Clock;
  log: Logger;
  metrics: ChannelMetrics;
  feeds: RoomFeeds;
  compliance: ComplianceLog;
  limits: ChannelLimits;
  files: FileSettings;
  sessions: Set<ChatSession>;
}
