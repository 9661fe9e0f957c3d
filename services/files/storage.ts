/**
 * Attachments on a directory shared by every file instance (an RWX volume).
 * Paths are built only from validated room and file ids and checked to stay
 * inside the directory, so no request can name another path. Uploads stream
 * to a temporary file while being hashed and counted, and appear under their
 * final name atomically (link, which refuses to overwrite).
 *
 *   <dir>/objects/<room>/<file>            the bytes
 *   <dir>/objects/<room>/<file>.meta.json  name, type, size, sha256, uploader, time
 *   <dir>/tmp/                             uploads in progress
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, ResourceExhaustedError } from "../common/errors.js";
import { FILE_ID, ROOM_ID } from "../common/file-tokens.js";


export interface StoredFile {
  roomId: string;
  fileId: string;
  name: string;
  contentType: string;
  size: number;
  sha256: string;
  uploadedBy: string;
  uploadedAtMs: number;
}

export class FileStorage {
  readonly root: string;

  constructor(dir: string) {
    this.root = resolve(dir);
  }

  async init(): Promise<void> {
    await mkdir(join(this.root, "objects"), { recursive: true });
    await mkdir(join(this.root, "tmp"), { recursive: true });
  }

  /** The object path; refuses ids that are not ids (no '..', '/', NUL …). */
  path(roomId: string, fileId: string): string {
    if (!ROOM_ID.test(roomId)) throw new InvalidArgumentError("the room id in the path is not a valid room id");
    if (!FILE_ID.test(fileId)) throw new InvalidArgumentError("the file id in the path is not a valid file id");
    const p = resolve(this.root, "objects", roomId, fileId);
    if (!p.startsWith(this.root + sep)) throw new InvalidArgumentError("the path leaves the storage directory");
    return p;
  }

  /** Streams body to storage; never holds the whole file in memory. */
  async write(meta: Omit<StoredFile, "size" | "sha256">, body: Readable, maxBytes: number): Promise<StoredFile> {
    const final = this.path(meta.roomId, meta.fileId);
    if (await exists(final)) throw new AlreadyExistsError(`file '${meta.fileId}' was already uploaded`);
    const tmp = join(this.root, "tmp", randomUUID());
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) return done(new ResourceExhaustedError(`the file is larger than the ${maxBytes}-byte limit`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(tmp, { flags: "wx", mode: 0o640 }));
      const stored: StoredFile = { ...meta, size, sha256: hash.digest("hex") };
      await mkdir(join(this.root, "objects", meta.roomId), { recursive: true });
      // link refuses to overwrite: of two racing uploads of one id, one wins.
      await link(tmp, final).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "EEXIST") throw new AlreadyExistsError(`file '${meta.fileId}' was already uploaded`);
        throw err;
      });
      await writeFile(`${tmp}.meta`, JSON.stringify(stored), { mode: 0o640 });
      await rename(`${tmp}.meta`, `${final}.meta.json`);
      return stored;
    } finally {
      await rm(tmp, { force: true });
      await rm(`${tmp}.meta`, { force: true });
    }
  }

  async meta(roomId: string, fileId: string): Promise<StoredFile> {
    const p = this.path(roomId, fileId);
    try {
      if (!(await exists(p))) throw new Error("missing");
      return JSON.parse(await readFile(`${p}.meta.json`, "utf8")) as StoredFile;
    } catch {
      throw new NotFoundError(`file '${fileId}' does not exist in room '${roomId}'`);
    }
  }

  read(roomId: string, fileId: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.path(roomId, fileId), range ? { start: range.start, end: range.end } : {});
  }

  /**
   * Links (or, across file systems, copies) a stored file into the compliance
   * archive area as <archiveDir>/<room>/<file>, durably, before its upload
   * event is recorded: the compliance service exports it from there, so a
   * later deletion of the file does not take the archived copy with it.
   */
  async archive(roomId: string, fileId: string, archiveDir: string): Promise<void> {
    const src = this.path(roomId, fileId);
    const dir = join(resolve(archiveDir), roomId);
    await mkdir(dir, { recursive: true });
    const dest = join(dir, fileId);
    try {
      await link(src, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return;
      if (code !== "EXDEV" && code !== "EPERM") throw err;
      const tmp = join(dir, `.${fileId}.${randomUUID()}.tmp`);
      await copyFile(src, tmp);
      await fsyncPath(tmp);
      await rename(tmp, dest);
    }
    await fsyncPath(dir);
  }

  /** Removes a file; false when it was not there. */
  async remove(roomId: string, fileId: string): Promise<boolean> {
    const p = this.path(roomId, fileId);
    const had = await exists(p);
    await unlink(p).catch(() => undefined);
    await unlink(`${p}.meta.json`).catch(() => undefined);
    return had;
  }

  /** Deletes files uploaded before cutoff; returns how many. */
  async purgeOlderThan(cutoffMs: number): Promise<number> {
    let n = 0;
    const objects = join(this.root, "objects");
    for (const room of await readdir(objects).catch(() => [] as string[])) {
      if (!ROOM_ID.test(room)) continue;
      for (const f of await readdir(join(objects, room)).catch(() => [] as string[])) {
        if (!f.endsWith(".meta.json")) continue;
        const fileId = f.slice(0, -".meta.json".length);
        const meta = await this.meta(room, fileId).catch(() => undefined);
        const uploadedAt = meta?.uploadedAtMs ?? (await stat(join(objects, room, f)).then((s) => s.mtimeMs, () => Infinity));
        if (uploadedAt < cutoffMs && (await this.remove(room, fileId))) n++;
      }
    }
    return n;
  }
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}
