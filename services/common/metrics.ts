/**
 * Prometheus metrics. One registry per process: `parley up` runs every
 * service in one process, so metric names carry the service prefix.
 */
import { collectDefaultMetrics, register, Counter, Gauge, Histogram } from "prom-client";

export { Counter, Gauge, Histogram };
export const registry = register;

let defaultsStarted = false;
export function startDefaultMetrics(): void {
  if (defaultsStarted) return;
  defaultsStarted = true;
  collectDefaultMetrics({ register, prefix: "parley_" });
}

/** Returns the metric already registered under name, or creates it. */
export function metric<T>(name: string, create: () => T): T {
  return (register.getSingleMetric(name) as T | undefined) ?? create();
}

export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
