/**
 * A compliance instance assembled from its parts: the collector (stream →
 * staging), the exporter (staging → output directory, every conversation
 * interval), pickup cleaning, and the admin gRPC service.
 *
 *   const c = await ComplianceService.create(options, { pool, bus, clock, log });
 *   await c.start();
 *   const grpc = await startGrpcServer({ port: 0, services: c.services });
 */
import { ComplianceAdminService, type AcknowledgePickupRequest, type AcknowledgePickupResponse, type ComplianceStatus, type ExportResult as ExportResultMessage } from "../../generated/parley/v1/compliance.js";
import type { Bus } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { complianceStream } from "../common/compliance.js";
import { databaseReadiness, migrate, type Pool } from "../common/db.js";
import { InvalidArgumentError, NotFoundError } from "../common/errors.js";
import { adminAuthorizer, bind, type BoundService } from "../common/grpc.js";
import type { ReadinessCheck } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { Collector } from "./collector.js";
import { buildConversation } from "./conversation.js";
import type { EmlOptions } from "./eml.js";
import { Exporter } from "./exporter.js";
import { complianceMetrics, type ComplianceMetrics } from "./metrics.js";
import { complianceMigrations } from "./migrations.js";
import { isBatchId, newBatchId, OutputDir } from "./output.js";
import { StagingStore } from "./store.js";
import { conversationXml } from "./xml.js";
import { XsltTransform } from "./xslt.js";

export interface ComplianceOptions {
  stream: string;
  consumer: string;
  outputDir: string;
  archiveDir: string;
  adminToken: string;
  conversationIntervalMs: number;
  xslt?: { stylesheet: string; extension: string };
  eml?: EmlOptions;
  pickupRetentionMs: number;
  stagingBatchSize: number;
  stagingBatchDelayMs: number;
  /** How long exported ids are remembered against late redeliveries (default 7 days). */
  dedupWindowMs?: number;
}

export interface ComplianceDeps {
  pool: Pool;
  bus: Bus;
  clock: Clock;
  log: Logger;
}

export class ComplianceService {
  readonly services: BoundService[];
  readonly store: StagingStore;
  readonly exporter: Exporter;
  readonly output: OutputDir;
  private readonly collector: Collector;
  private readonly metrics: ComplianceMetrics = complianceMetrics();
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;

  private constructor(private readonly options: ComplianceOptions, private readonly deps: ComplianceDeps) {
    this.store = new StagingStore(deps.pool);
    this.output = new OutputDir(options.outputDir);
    const xslt = options.xslt ? { transform: new XsltTransform(options.xslt.stylesheet), extension: options.xslt.extension } : undefined;
    this.exporter = new Exporter(this.store, this.output, { archiveDir: options.archiveDir, xslt, eml: options.eml }, { clock: deps.clock, log: deps.log, metrics: this.metrics });
    this.collector = new Collector(
      deps.bus,
      this.store,
      { stream: options.stream, durable: options.consumer, batchSize: options.stagingBatchSize, batchDelayMs: options.stagingBatchDelayMs },
      { log: deps.log, metrics: this.metrics, now: () => deps.clock.now() },
    );
    this.services = [bind(ComplianceAdminService, "compliance-admin", this.adminHandlers(), adminAuthorizer(options.adminToken), deps.log)];
  }

  /** Applies the staging migrations and makes sure the stream exists. */
  static async create(options: ComplianceOptions, deps: ComplianceDeps): Promise<ComplianceService> {
    await migrate(deps.pool, "compliance", complianceMigrations);
    await deps.bus.ensureStream(complianceStream(options.stream).config);
    const service = new ComplianceService(options, deps);
    await service.output.init();
    return service;
  }

