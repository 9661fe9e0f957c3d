/**
 * The output directory the compliance system picks batches up from.
 *
 *   <batch>_<room>.xml              default export (one per conversation)
 *   <batch>_<room>.xslt.<ext>       the customer's XSLT output, when configured
 *   <batch>_<room>.eml              the mail adapter, when enabled
 *   <batch>_<room>_<file>_<name>    archived attachments
 *   <batch>.manifest.json           written last: the batch is complete; SHA-256 of every file
 *   <batch>.picked-up               written by the compliance system: remove the batch
 *
 * Batch ids start with the UTC time (20261122T081500123Z-1a2b3c4d), so names
 * sort by time and never collide. Every file is written under a dot-name,
 * fsynced, renamed into place, and the directory fsynced: a reader never sees
 * a partial file, and a crash leaves at most a stale dot-file (removed later).
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join, resolve } from "node:path";

export interface OutputFile {
  name: string;
  sha256: string;
  bytes: number;
  /** xml | xslt | eml | attachment */
  kind: string;
  room: string;
}

export interface Manifest {
  batch: string;
  createdAt: string;
  files: OutputFile[];
}

export const manifestName = (batch: string) => `${batch}.manifest.json`;
export const pickupMarker = (batch: string) => `${batch}.picked-up`;
const BATCH_ID = /^\d{8}T\d{9}Z-[0-9a-f]{8}$/;
export const isBatchId = (s: string) => BATCH_ID.test(s);

/** 20261122T081500123Z-1a2b3c4d */
export function newBatchId(nowMs: number): string {
  return new Date(nowMs).toISOString().replace(/[-:.]/g, "") + "-" + randomBytes(4).toString("hex");
}

/** A name safe on any file system and in a URL: ASCII letters, digits, dot, dash, underscore. */
export const safeName = (s: string, max = 64) => s.normalize("NFKD").replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "").slice(0, max) || "file";

type Chunks = string | Uint8Array | AsyncIterable<string | Uint8Array>;

export class OutputDir {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Writes name atomically and durably; returns its size and SHA-256. */
  async write(name: string, content: Chunks, meta: { kind: string; room: string }): Promise<OutputFile> {
    const tmp = join(this.dir, `.${name}.${randomBytes(4).toString("hex")}.tmp`);
    const hash = createHash("sha256");
    let bytes = 0;
    const fh = await open(tmp, "wx", 0o640);
    try {
      const put = async (c: string | Uint8Array) => {
        const buf = typeof c === "string" ? Buffer.from(c, "utf8") : c;
        hash.update(buf);
        bytes += buf.length;
        await fh.write(buf);
      };
      if (typeof content === "string" || content instanceof Uint8Array) await put(content);
      else for await (const c of content) await put(c);
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    await rename(tmp, join(this.dir, name));
    return { name, sha256: hash.digest("hex"), bytes, ...meta };
  }

  /** Copies a file in (streaming), atomically. */
  copy(src: string, name: string, meta: { kind: string; room: string }): Promise<OutputFile> {
    return this.write(name, createReadStream(src), meta);
  }

  /** Makes the renames so far durable. */
  async syncDir(): Promise<void> {
    const fh = await open(this.dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async writeManifest(batch: string, files: OutputFile[], nowMs: number): Promise<OutputFile> {
    await this.syncDir();
    const m: Manifest = { batch, createdAt: new Date(nowMs).toISOString(), files };
    const f = await this.write(manifestName(batch), JSON.stringify(m, null, 2) + "\n", { kind: "manifest", room: "" });
    await this.syncDir();
    return f;
  }

  /** Batches in the directory (those with a manifest), oldest first. */
  async batches(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith(".manifest.json")).map((n) => n.slice(0, -".manifest.json".length)).filter((b) => BATCH_ID.test(b)).sort();
  }

  async pickedUp(batch: string): Promise<boolean> {
    return stat(join(this.dir, pickupMarker(batch))).then(() => true, () => false);
  }

  /**
   * Removes a batch's files, its marker, and its manifest last. Returns how
   * many files went; undefined when the batch is not here (no manifest).
   */
  async removeBatch(batch: string): Promise<number | undefined> {
    if (!BATCH_ID.test(batch)) throw new Error(`'${batch}' is not a batch id`);
    let removed = 0;
    const manifest = join(this.dir, manifestName(batch));
    const listed = await readFile(manifest, "utf8").then((t) => (JSON.parse(t) as Manifest).files.map((f) => f.name), () => null);
    if (listed === null) return undefined;
    const names = new Set(listed);
    for (const n of await readdir(this.dir)) if (n.startsWith(`${batch}_`)) names.add(n);
    for (const n of names) {
      await rm(join(this.dir, n), { force: true });
      removed++;
    }
    await rm(join(this.dir, pickupMarker(batch)), { force: true });
    await rm(manifest, { force: true });
    return removed;
  }

  /**
   * Pickup cleaning: batches marked picked up, and batches older than the
   * retention (by the time in their id), go; so do temp files left by a crash.
   */
  async clean(nowMs: number, retentionMs: number): Promise<{ batches: string[] }> {
    const gone: string[] = [];
    for (const b of await this.batches()) {
      const expired = retentionMs > 0 && batchTimeMs(b) < nowMs - retentionMs;
      if (expired || (await this.pickedUp(b))) {
        await this.removeBatch(b);
        gone.push(b);
      }
    }
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      if (!n.startsWith(".") || !n.endsWith(".tmp")) continue;
      const s = await stat(join(this.dir, n)).catch(() => undefined);
      if (s && s.mtimeMs < nowMs - 3_600_000) await rm(join(this.dir, n), { force: true });
    }
    return { batches: gone };
  }
}

export function batchTimeMs(batch: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z/.exec(batch);
  if (!m) return NaN;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!);
}
