/**
 * Errors a service raises on purpose. Each carries its gRPC status; the one
 * mapping to the wire lives in grpc.ts (toServiceError) and, for HTTP, in
 * httpStatusOf below.
 */
import { status } from "@grpc/grpc-js";

export class ParleyError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends ParleyError {
  constructor(message: string) {
    super(status.INVALID_ARGUMENT, message);
  }
}

export class NotFoundError extends ParleyError {
  constructor(message: string) {
    super(status.NOT_FOUND, message);
  }
}

export class AlreadyExistsError extends ParleyError {
  constructor(message: string) {
    super(status.ALREADY_EXISTS, message);
  }
}

export class UnauthenticatedError extends ParleyError {
  constructor(message: string) {
    super(status.UNAUTHENTICATED, message);
  }
}

export class PermissionDeniedError extends ParleyError {
  constructor(message: string) {
    super(status.PERMISSION_DENIED, message);
  }
}

export class ResourceExhaustedError extends ParleyError {
  constructor(message: string) {
    super(status.RESOURCE_EXHAUSTED, message);
  }
}

export class FailedPreconditionError extends ParleyError {
  constructor(message: string) {
    super(status.FAILED_PRECONDITION, message);
  }
}

export class OutOfRangeError extends ParleyError {
  constructor(message: string) {
    super(status.OUT_OF_RANGE, message);
  }
}

export class UnavailableError extends ParleyError {
  constructor(message: string) {
    super(status.UNAVAILABLE, message);
  }
}

const HTTP_STATUS: Partial<Record<status, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.OUT_OF_RANGE]: 400,
  [status.UNAUTHENTICATED]: 401,
  [status.PERMISSION_DENIED]: 403,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.FAILED_PRECONDITION]: 409,
  [status.RESOURCE_EXHAUSTED]: 413,
  [status.UNAVAILABLE]: 503,
};

export function httpStatusOf(err: unknown): number {
  return err instanceof ParleyError ? (HTTP_STATUS[err.code] ?? 500) : 500;
}
