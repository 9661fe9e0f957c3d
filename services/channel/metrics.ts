/** Prometheus metrics of the channel service (get-or-create: `parley up` and tests build several instances). */
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, metric } from "../common/metrics.js";

export interface ChannelMetrics {
  sessions: Gauge;
  posts: Counter;
  postSeconds: Histogram;
  delivered: Counter;
  fanoutLatency: Histogram;
  gapFills: Counter;
  complianceFailures: Counter;
}

export function channelMetrics(): ChannelMetrics {
  return {
    sessions: metric("parley_channel_sessions", () => new Gauge({ name: "parley_channel_sessions", help: "Open chat sessions on this process" })),
    posts: metric("parley_channel_posts_total", () => new Counter({ name: "parley_channel_posts_total", help: "Messages posted, edited or deleted", labelNames: ["kind"] })),
    postSeconds: metric("parley_channel_post_seconds", () => new Histogram({ name: "parley_channel_post_seconds", help: "Post handling time: commit + compliance event + fan-out publish", buckets: LATENCY_BUCKETS })),
    delivered: metric("parley_channel_delivered_total", () => new Counter({ name: "parley_channel_delivered_total", help: "Room events handed to local sessions" })),
    fanoutLatency: metric("parley_channel_fanout_seconds", () => new Histogram({ name: "parley_channel_fanout_seconds", help: "Post publish to receipt by a channel instance", buckets: LATENCY_BUCKETS })),
    gapFills: metric("parley_channel_gap_fills_total", () => new Counter({ name: "parley_channel_gap_fills_total", help: "Out-of-order or lost bus events filled from Postgres" })),
    complianceFailures: metric("parley_channel_compliance_failures_total", () => new Counter({ name: "parley_channel_compliance_failures_total", help: "Calls failed because the compliance event could not be stored" })),
  };
}
