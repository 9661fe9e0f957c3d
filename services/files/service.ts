/**
 * A file instance assembled from its parts: HTTP route, shared storage,
 * the durable deletion consumer (shared by every instance: each queued
 * deletion is done once) and the retention job.
 *
 *   const files = await FilesService.create(options, { bus, clock, log });
 *   await startHttpServer({ port: 0, routes: [files.route], readiness: [files.readiness()], log });
 */
import type { Bus, Consumer } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { ComplianceLog } from "../common/compliance.js";
import { FILES_DELETE_SUBJECT, FILES_STREAM, FILES_STREAM_CONFIG, FileTokens } from "../common/file-tokens.js";
import type { ReadinessCheck, Route } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { Counter, metric } from "../common/metrics.js";
import { filesRoute } from "./http.js";
import { FileStorage } from "./storage.js";

export interface FilesOptions {
  instanceId: string;
  storageDir: string;
  fileTokenSecret: string;
  maxFileBytes: number;
  /** Files older than this are deleted (0 keeps them). */
  retentionMs: number;
  retentionIntervalMs: number;
  /** Compliance stream name (default PARLEY_CHAT_COMPLIANCE). */
  complianceStream?: string;
  /**
   * Where each upload is also linked for the compliance service (empty: no
   * compliance archiving). A later deletion of the file leaves this copy.
   */
  complianceArchiveDir?: string;
}

const removed = () =>
  metric("parley_files_removed_total", () => new Counter({ name: "parley_files_removed_total", help: "Files removed from storage", labelNames: ["reason"] }));

export class FilesService {
  readonly route: Route;
  readonly storage: FileStorage;
  private consumer: Consumer | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(private readonly options: FilesOptions, private readonly deps: { bus: Bus; clock: Clock; log: Logger }, compliance: ComplianceLog, storage: FileStorage) {
    this.storage = storage;
    this.route = filesRoute({ storage, tokens: new FileTokens(options.fileTokenSecret, deps.clock), compliance, clock: deps.clock, log: deps.log, maxFileBytes: options.maxFileBytes, complianceArchiveDir: options.complianceArchiveDir });
  }

  static async create(options: FilesOptions, deps: { bus: Bus; clock: Clock; log: Logger }): Promise<FilesService> {
    const storage = new FileStorage(options.storageDir);
    await storage.init();
    await deps.bus.ensureStream(FILES_STREAM_CONFIG);
    const compliance = await ComplianceLog.create(deps.bus, `files/${options.instanceId}`, options.complianceStream);
    return new FilesService(options, deps, compliance, storage);
  }

  async start(): Promise<void> {
    this.consumer = await this.deps.bus.consume({ stream: FILES_STREAM, durable: "parley-files-deleter", filterSubject: FILES_DELETE_SUBJECT }, async (m) => {
      const { roomId, fileId } = JSON.parse(new TextDecoder().decode(m.data)) as { roomId: string; fileId: string };
      try {
        if (await this.storage.remove(roomId, fileId)) removed().inc({ reason: "message-deleted" });
      } catch (err) {
        this.deps.log.warn({ err, roomId, fileId }, "dropping an invalid file deletion");
      }
      m.ack();
    });
    if (this.options.retentionMs > 0) {
      this.timer = setInterval(() => void this.purge(), this.options.retentionIntervalMs);
      this.timer.unref();
    }
  }

  async purge(): Promise<number> {
    const n = await this.storage.purgeOlderThan(this.deps.clock.now() - this.options.retentionMs);
    if (n) removed().inc({ reason: "retention" }, n);
    return n;
  }

  readiness(): ReadinessCheck {
    return async () => {
      try {
        await this.storage.init();
        return undefined;
      } catch (err) {
        return `storage directory not writable: ${(err as Error).message}`;
      }
    };
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.consumer?.stop();
  }
}
