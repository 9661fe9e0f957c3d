/**
 * The relay assembled from its parts, independent of how the process runs
 * (a pod with NATS and a Postgres server, or `parley up` with the in-process
 * bus and embedded Postgres).
 *
 *   const relay = await RelayService.create(options, { pool, bus, clock, log, key });
 *   const grpc = await startGrpcServer({ port: 0, services: relay.services });
 *   relay.startJobs(60_000);
 */
import type { Bus } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { migrate, type Pool } from "../common/db.js";
import { UnavailableError } from "../common/errors.js";
import { adminAuthorizer, bind, sessionAuthorizer, type BoundService } from "../common/grpc.js";
import type { ReadinessCheck } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { TokenIssuer, TokenVerifier } from "../common/tokens.js";
import { RelayAdminService, RelayService as RelayServiceDefinition } from "../../generated/parley/v1/relay.js";
import type { FetchSession } from "./delivery.js";
import type { RelayKey } from "./keys.js";
import { registerStatsSource, relayMetrics } from "./metrics.js";
import { relayMigrations } from "./migrations.js";
import { RetentionJob } from "./purge.js";
import { adminHandlers, relayHandlers, type RelayCore } from "./server.js";
import { RelayStore } from "./store.js";
import type { Limits } from "./types.js";

export interface RelayOptions {
  relayId: string;
  adminToken: string;
  retentionMs: number;
  sessionTtlMs: number;
  challengeTtlMs: number;
  limits: Limits;
}

export interface RelayDeps {
  pool: Pool;
  bus: Bus;
  clock: Clock;
  log: Logger;
  key: RelayKey;
}

const PUBLIC_METHODS = ["getRelayInfo", "registerIdentity", "registerDevice", "getChallenge", "authenticate"];

export class RelayService {
  readonly services: BoundService[];
  readonly retention: RetentionJob;
  readonly store: RelayStore;
  readonly verifier: TokenVerifier;
  private readonly core: RelayCore;
  private readonly unregisterStats: () => void;

  private constructor(options: RelayOptions, private readonly deps: RelayDeps) {
    const metrics = relayMetrics();
    this.store = new RelayStore(deps.pool);
    this.verifier = new TokenVerifier(deps.key.publicKey, deps.clock);
    this.retention = new RetentionJob(options.relayId, this.store, deps.clock, options.retentionMs, metrics, deps.log);
    this.core = {
      relayId: options.relayId,
      key: deps.key,
      store: this.store,
      bus: deps.bus,
      clock: deps.clock,
      limits: options.limits,
      retentionMs: options.retentionMs,
      challengeTtlMs: options.challengeTtlMs,
      tokens: new TokenIssuer(options.relayId, deps.key.privateKeyPem, deps.clock, options.sessionTtlMs),
      metrics,
      sessions: new Set<FetchSession>(),
      purgeNow: async (cutoffMs) => {
        const purged = await this.store.purgeOlderThan(cutoffMs);
        metrics.purged.inc({ relay: options.relayId, reason: "admin" }, purged.messages);
        return purged;
      },
    };
    this.services = [
      bind(RelayServiceDefinition, "relay", relayHandlers(this.core), sessionAuthorizer(this.verifier, PUBLIC_METHODS), deps.log),
      bind(RelayAdminService, "relay-admin", adminHandlers(this.core), adminAuthorizer(options.adminToken), deps.log),
    ];
    this.unregisterStats = registerStatsSource(options.relayId, {
      totals: () => this.store.totals(deps.clock.now()),
      top: (n) => this.store.topQueues(n, "depth", deps.clock.now()),
    });
  }

  /** Applies the relay's migrations, then builds the service. */
  static async create(options: RelayOptions, deps: RelayDeps): Promise<RelayService> {
    await migrate(deps.pool, "relay", relayMigrations);
    return new RelayService(options, deps);
  }

  startJobs(purgeIntervalMs: number): void {
    this.retention.start(purgeIntervalMs);
  }

  readiness(): ReadinessCheck {
    return async () => {
      try {
        await this.deps.pool.query("SELECT 1");
        return undefined;
      } catch (err) {
        return `relay database unreachable: ${(err as Error).message}`;
      }
    };
  }

  /** Number of open fetch streams. */
  get openStreams(): number {
    return this.core.sessions.size;
  }

  /**
   * Ends open fetch streams with UNAVAILABLE so their clients reconnect to
   * another instance, and stops background jobs. Unary calls in flight are
   * left to the gRPC server's graceful shutdown.
   */
  async stop(): Promise<void> {
    for (const s of this.core.sessions) s.end(new UnavailableError("relay instance shutting down; reconnect"));
    await this.retention.stop();
    this.unregisterStats();
  }
}
