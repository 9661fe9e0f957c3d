/**
 * OpenTelemetry tracing. W3C trace context travels in gRPC metadata and in
 * bus message headers, so a send → wake-up → delivery is one trace.
 *
 *   initTracing("relay");                 // once per process
 *   await withSpan("relay.send", async (span) => { ... });
 */
import { context, propagation, trace, SpanStatusCode, type Context, type Span } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";

let provider: NodeTracerProvider | undefined;

/**
 * Installs the W3C propagator and a tracer provider. Spans are exported over
 * OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise they are
 * still created (so context propagates) but go nowhere.
 */
export function initTracing(serviceName: string, extraProcessors: SpanProcessor[] = []): void {
  if (provider) return;
  const processors: SpanProcessor[] = [...extraProcessors];
  if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) processors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": `parley-${serviceName}` }),
    spanProcessors: processors,
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
}

export async function shutdownTracing(): Promise<void> {
  await provider?.shutdown();
  provider = undefined;
}

export const tracer = () => trace.getTracer("parley");

/** Writes the active context's `traceparent`/`tracestate` into carrier. */
export function injectContext(carrier: Record<string, string>, ctx: Context = context.active()): void {
  propagation.inject(ctx, carrier);
}

/** Reads a context from headers or metadata written by injectContext. */
export function extractContext(carrier: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(context.active(), carrier, {
    get: (c, key) => {
      const v = c[key];
      return Array.isArray(v) ? v[0] : v;
    },
    keys: (c) => Object.keys(c),
  });
}

/** Runs fn inside a new span (child of parent or the active context), recording errors. */
export async function withSpan<T>(name: string, fn: (span: Span) => Promise<T>, parent?: Context): Promise<T> {
  const ctx = parent ?? context.active();
  return tracer().startActiveSpan(name, {}, ctx, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
