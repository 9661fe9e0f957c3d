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
import { databaseReadiness, migrate, type Pool } from "../common/db.js";
import { UnavailableError } from "../common/errors.js";
import { adminAuthorizer, bind, sessionAuthorizer, type BoundService } from "../common/grpc.js";
import type { ReadinessCheck, Route } from "../common/http.js";
import { adminPage } from "./web/admin-page.js";
import type { Logger } from "../common/log.js";
import { TokenIssuer, TokenVerifier } from "../common/tokens.js";
import { RelayAdminService, RelayService as RelayServiceDefinition } from "../../generated/parley/v1/relay.js";
import type { FetchSession } from "./delivery.js";
import type { SendStreamSession } from "./send-stream.js";
import type { RelayKey } from "./keys.js";
import { registerStatsSource, relayMetrics } from "./metrics.js";
import { relayMigrations } from "./migrations.js";
import { RetentionJob } from "./purge.js";
import { adminHandlers, relayHandlers, type RelayCore } from "./server.js";
import { WakeUpCodec } from "./wake-ups.js";
import { SendGroups } from "./send-groups.js";
import { RelayStore } from "./store.js";
import { WorkspaceDirectoryService } from "../../generated/parley/v1/workspace.js";
import { workspaceDirectory } from "./workspace-server.js";
import { WorkspaceStore } from "./workspace-store.js";
import type { Limits } from "./types.js";
import { replicationAdminHandlers, ReplicationView } from "./replication/admin.js";
import type { ChangeStream } from "./replication/change-stream.js";
import { Replica } from "./replication/replica.js";
import { journalingPool } from "./replication/journaling-pool.js";

export interface RelayOptions {
  relayId: string;
  adminToken: string;
  retentionMs: number;
  sessionTtlMs: number;
  challengeTtlMs: number;
  limits: Limits;
  /** Replicate through deps.changes (absent: standalone, no change stream). */
  replication?: { role: "primary" | "secondary"; replicaName: string };
}

export interface RelayDeps {
  pool: Pool;
  bus: Bus;
  clock: Clock;
  log: Logger;
  key: RelayKey;
  /** The relay's change stream; required with options.replication. */
  changes?: ChangeStream;
}

const PUBLIC_METHODS = ["getRelayInfo", "registerIdentity", "registerDevice", "getChallenge", "authenticate"];

export class RelayService {
  readonly services: BoundService[];
  readonly retention: RetentionJob;
  readonly store: RelayStore;
  readonly verifier: TokenVerifier;
  /** Set when the relay replicates (primary or secondary). */
  readonly replica: Replica | undefined;
  readonly replication: ReplicationView;
  private readonly core: RelayCore;
  private readonly admin: ReturnType<typeof adminHandlers> & ReturnType<typeof replicationAdminHandlers>;
  private readonly workspaces: ReturnType<typeof workspaceDirectory>;
  private readonly unregisterStats: () => void;