  async start(): Promise<void> {
    await this.checkStylesheet();
    await this.collector.start();
    // A batch a crash interrupted is finished first, before new records are claimed.
    if (await this.store.unfinishedBatch()) await this.exportNow().catch(() => undefined);
    const every = (ms: number, fn: () => Promise<unknown>) => {
      const t = setInterval(() => void fn().catch(() => undefined), ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.options.conversationIntervalMs, () => this.exportNow());
    every(Math.min(60_000, this.options.conversationIntervalMs), () => this.clean());
    every(5_000, () => this.status());
  }

  /** Cleans picked-up batches out of the output directory, then exports what is staged. */
  async exportNow() {
    await this.clean();
    return this.exporter.exportNow();
  }

  /** Removes picked-up and expired batches, and forgets old exported ids. */
  async clean(): Promise<string[]> {
    const now = this.deps.clock.now();
    try {
      const { batches } = await this.output.clean(now, this.options.pickupRetentionMs);
      if (batches.length) this.deps.log.info({ batches }, "removed batches from the output directory");
      await this.store.forgetExportedBefore(now - (this.options.dedupWindowMs ?? 7 * 86_400_000));
      return batches;
    } catch (err) {
      this.exporter.fail("cleanup", (err as Error).message, err);
      return [];
    }
  }

  /** Reports a broken stylesheet at start; exports go on without it. */
  private async checkStylesheet(): Promise<void> {
    if (!this.options.xslt) return;
    const sample = conversationXml(buildConversation(newBatchId(this.deps.clock.now()), "stylesheet-check", { participants: [] }, []).conversation);
    try {
      await new XsltTransform(this.options.xslt.stylesheet).check(sample);
    } catch (err) {
      this.exporter.fail("xslt", `${(err as Error).message}; the default XML export goes on without it`, err);
    }
  }

  async status(): Promise<ComplianceStatus> {
    const s = await this.store.status();
    const now = this.deps.clock.now();
    const oldestAge = s.oldestAtMs === null ? 0 : Math.max(0, (now - s.oldestAtMs) / 1000);
    const awaiting = await this.awaitingPickup();
    this.metrics.staged.set(s.staged);
    this.metrics.oldestAge.set(oldestAge);
    this.metrics.exportLag.set(Math.max(0, oldestAge - this.options.conversationIntervalMs / 1000));
    this.metrics.batchesAwaitingPickup.set(awaiting);
    if (s.lastExportAtMs !== null) this.metrics.lastExport.set(s.lastExportAtMs / 1000);
    return {
      stagedRecords: s.staged,
      oldestStagedAgeSeconds: oldestAge,
      lastExportAtMs: s.lastExportAtMs ?? 0,
      lastBatchId: s.lastBatchId,
      filesWritten: this.exporter.filesWritten,
      bytesWritten: this.exporter.bytesWritten,
      errors: this.exporter.errors,
      lastError: this.exporter.lastError,
      batchesAwaitingPickup: awaiting,
      conversationIntervalMs: this.options.conversationIntervalMs,
      outputDir: this.output.dir,
    };
  }

  private async awaitingPickup(): Promise<number> {
    let n = 0;
    for (const b of await this.output.batches()) if (!(await this.output.pickedUp(b))) n++;
    return n;
  }

  /** The compliance system took a batch: remove it now. */
  async acknowledgePickup(batchId: string): Promise<number> {
    if (!isBatchId(batchId)) throw new InvalidArgumentError(`batch_id '${batchId}' is not a batch id (like 20261122T081500123Z-1a2b3c4d)`);
    const removed = await this.output.removeBatch(batchId);
    if (removed === undefined) throw new NotFoundError(`batch '${batchId}' is not in the output directory (already removed, or never written)`);
    return removed;
  }

  private adminHandlers() {
    return {
      status: async (): Promise<ComplianceStatus> => this.status(),
      export: async (): Promise<ExportResultMessage> => {
        const r = await this.exportNow();
        return { batchId: r.batchId, conversations: r.conversations, records: r.records, files: r.files.map((f) => f.name) };
      },
      acknowledgePickup: async (req: AcknowledgePickupRequest): Promise<AcknowledgePickupResponse> => ({ filesRemoved: await this.acknowledgePickup(req.batchId) }),
    };
  }

  readiness(): ReadinessCheck {
    const database = databaseReadiness(this.deps.pool, "staging database");
    return async () => {
      if (this.stopping) return "shutting down";
      return database();
    };
  }

  /** Stops collecting (staging what was taken) and lets a running export finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    await this.collector.stop();
    await this.exporter.idle();
  }
}
