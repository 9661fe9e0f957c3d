/** The operator's Prometheus metrics (served on /metrics by services/common/http.ts). */
import { Counter, Gauge, Histogram, metric } from "../services/common/metrics.js";

export const reconcilesTotal = metric("parley_operator_reconciles_total", () =>
  new Counter({ name: "parley_operator_reconciles_total", help: "Reconciles by kind and result (success, error, paused)", labelNames: ["kind", "result"] as const }));

export const reconcileDuration = metric("parley_operator_reconcile_duration_seconds", () =>
  new Histogram({
    name: "parley_operator_reconcile_duration_seconds",
    help: "Time one reconcile took, by kind",
    labelNames: ["kind"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  }));

export const managedObjects = metric("parley_operator_managed_objects", () =>
  new Gauge({ name: "parley_operator_managed_objects", help: "Objects the operator owns, by kind (from its watch caches)", labelNames: ["kind"] as const }));

export const watchRestarts = metric("parley_operator_watch_restarts_total", () =>
  new Counter({ name: "parley_operator_watch_restarts_total", help: "Watches restarted after an error, by watch", labelNames: ["watch"] as const }));

export const isLeader = metric("parley_operator_leader", () =>
  new Gauge({ name: "parley_operator_leader", help: "1 while this replica holds the leader Lease and reconciles, else 0" }));

export const queueDepth = metric("parley_operator_queue_depth", () =>
  new Gauge({ name: "parley_operator_queue_depth", help: "Keys waiting in the work queue" }));

export const relaySwitchovers = metric("parley_operator_relay_switchovers_total", () =>
  new Counter({ name: "parley_operator_relay_switchovers_total", help: "Relay pair switchovers by kind (switchover: requested; failover: the primary was unhealthy) and result (promoted, aborted, failed)", labelNames: ["kind", "result"] as const }));