  private constructor(private readonly options: RelayOptions, private readonly deps: RelayDeps) {
    const metrics = relayMetrics();
    if (options.replication) {
      if (!deps.changes) throw new Error("replication needs the relay's change stream (deps.changes)");
      this.replica = new Replica({
        relayId: options.relayId,
        replicaName: options.replication.replicaName,
        bootstrapPrimary: options.replication.role === "primary",
        pool: deps.pool,
        stream: deps.changes,
        clock: deps.clock,
        log: deps.log,
      });
      // Streams opened on a primary end when it stops being one: their clients reconnect to the new primary.
      this.replica.onRoleChange((role, reason) => {
        if (role === "primary") return;
        for (const s of this.core.sessions) s.end(new UnavailableError(`relay replica is no longer the primary (${reason}); reconnect`));
      });
    }
    this.replication = new ReplicationView({ relayId: options.relayId, pool: deps.pool, log: deps.log, adminToken: options.adminToken, replica: this.replica, stream: deps.changes });
    this.store = new RelayStore(deps.pool, this.replica);
    this.verifier = new TokenVerifier(deps.key.publicKey, deps.clock);
    this.retention = new RetentionJob(options.relayId, this.store, deps.clock, options.retentionMs, metrics, deps.log);
    // Published after each commit, one per queue for the whole group (send-groups.ts).
    const wakeUps = new WakeUpCodec(options.relayId, deps.key.privateKeyPem);
    this.core = {
      relayId: options.relayId,
      key: deps.key,
      store: this.store,
      // Not yet with replication: a replicated group's change can span several
      // stream parts, and promotion under load has been seen to trip over them
      // (see the closing note); until that is understood, one transaction per request.
      sends: new SendGroups(this.store, options.limits, deps.clock, 1, 4096, !this.replica, (sent) => {
        for (const w of wakeUps.wakeUps(sent)) deps.bus.publish(w.subject, w.data);
      }),
      bus: deps.bus,
      clock: deps.clock,
      limits: options.limits,
      retentionMs: options.retentionMs,
      challengeTtlMs: options.challengeTtlMs,
      tokens: new TokenIssuer(options.relayId, deps.key.privateKeyPem, deps.clock, options.sessionTtlMs),
      metrics,
      wakeUps,
      sessions: new Set<FetchSession | SendStreamSession>(),
      purgeNow: async (cutoffMs) => {
        const purged = await this.store.purgeOlderThan(cutoffMs);
        metrics.purged.inc({ relay: options.relayId, reason: "admin" }, purged.messages);
        return purged;
      },
    };
    // Workspace sync's directory: refuses queueing for suspended endpoints.
    this.workspaces = workspaceDirectory({
      relayId: options.relayId,
      // Replicated too: its transactions' writes go into the change stream (see replication/journaling-pool.ts).
      store: new WorkspaceStore(this.replica ? journalingPool(deps.pool, this.replica) : deps.pool),
      clock: deps.clock,
    });
    this.core.beforeSend = this.workspaces.gate;
    this.admin = { ...adminHandlers(this.core), ...replicationAdminHandlers(this.replication) };
    this.services = [
      bind(RelayServiceDefinition, "relay", this.gated(relayHandlers(this.core)), sessionAuthorizer(this.verifier, PUBLIC_METHODS), deps.log),
      bind(RelayAdminService, "relay-admin", this.admin, adminAuthorizer(options.adminToken), deps.log),
      bind(WorkspaceDirectoryService, "workspace-directory", this.gated(this.workspaces.handlers), sessionAuthorizer(this.verifier, []), deps.log),
    ];
    this.unregisterStats = registerStatsSource(options.relayId, {
      totals: () => this.store.totals(deps.clock.now()),
      top: (n) => this.store.topQueues(n, "depth", deps.clock.now()),
    });
  }

  /** Applies the relay's migrations, then builds the service. */
  static async create(options: RelayOptions, deps: RelayDeps): Promise<RelayService> {
    await migrate(deps.pool, "relay", relayMigrations);
    const service = new RelayService(options, deps);
    // Catches up with the change stream before serving (a replica needing a rebuild comes up unserving).
    await service.replica?.start();
    return service;
  }

  /** Only the primary serves clients; a secondary answers UNAVAILABLE so they try the next address. */
  private gated<H extends Record<string, (...args: any[]) => Promise<any>>>(handlers: H): H {
    const replica = this.replica;
    if (!replica) return handlers;
    const out: Record<string, (...args: any[]) => Promise<any>> = {};
    for (const [name, fn] of Object.entries(handlers)) {
      out[name] = name === "getRelayInfo" ? fn : async (...args: any[]) => {
        replica.assertPrimary();
        return fn(...args);
      };
    }
    return out as H;
  }

  /** The web admin page (/admin on the HTTP port), driving the same handlers as the gRPC admin API. */
  adminPage(): Route {
    const a = this.admin;
    return adminPage({
      relayId: this.options.relayId,
      adminToken: this.options.adminToken,
      api: {
        getStats: a.getStats,
        purgeQueue: a.purgeQueue,
        purgeOlderThan: a.purgeOlderThan,
        suspendDevice: a.suspendDevice,
        resumeDevice: a.resumeDevice,
        getReplicationStatus: a.getReplicationStatus,
        startRebuild: (req) => {
          this.replication.rebuild(req).catch((err: unknown) => this.deps.log.error({ err }, "rebuild started from the admin page failed"));
        },
      },
    });
  }

  startJobs(purgeIntervalMs: number): void {
    // The primary purges; its purges reach the secondaries through the stream.
    this.retention.start(purgeIntervalMs, () => !this.replica || this.replica.role === "primary");
  }

  readiness(): ReadinessCheck {
    return databaseReadiness(this.deps.pool, "relay database");
  }

  /** Number of open fetch and send streams. */
  get openStreams(): number {
    return this.core.sessions.size;
  }

  /**
   * Ends open fetch and send streams with UNAVAILABLE so their clients reconnect to
   * another instance, and stops background jobs. Unary calls in flight are
   * left to the gRPC server's graceful shutdown.
   */
  async stop(): Promise<void> {
    for (const s of this.core.sessions) s.end(new UnavailableError("relay instance shutting down; reconnect"));
    await this.retention.stop();
    await this.replica?.stop();
    this.unregisterStats();
    this.workspaces.stop();
  }
}
