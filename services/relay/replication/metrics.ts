/** Replication metrics: role, lag behind the primary, epoch, publish time. */
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, metric } from "../../common/metrics.js";

export function replicationMetrics() {
  const labels = ["relay", "replica"];
  return {
    role: metric("parley_relay_replication_role", () => new Gauge({ name: "parley_relay_replication_role", help: "1 for the replica's current role (primary, secondary, syncing)", labelNames: [...labels, "role"] })),
    behindMessages: metric("parley_relay_replication_behind_messages", () =>
      new Gauge({ name: "parley_relay_replication_behind_messages", help: "Change stream messages the replica has not applied yet", labelNames: labels }),
    ),
    behindSeconds: metric("parley_relay_replication_behind_seconds", () =>
      new Gauge({ name: "parley_relay_replication_behind_seconds", help: "Age of the newest applied change while the replica is behind (0 when caught up)", labelNames: labels }),
    ),
    epoch: metric("parley_relay_replication_epoch", () => new Gauge({ name: "parley_relay_replication_epoch", help: "Epoch of the relay's current primary", labelNames: labels })),
    applied: metric("parley_relay_replication_applied_total", () => new Counter({ name: "parley_relay_replication_applied_total", help: "Change stream messages applied by a secondary", labelNames: labels })),
    promotions: metric("parley_relay_replication_promotions_total", () => new Counter({ name: "parley_relay_replication_promotions_total", help: "Promotions of this replica to primary", labelNames: ["relay"] })),
    publishSeconds: metric("parley_relay_replication_publish_seconds", () =>
      new Histogram({ name: "parley_relay_replication_publish_seconds", help: "Time to get a change accepted by JetStream (inside the commit)", labelNames: ["relay"], buckets: LATENCY_BUCKETS }),
    ),
  };
}

export type ReplicationMetrics = ReturnType<typeof replicationMetrics>;
