/**
 * File tokens: the channel service issues them in-band to a room member; the
 * file service checks them without a database round trip. HMAC-SHA256 with a
 * secret both services are configured with; scoped to one room, one file and
 * one operation; valid for minutes.
 *
 *   ft1.<base64url(JSON claims)>.<base64url(HMAC)>
 *
 *   const t = new FileTokens(secret, clock).issue({ op: "upload", room: "general", file: id, sub: "alice", maxBytes: 1e6 }, 300_000);
 *   new FileTokens(secret, clock).verify(t, { op: "upload", room: "general", file: id });  // claims, or throws
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Clock } from "./clock.js";
import { PermissionDeniedError, UnauthenticatedError } from "./errors.js";

/** Room and file ids as every service accepts them (room ids are also NATS subject tokens). */
export const ROOM_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const FILE_ID = /^[A-Za-z0-9_-]{16,64}$/;

/** Files to remove from shared storage (message deleted): a JetStream work queue the file service consumes. */
export const FILES_STREAM = "PARLEY_FILES";
export const FILES_DELETE_SUBJECT = "parley.files.delete";
export const FILES_STREAM_CONFIG = { name: FILES_STREAM, subjects: [FILES_DELETE_SUBJECT], maxAgeMs: 30 * 86_400_000 };

export type FileOperation = "upload" | "download";

export interface FileTokenClaims {
  op: FileOperation;
  room: string;
  file: string;
  /** The user it was issued to (recorded with uploads). */
  sub: string;
  /** Upload only: the most bytes the upload may hold. */
  maxBytes?: number;
  exp: number;
}

const PREFIX = "ft1";

export class FileTokens {
  private readonly key: Buffer;

  constructor(secret: string, private readonly clock: Clock) {
    if (Buffer.byteLength(secret) < 16) throw new Error("the file token secret must be at least 16 bytes");
    this.key = Buffer.from(secret);
  }

  issue(claims: Omit<FileTokenClaims, "exp">, ttlMs: number): { token: string; expiresAtMs: number } {
    const exp = this.clock.now() + ttlMs;
    const payload = Buffer.from(JSON.stringify({ ...claims, exp })).toString("base64url");
    return { token: `${PREFIX}.${payload}.${this.mac(payload)}`, expiresAtMs: exp };
  }

  /**
   * The claims, when the token is genuine, unexpired and scoped to exactly
   * this operation, room and file. UNAUTHENTICATED for a malformed, forged or
   * expired token; PERMISSION_DENIED for a genuine token used out of scope.
   */
  verify(token: string, scope: { op: FileOperation; room: string; file: string }): FileTokenClaims {
    const parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== PREFIX) throw new UnauthenticatedError("malformed file token");
    const [, payload, mac] = parts as [string, string, string];
    const expected = Buffer.from(this.mac(payload));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new UnauthenticatedError("file token signature is not valid");
    let claims: FileTokenClaims;
    try {
      claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as FileTokenClaims;
    } catch {
      throw new UnauthenticatedError("malformed file token");
    }
    if (typeof claims.exp !== "number" || claims.exp <= this.clock.now()) throw new UnauthenticatedError("file token expired; ask the channel for a new one");
    if (claims.op !== scope.op) throw new PermissionDeniedError(`this token allows ${claims.op}, not ${scope.op}`);
    if (claims.room !== scope.room) throw new PermissionDeniedError(`this token is for room '${claims.room}', not '${scope.room}'`);
    if (claims.file !== scope.file) throw new PermissionDeniedError("this token is for another file");
    return claims;
  }

  private mac(payload: string): string {
    return createHmac("sha256", this.key).update(`parley.v1.file-token\n${payload}`).digest("base64url");
  }
}
