/**
 * Attachments: ask the channel for a token in-band, then stream the bytes to
 * or from the file service over HTTP (never the whole file in memory).
 *
 *   const att = await uploadFile(chat, "general", "./report.pdf");
 *   await chat.post("general", "the report", { attachments: [att] });
 *   await downloadFile(chat, "general", att.fileId, "./copy.pdf");
 */
import { createReadStream, createWriteStream } from "node:fs";
import { rename, stat } from "node:fs/promises";
import { basename, extname } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Attachment } from "../generated/parley/v1/chat.js";
import type { ChatClient } from "./chat.js";

const TYPES: Record<string, string> = {
  ".txt": "text/plain", ".csv": "text/csv", ".json": "application/json", ".pdf": "application/pdf", ".zip": "application/zip",
  ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
  ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".mp4": "video/mp4", ".webm": "video/webm",
};

export class FileTransferError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "FileTransferError";
  }
}

function baseUrl(urls: string[], override?: string): string {
  const url = override ?? urls[0];
  if (!url) throw new FileTransferError(0, "the channel names no file service URL; pass one (--files-url or PARLEY_FILES_URL)");
  return url.replace(/\/+$/, "");
}

/** Uploads a file into a room; returns the attachment to post with a message. */
export async function uploadFile(chat: ChatClient, roomId: string, path: string, opts: { contentType?: string; filesUrl?: string } = {}): Promise<Attachment> {
  const { size } = await stat(path);
  const name = basename(path);
  const contentType = opts.contentType ?? TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
  const t = await chat.uploadToken(roomId, name, contentType, size);
  const res = await fetch(`${baseUrl(t.fileServiceUrls, opts.filesUrl)}${t.path}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${t.token}`, "content-type": contentType, "content-length": String(size), "x-parley-filename": encodeURIComponent(name) },
    body: Readable.toWeb(createReadStream(path)) as ReadableStream,
    duplex: "half",
  } as RequestInit);
  if (res.status !== 201) throw new FileTransferError(res.status, `upload refused (${res.status}): ${(await res.text()).trim()}`);
  const r = (await res.json()) as { fileId: string; name: string; contentType: string; size: number; sha256: string };
  return { fileId: r.fileId, name: r.name, contentType: r.contentType, size: r.size, sha256: r.sha256 };
}

/** Downloads a room's file to outPath (written beside it, then renamed). */
export async function downloadFile(chat: ChatClient, roomId: string, fileId: string, outPath: string, opts: { filesUrl?: string } = {}): Promise<{ bytes: number; sha256: string; name: string }> {
  const t = await chat.downloadToken(roomId, fileId);
  const res = await fetch(`${baseUrl(t.fileServiceUrls, opts.filesUrl)}${t.path}`, { headers: { authorization: `Bearer ${t.token}` } });
  if (res.status !== 200 || !res.body) throw new FileTransferError(res.status, `download refused (${res.status}): ${(await res.text()).trim()}`);
  const tmp = `${outPath}.part`;
  await pipeline(Readable.fromWeb(res.body as never), createWriteStream(tmp));
  await rename(tmp, outPath);
  const name = /filename\*=UTF-8''([^;]+)/.exec(res.headers.get("content-disposition") ?? "")?.[1];
  return { bytes: (await stat(outPath)).size, sha256: res.headers.get("x-parley-sha256") ?? "", name: name ? decodeURIComponent(name) : fileId };
}
