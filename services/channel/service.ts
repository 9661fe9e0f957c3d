/**
 * A channel instance assembled from its parts, independent of how the
 * process runs (a pod on NATS and a Postgres server, or `parley up` on the
 * in-process bus and embedded Postgres).
 *
 *   const channel = await ChannelService.create(options, { pool, bus, clock, log });
 *   const grpc = await startGrpcServer({ port: 0, services: channel.services });
 *   channel.start(`127.0.0.1:${grpc.port}`);
 */
import type * as grpc from "@grpc/grpc-js";
import type { Bus } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { databaseReadiness, migrate, type Pool } from "../common/db.js";
import { UnavailableError } from "../common/errors.js";
import { FILES_STREAM_CONFIG, FileTokens } from "../common/file-tokens.js";
import { bind, sessionAuthorizer, type BoundService } from "../common/grpc.js";
import type { ReadinessCheck } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { TokenVerifier } from "../common/tokens.js";
import { ChannelService as ChannelDefinition } from "../../generated/parley/v1/chat.js";
import { ComplianceLog } from "../common/compliance.js";
import { ComplianceSweep } from "./compliance-sweep.js";
import type { ChannelCore } from "./core.js";
import { RoomFeeds } from "./feed.js";
import { DrainControl } from "./drain.js";
import { LoadReporter } from "./load.js";
import { channelMetrics } from "./metrics.js";
import { chatMigrations } from "./migrations.js";
import type { PresenceOptions } from "./presence.js";
import { channelHandlers } from "./server.js";
import type { ChatSession } from "./session.js";
import { PostQueue } from "./post-queue.js";
import { ChannelStore } from "./store.js";
import { FILES_DELETE_SUBJECT } from "./subjects.js";
import { DEFAULT_LIMITS, type ChannelLimits } from "./types.js";

export interface ChannelOptions {
  instanceId: string;
  /** Raw Ed25519 public key of the relay that issues session tokens. */
  relayPublicKey: Uint8Array;
  fileTokenSecret: string;
  fileTokenTtlMs: number;
  maxFileBytes: number;
  fileServiceUrls: string[];
  loadReportIntervalMs: number;
  presence: PresenceOptions;
  gapWaitMs: number;
  /** How often unconfirmed compliance events are looked for (default 30 s). */
  complianceSweepIntervalMs?: number;
  /** Compliance stream name (default PARLEY_CHAT_COMPLIANCE). */
  complianceStream?: string;
  limits?: Partial<ChannelLimits>;
}

export interface ChannelDeps {
  pool: Pool;
  bus: Bus;
  clock: Clock;
  log: Logger;
}

/**
 * Fan-out writes the same event object to every local session; cache its
 * encoding by identity so each message is serialized once per instance.
 */
function encodeSharedEventsOnce(bound: BoundService): BoundService {
  const methods = bound.definition as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>;
  const session = methods.session!;
  const encoded = new WeakMap<object, Buffer>();
  methods.session = {
    ...session,
    responseSerialize: (value: unknown) => {
      let bytes = encoded.get(value as object);
      if (!bytes) encoded.set(value as object, (bytes = session.responseSerialize(value)));
      return bytes;
    },
  };
  return bound;
}

export class ChannelService {
  readonly services: BoundService[];
  readonly core: ChannelCore;
  private reporter: LoadReporter | undefined;
  readonly sweep: ComplianceSweep;
  /** Operator-driven draining before scale-in (drain.ts). */
  readonly drain: DrainControl;

  private constructor(private readonly options: ChannelOptions, private readonly deps: ChannelDeps, compliance: ComplianceLog) {
    const metrics = channelMetrics();
    const store = new ChannelStore(deps.pool);
    const encoder = new TextEncoder();
    this.core = {
      instanceId: options.instanceId,
      store,
      posts: new PostQueue(store, deps.clock),
      bus: deps.bus,
      clock: deps.clock,
      log: deps.log,
      metrics,
      compliance,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      sessions: new Set<ChatSession>(),
      feeds: new RoomFeeds({ instanceId: options.instanceId, bus: deps.bus, store, clock: deps.clock, log: deps.log, metrics, presence: options.presence, gapWaitMs: options.gapWaitMs }),
      files: {
        tokens: new FileTokens(options.fileTokenSecret, deps.clock),
        tokenTtlMs: options.fileTokenTtlMs,
        maxFileBytes: options.maxFileBytes,
        urls: options.fileServiceUrls,
        deleteFile: async (roomId, fileId) => {
          await deps.bus.publishDurable(FILES_DELETE_SUBJECT, encoder.encode(JSON.stringify({ roomId, fileId })), { msgId: `del:${roomId}:${fileId}` });
        },
      },
    };
    this.sweep = new ComplianceSweep(store, compliance, deps.clock, deps.log);
    this.drain = new DrainControl({ bus: deps.bus, log: deps.log, instanceId: options.instanceId, sessions: this.core.sessions }, async () => void (await this.reporter?.report()));
    const verifier = new TokenVerifier(options.relayPublicKey, deps.clock);
    const handlers = channelHandlers(this.core);
    handlers.session = this.drain.guard(handlers.session);
    this.services = [encodeSharedEventsOnce(bind(ChannelDefinition, "channel", handlers, sessionAuthorizer(verifier, []), deps.log))];
  }

  /** Applies the chat migrations, ensures the streams, then builds the service. */
  static async create(options: ChannelOptions, deps: ChannelDeps): Promise<ChannelService> {
    await migrate(deps.pool, "chat", chatMigrations);
    await deps.bus.ensureStream(FILES_STREAM_CONFIG);
    const compliance = await ComplianceLog.create(deps.bus, `channel/${options.instanceId}`, options.complianceStream);
    return new ChannelService(options, deps, compliance);
  }

  /** Starts presence heartbeats and load reports (address: where clients reach this instance). */
  start(address: string): void {
    this.core.feeds.start();
    this.sweep.start(this.options.complianceSweepIntervalMs ?? 30_000);
    this.reporter = new LoadReporter(this.deps.bus, this.deps.clock, this.options.instanceId, address, this.options.loadReportIntervalMs, {
      sessions: () => this.core.sessions.size,
      users: () => new Set([...this.core.sessions].map((s) => s.userId)).size,
      healthy: async () => !this.drain.draining && (await this.readiness()()) === undefined,
    });
    this.reporter.start();
    this.drain.start();
  }

  readiness(): ReadinessCheck {
    return databaseReadiness(this.deps.pool, "chat database");
  }

  /**
   * Reports itself unhealthy, ends the sessions with UNAVAILABLE (clients ask
   * lookup again and resume elsewhere) and announces its users offline.
   */
  async stop(): Promise<void> {
    this.drain.stop();
    await this.reporter?.stop();
    this.sweep.stop();
    for (const s of this.core.sessions) s.end(new UnavailableError("channel instance shutting down; ask lookup for another"));
    await this.core.feeds.stop();
  }
}
