/**
 * gRPC server helpers: one wrapper turns a service's plain async handlers
 * into grpc-js handlers that authenticate the caller, continue the caller's
 * trace, record metrics and map errors to statuses in one place.
 *
 *   const server = await startGrpcServer({ port: 50051, services: [bind(RelayService, "relay", impl, auth)] });
 */
import * as grpc from "@grpc/grpc-js";
import type { Context } from "@opentelemetry/api";
import { timingSafeEqual } from "node:crypto";
import { InvalidArgumentError, ParleyError, UnauthenticatedError } from "./errors.js";
import type { Logger } from "./log.js";
import { Counter, Histogram, LATENCY_BUCKETS, metric } from "./metrics.js";
import type { SessionClaims, TokenVerifier } from "./tokens.js";
import { extractContext, withSpan } from "./tracing.js";

export interface CallContext {
  /** Set for methods that require a session. */
  session: SessionClaims | undefined;
  metadata: grpc.Metadata;
  trace: Context;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
}

export type UnaryHandler<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>;
export type StreamHandler<Req, Res> = (req: Req, ctx: CallContext, stream: grpc.ServerWritableStream<Req, Res>) => Promise<void>;
/**
 * Bidirectional streams: the handler reads commands from the stream (each
 * may be a malformed one; check with malformedReason) and writes events.
 */
export type DuplexHandler<Req, Res> = (ctx: CallContext, stream: grpc.ServerDuplexStream<Req, Res>) => Promise<void>;

/** Decides who may call a method; returns the session (or undefined for public/admin). */
export type Authorizer = (method: string, metadata: grpc.Metadata) => SessionClaims | undefined;

const handled = () =>
  metric("parley_grpc_server_handled_total", () => new Counter({ name: "parley_grpc_server_handled_total", help: "RPCs completed, by method and status code", labelNames: ["service", "method", "code"] }));
const handling = () =>
  metric("parley_grpc_server_handling_seconds", () => new Histogram({ name: "parley_grpc_server_handling_seconds", help: "RPC handling time", labelNames: ["service", "method"], buckets: LATENCY_BUCKETS }));

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof ParleyError) return { code: err.code, details: err.message };
  return { code: grpc.status.INTERNAL, details: "internal error" };
}

function bearer(metadata: grpc.Metadata): string | undefined {
  const v = metadata.get("authorization")[0];
  if (typeof v !== "string") return undefined;
  const m = /^Bearer\s+(.+)$/i.exec(v);
  return m?.[1];
}

/** Requires a valid session token, except for the listed public methods. */
export function sessionAuthorizer(verifier: TokenVerifier, publicMethods: string[]): Authorizer {
  const open = new Set(publicMethods);
  return (method, metadata) => {
    if (open.has(method)) return undefined;
    const token = bearer(metadata);
    if (!token) throw new UnauthenticatedError("missing session token (authorization: Bearer …)");
    return verifier.verify(token);
  };
}

/** Requires the admin token for every method. */
export function adminAuthorizer(adminToken: string): Authorizer {
  const expected = Buffer.from(adminToken);
  return (_method, metadata) => {
    const given = Buffer.from(bearer(metadata) ?? "");
    if (!adminToken) throw new UnauthenticatedError("the admin API is disabled: no admin token is configured");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new UnauthenticatedError("admin token required");
    return undefined;
  };
}

function metadataCarrier(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.getMap())) if (typeof v === "string") out[k] = v;
  return out;
}

