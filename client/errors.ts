/** Client-side errors: one class, with the gRPC status name and the relay's message. */
import { status, type ServiceError } from "@grpc/grpc-js";

export class ParleyClientError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = "ParleyClientError";
  }

  get codeName(): string {
    return status[this.code] ?? String(this.code);
  }
}

export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === "object" && err !== null && "code" in err && "details" in err;
}

export function fromServiceError(err: unknown): Error {
  if (err instanceof ParleyClientError || !isServiceError(err)) return err as Error;
  return new ParleyClientError(err.code, err.details || err.message);
}

/** The session token expired: sign in again and retry, on the same instance. */
export function isExpiredSession(err: unknown): boolean {
  return err instanceof ParleyClientError && err.code === status.UNAUTHENTICATED && /expired/.test(err.message);
}

/** Transient: the call may succeed on retry or on another instance. */
export function isRetryable(err: unknown): boolean {
  const code = err instanceof ParleyClientError ? err.code : isServiceError(err) ? err.code : undefined;
  return code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED || code === status.CANCELLED || code === status.INTERNAL || code === status.UNKNOWN;
}
