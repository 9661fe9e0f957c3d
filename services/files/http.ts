/**
 * The file service's HTTP API, mounted on the service's HTTP server:
 *
 *   PUT  /v1/files/<room>/<file>   upload (body = bytes; Content-Type; X-Parley-Filename)
 *   GET  /v1/files/<room>/<file>   download (Range: bytes=a-b supported); HEAD too
 *
 * Each request carries the channel-issued token (Authorization: Bearer ft1…
 * or ?token=). Stored files are always served as attachments with nosniff
 * and a sandboxing CSP, with a content type from a fixed allowlist — never
 * as HTML.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { ComplianceLog } from "../common/compliance.js";
import { httpStatusOf, InvalidArgumentError, OutOfRangeError, ParleyError, UnauthenticatedError } from "../common/errors.js";
import type { FileTokens } from "../common/file-tokens.js";
import type { Route } from "../common/http.js";
import type { Logger } from "../common/log.js";
import type { Clock } from "../common/clock.js";
import type { FileStorage } from "./storage.js";

/** Types served as themselves; anything else is stored as application/octet-stream. */
export const ALLOWED_TYPES = new Set([
  "application/octet-stream", "application/pdf", "application/zip", "application/json",
  "image/png", "image/jpeg", "image/gif", "image/webp",
  "text/plain", "text/csv", "audio/mpeg", "audio/ogg", "video/mp4", "video/webm",
]);

export function safeContentType(raw: string | undefined): string {
  const t = (raw ?? "").split(";")[0]!.trim().toLowerCase();
  return ALLOWED_TYPES.has(t) ? t : "application/octet-stream";
}

/** A name safe to show and to put in a header: no path, no control characters, no quotes. */
export function safeFilename(raw: string | undefined): string {
  let name = "";
  try {
    name = decodeURIComponent(raw ?? "");
  } catch {
    name = raw ?? "";
  }
  name = name.split(/[\\/]/).pop()!.replace(/[\x00-\x1f\x7f"]/g, "").replace(/^\.+/, "").trim().slice(0, 200);
  return name || "file";
}

function disposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, "_").replace(/[\\%]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) throw new InvalidArgumentError("only one byte range (bytes=a-b) is supported");
  let start: number;
  let end: number;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) throw new OutOfRangeError(`range not satisfiable: the file has ${size} bytes`);
  return { start, end };
}

export interface FilesDeps {
  storage: FileStorage;
  tokens: FileTokens;
  compliance: ComplianceLog;
  clock: Clock;
  log: Logger;
  maxFileBytes: number;
  complianceArchiveDir?: string;
}

const PATH = /^\/v1\/files\/([^/]*)\/([^/]*)$/;

export function filesRoute(deps: FilesDeps): Route {
  return async (req, res, url) => {
    if (!url.pathname.startsWith("/v1/files/")) return false;
    try {
      await handle(deps, req, res, url);
    } catch (err) {
      if (!(err instanceof ParleyError)) deps.log.error({ err, path: url.pathname }, "file request failed");
      const code = err instanceof OutOfRangeError ? 416 : httpStatusOf(err);
      if (res.headersSent) {
        res.destroy();
        return true;
      }
      res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff", ...(code === 401 ? { "www-authenticate": "Bearer" } : {}) });
      res.end(`${err instanceof ParleyError ? err.message : "internal error"}\n`);
      // An upload refused early leaves a body we do not want to read.
      if (req.method === "PUT" && !req.complete) req.resume();
    }
    return true;
  };
}

async function handle(deps: FilesDeps, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const m = PATH.exec(url.pathname);
  if (!m) throw new InvalidArgumentError("the path must be /v1/files/<room>/<file>");
  let roomId: string;
  let fileId: string;
  try {
    roomId = decodeURIComponent(m[1]!);
    fileId = decodeURIComponent(m[2]!);
  } catch {
    throw new InvalidArgumentError("the path is not valid percent-encoding");
  }
  deps.storage.path(roomId, fileId); // 400 for anything that is not an id, before looking at the token
  const auth = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? url.searchParams.get("token");
  if (!auth) throw new UnauthenticatedError("a file token is required (Authorization: Bearer … or ?token=)");
  if (req.method === "PUT") {
    const claims = deps.tokens.verify(auth, { op: "upload", room: roomId, file: fileId });
    const limit = Math.min(claims.maxBytes ?? deps.maxFileBytes, deps.maxFileBytes);
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > limit) throw new ParleyError(8 /* RESOURCE_EXHAUSTED */, `the file is larger than the ${limit}-byte limit`);
    const stored = await deps.storage.write(
      { roomId, fileId, name: safeFilename(req.headers["x-parley-filename"] as string | undefined), contentType: safeContentType(req.headers["content-type"]), uploadedBy: claims.sub, uploadedAtMs: deps.clock.now() },
      req,
      limit,
    );
    try {
      if (deps.complianceArchiveDir) await deps.storage.archive(roomId, fileId, deps.complianceArchiveDir);
      await deps.compliance.record(
        { kind: "file.uploaded", roomId, actor: claims.sub, atMs: stored.uploadedAtMs, file: { fileId, name: stored.name, contentType: stored.contentType, size: stored.size, sha256: stored.sha256, uploadedBy: claims.sub } },
        `file:${roomId}:${fileId}`,
      );
    } catch (err) {
      // Not acknowledged, so not kept: the client's retry of the same id can succeed.
      await deps.storage.remove(roomId, fileId);
      throw err;
    }
    res.writeHead(201, { "content-type": "application/json" });
    res.end(JSON.stringify({ fileId, name: stored.name, contentType: stored.contentType, size: stored.size, sha256: stored.sha256 }));
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD, PUT", "content-type": "text/plain; charset=utf-8" });
    res.end("method not allowed\n");
    return;
  }
  deps.tokens.verify(auth, { op: "download", room: roomId, file: fileId });
  const meta = await deps.storage.meta(roomId, fileId);
  const range = parseRange(req.headers.range, meta.size);
  const headers: Record<string, string | number> = {
    "content-type": meta.contentType === "text/plain" || meta.contentType === "text/csv" ? `${meta.contentType}; charset=utf-8` : safeContentType(meta.contentType),
    "content-disposition": disposition(meta.name),
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
    "cache-control": "private, no-store",
    "accept-ranges": "bytes",
    etag: `"${meta.sha256}"`,
    "x-parley-sha256": meta.sha256,
    "content-length": range ? range.end - range.start + 1 : meta.size,
  };
  if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${meta.size}`;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === "HEAD" || meta.size === 0) return void res.end();
  await pipeline(deps.storage.read(roomId, fileId, range), res);
}