export interface BoundService {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/**
 * Binds handler functions (keyed by the definition's method names) to the
 * definition. Errors thrown by handlers become statuses; unexpected ones are
 * logged with their stack and reported as INTERNAL.
 */
/** Stands in for a request whose bytes are not the expected protobuf message. */
class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** For duplex handlers: the decoding error of a streamed message, or undefined when it decoded. */
export function malformedReason(message: unknown): string | undefined {
  return message instanceof MalformedRequest ? message.reason : undefined;
}

/**
 * grpc-js answers undecodable bytes with a bare INTERNAL; decode inside the
 * handler instead, so the client gets INVALID_ARGUMENT and the reason.
 * A handler may also write a response it encoded itself (a Buffer): it goes
 * out as it is (the relay's Fetch events, see relay/queued-codec.ts).
 */
function tolerantDefinition(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [method, def] of Object.entries(definition)) {
    out[method] = {
      ...def,
      responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : def.responseSerialize(value)),
      requestDeserialize: (bytes: Buffer) => {
        try {
          return def.requestDeserialize(bytes);
        } catch (err) {
          return new MalformedRequest((err as Error).message);
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

export function bind(
  definition: grpc.ServiceDefinition,
  serviceName: string,
  handlers: Record<string, UnaryHandler<any, any> | StreamHandler<any, any> | DuplexHandler<any, any>>,
  authorize: Authorizer,
  log: Logger,
): BoundService {
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(definition)) {
    const handler = handlers[method];
    if (!handler) throw new Error(`${serviceName}.${method} has no handler`);
    const observe = (code: grpc.status, started: number) => {
      handled().inc({ service: serviceName, method, code: grpc.status[code] });
      handling().observe({ service: serviceName, method }, (performance.now() - started) / 1000);
    };
    const fail = (err: unknown) => {
      if (!(err instanceof ParleyError)) log.error({ err, method }, "unexpected error in handler");
      return toServiceError(err);
    };
    const prepare = (call: grpc.ServerUnaryCall<any, any> | grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>): CallContext => {
      const abort = new AbortController();
      (call as grpc.ServerUnaryCall<any, any>).on("cancelled", () => abort.abort());
      if ("request" in call && call.request instanceof MalformedRequest) {
        throw new InvalidArgumentError(`the request is not a valid ${serviceName}.${method} message: ${call.request.reason}`);
      }
      const session = authorize(method, call.metadata);
      return { session, metadata: call.metadata, trace: extractContext(metadataCarrier(call.metadata)), signal: abort.signal };
    };
    if (def.requestStream && def.responseStream) {
      implementation[method] = (async (call: grpc.ServerDuplexStream<any, any>) => {
        const started = performance.now();
        try {
          const ctx = prepare(call);
          await withSpan(`${serviceName}/${method}`, () => (handler as DuplexHandler<any, any>)(ctx, call), ctx.trace);
          observe(grpc.status.OK, started);
          call.end();
        } catch (err) {
          const e = fail(err);
          observe(e.code!, started);
          call.emit("error", Object.assign(new Error(e.details), e));
        }
      }) as grpc.handleBidiStreamingCall<any, any>;
    } else if (def.responseStream) {
      implementation[method] = (async (call: grpc.ServerWritableStream<any, any>) => {
        const started = performance.now();
        try {
          const ctx = prepare(call);
          await withSpan(`${serviceName}/${method}`, () => (handler as StreamHandler<any, any>)(call.request, ctx, call), ctx.trace);
          observe(grpc.status.OK, started);
          call.end();
        } catch (err) {
          const e = fail(err);
          observe(e.code!, started);
          // 'error' (not destroy) makes grpc-js send this status after queued writes.
          call.emit("error", Object.assign(new Error(e.details), e));
        }
      }) as grpc.handleServerStreamingCall<any, any>;
    } else {
      implementation[method] = (async (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        const started = performance.now();
        try {
          const ctx = prepare(call);
          const res = await withSpan(`${serviceName}/${method}`, () => (handler as UnaryHandler<any, any>)(call.request, ctx), ctx.trace);
          observe(grpc.status.OK, started);
          callback(null, res);
        } catch (err) {
          const e = fail(err);
          observe(e.code!, started);
          callback(e);
        }
      }) as grpc.handleUnaryCall<any, any>;
    }
  }
  return { definition: tolerantDefinition(definition), implementation };
}

export interface GrpcServerHandle {
  port: number;
  server: grpc.Server;
  /** Stops accepting calls, waits up to graceMs for in-flight ones, then forces. */
  shutdown(graceMs?: number): Promise<void>;
}

export async function startGrpcServer(opts: { host?: string; port: number; services: BoundService[]; maxMessageBytes?: number }): Promise<GrpcServerHandle> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes ?? 16 * 1024 * 1024,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_permit_without_calls": 1,
  });
  for (const s of opts.services) server.addService(s.definition, s.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${opts.host ?? "0.0.0.0"}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    server,
    shutdown: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
