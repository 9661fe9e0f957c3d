/**
 * The export job: every conversation interval (or on request), claims what
 * is staged as one batch, writes each conversation's files into the output
 * directory, then the manifest, and only then clears the batch from staging.
 * A batch interrupted by a crash is found `writing` at the next run and
 * written again whole under the same id; its files are overwritten
 * atomically, so the directory ends up with each record exactly once.
 *
 * A failing XSLT or EML adapter is counted and reported in the status, and
 * never stops the default XML export.
 */
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "../common/clock.js";
import { FILE_ID, ROOM_ID } from "../common/file-tokens.js";
import type { Logger } from "../common/log.js";
import { buildConversation, type Conversation } from "./conversation.js";
import { emlMessage, type EmlAttachment, type EmlOptions } from "./eml.js";
import type { ComplianceMetrics } from "./metrics.js";
import { newBatchId, OutputDir, safeName, type OutputFile } from "./output.js";
import type { ConversationState, StagingStore } from "./store.js";
import { conversationXml, type ArchivedNames } from "./xml.js";
import type { XsltTransform } from "./xslt.js";

export interface ExportOptions {
  /** Where the file service links uploads for us (empty: attachments are not archived). */
  archiveDir: string;
  xslt?: { transform: XsltTransform; extension: string };
  eml?: EmlOptions;
}

export interface ExportResult {
  batchId: string;
  conversations: number;
  records: number;
  files: OutputFile[];
}

const EMPTY: ExportResult = { batchId: "", conversations: 0, records: 0, files: [] };

/**
 * Conversations written at once. Each is mostly waiting (its queries, the
 * fsync of each file, xsltproc): a few at a time overlap the waits (see
 * bench/compliance), and keep memory to a few conversations.
 */
const CONVERSATIONS_AT_ONCE = 4;

/**
 * fn over items, at most `limit` at a time; results in the items' order.
 * After a failure no new item starts, and it rejects once the running ones
 * have settled (nothing of the batch is still being written after a failed run).
 */
async function inOrder<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
  return out;
}

export class Exporter {
  private running: Promise<ExportResult> | undefined;
  lastError = "";
  errors = 0;
  filesWritten = 0;
  bytesWritten = 0;

  constructor(
    private readonly store: StagingStore,
    readonly output: OutputDir,
    private readonly options: ExportOptions,
    private readonly deps: { clock: Clock; log: Logger; metrics: ComplianceMetrics },
  ) {}

  /** One export at a time; a call during a running export waits for it and then runs. */
  exportNow(): Promise<ExportResult> {
    const prev = this.running ?? Promise.resolve(undefined);
    const next = prev.catch(() => undefined).then(async () => (await this.store.withExportLock(() => this.run())) ?? EMPTY);
    this.running = next;
    return next;
  }

  /** Waits for a running export (used on shutdown). */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  fail(stage: string, message: string, err?: unknown): void {
    this.errors++;
    this.lastError = `${stage}: ${message}`;
    this.deps.metrics.errors.inc({ stage });
    this.deps.log.error({ err, stage }, message);
  }

  private async run(): Promise<ExportResult> {
    const started = process.hrtime.bigint();
    const now = this.deps.clock.now();
    const resumed = await this.store.unfinishedBatch();
    const batchId = resumed ?? (await this.store.openBatch(newBatchId(now), now));
    if (!batchId) return EMPTY;
    if (resumed) this.deps.log.warn({ batchId }, "writing again a batch an earlier run left unfinished");
    await this.output.init();

    const files: OutputFile[] = [];
    const endStates = new Map<string, ConversationState>();
    const archivedPaths: string[] = [];
    let records = 0;
    try {
      const rooms = await this.store.batchRooms(batchId);
      const written = await inOrder(rooms, CONVERSATIONS_AT_ONCE, async (roomId) => {
        const { records: staged, before } = await this.store.conversation(batchId, roomId);
        const { conversation, after } = buildConversation(batchId, roomId, before, staged);
        return { roomId, after, records: staged.length, files: await this.writeConversation(conversation, archivedPaths) };
      });
      for (const w of written) {
        records += w.records;
        endStates.set(w.roomId, w.after);
        files.push(...w.files);
      }
      files.push(await this.output.writeManifest(batchId, files, this.deps.clock.now()));
    } catch (err) {
      this.fail("export", `batch ${batchId} could not be written; it stays staged and is written again at the next run: ${(err as Error).message}`, err);
      throw err;
    }
    const bytes = files.reduce((n, f) => n + f.bytes, 0);
    await this.store.finishBatch(batchId, endStates, { conversations: endStates.size, records, files: files.length, bytes }, this.deps.clock.now());
    // The archived copies are in the output directory now.
    for (const p of archivedPaths) await rm(p, { force: true });

    for (const f of files) this.deps.metrics.files.inc({ kind: f.kind });
    this.deps.metrics.bytes.inc(bytes);
    this.filesWritten += files.length;
    this.bytesWritten += bytes;
    this.deps.metrics.lastExport.set(this.deps.clock.now() / 1000);
    this.deps.metrics.exportSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.deps.log.info({ batchId, conversations: endStates.size, records, files: files.length, bytes }, "batch exported");
    return { batchId, conversations: endStates.size, records, files };
  }

  private async writeConversation(c: Conversation, archivedPaths: string[]): Promise<OutputFile[]> {
    const out: OutputFile[] = [];
    const prefix = `${c.batchId}_${c.roomId}`;
    const archived: ArchivedNames = new Map();
    const attachments: EmlAttachment[] = [];
    for (const e of c.events) {
      if (e.kind !== "file.uploaded" || !e.file) continue;
      const src = this.archivedPath(c.roomId, e.file.fileId);
      if (!src || !(await stat(src).then((s) => s.isFile(), () => false))) {
        if (this.options.archiveDir) this.fail("attachment", `file ${e.file.fileId} of room ${c.roomId} is not in the archive area ${this.options.archiveDir}`);
        continue;
      }
      const name = `${prefix}_${e.file.fileId}_${safeName(e.file.name)}`;
      out.push(await this.output.copy(src, name, { kind: "attachment", room: c.roomId }));
      archived.set(e.file.fileId, name);
      archivedPaths.push(src);
      attachments.push({ fileId: e.file.fileId, name: e.file.name, contentType: e.file.contentType, path: join(this.output.dir, name) });
    }
    const xml = conversationXml(c, archived);
    out.push(await this.output.write(`${prefix}.xml`, xml, { kind: "xml", room: c.roomId }));
    if (this.options.xslt) {
      try {
        const result = await this.options.xslt.transform.apply(xml);
        out.push(await this.output.write(`${prefix}.xslt.${this.options.xslt.extension}`, result, { kind: "xslt", room: c.roomId }));
      } catch (err) {
        this.fail("xslt", `room ${c.roomId}: ${(err as Error).message}`, err);
      }
    }
    if (this.options.eml) {
      try {
        out.push(await this.output.write(`${prefix}.eml`, emlMessage(c, xml, attachments, this.options.eml), { kind: "eml", room: c.roomId }));
      } catch (err) {
        this.fail("eml", `room ${c.roomId}: ${(err as Error).message}`, err);
      }
    }
    return out;
  }

  private archivedPath(roomId: string, fileId: string): string | undefined {
    if (!this.options.archiveDir || !FILE_ID.test(fileId) || !ROOM_ID.test(roomId)) return undefined;
    return join(this.options.archiveDir, roomId, fileId);
  }
}
