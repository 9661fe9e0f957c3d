/**
 * Relay metrics. Queue figures are read from Postgres when Prometheus
 * scrapes (cached briefly), labelled by relay so that several relays in one
 * process (`parley up`, tests) stay apart.
 */
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, metric } from "../common/metrics.js";
import type { QueueFigures, RelayTotals } from "./types.js";

export interface StatsSource {
  totals(): Promise<RelayTotals>;
  top(limit: number): Promise<QueueFigures[]>;
}

const sources = new Map<string, StatsSource>();
const CACHE_MS = 2000;
let cache: { at: number; data: Promise<Array<{ relay: string; totals: RelayTotals; top: QueueFigures[] }>> } | undefined;

function snapshot() {
  if (!cache || performance.now() - cache.at > CACHE_MS) {
    const data = Promise.all([...sources].map(async ([relay, s]) => ({ relay, totals: await s.totals(), top: await s.top(10) })));
    cache = { at: performance.now(), data };
  }
  return cache.data;
}

function totalsGauge(name: string, help: string, pick: (t: RelayTotals) => number) {
  return metric(name, () =>
    new Gauge({
      name,
      help,
      labelNames: ["relay"],
      async collect() {
        this.reset();
        for (const s of await snapshot().catch(() => [])) this.set({ relay: s.relay }, pick(s.totals));
      },
    }),
  );
}

export function registerStatsSource(relayId: string, source: StatsSource): () => void {
  sources.set(relayId, source);
  cache = undefined;
  return () => {
    if (sources.get(relayId) === source) sources.delete(relayId);
    cache = undefined;
  };
}

export function relayMetrics() {
  totalsGauge("parley_relay_queue_depth", "Messages waiting in all queues", (t) => t.depth);
  totalsGauge("parley_relay_queue_bytes", "Payload bytes waiting in all queues", (t) => t.bytes);
  totalsGauge("parley_relay_queues", "Queues holding at least one message", (t) => t.queues);
  totalsGauge("parley_relay_queue_oldest_message_age_seconds", "Age of the oldest queued message", (t) => t.oldestAgeSeconds);
  totalsGauge("parley_relay_devices", "Registered devices", (t) => t.devices);
  totalsGauge("parley_relay_suspended_devices", "Suspended devices", (t) => t.suspendedDevices);
  metric("parley_relay_top_queue_depth", () =>
    new Gauge({
      name: "parley_relay_top_queue_depth",
      help: "Depth of the ten fullest queues",
      labelNames: ["relay", "kind", "queue"],
      async collect() {
        this.reset();
        for (const s of await snapshot().catch(() => [])) for (const q of s.top) this.set({ relay: s.relay, kind: q.queue.kind, queue: q.queue.id }, q.depth);
      },
    }),
  );
  return {
    sent: metric("parley_relay_messages_sent_total", () => new Counter({ name: "parley_relay_messages_sent_total", help: "Messages accepted (not counting idempotent resends)", labelNames: ["relay"] })),
    duplicates: metric("parley_relay_duplicate_sends_total", () => new Counter({ name: "parley_relay_duplicate_sends_total", help: "Resends of an already accepted message id", labelNames: ["relay"] })),
    queued: metric("parley_relay_entries_queued_total", () => new Counter({ name: "parley_relay_entries_queued_total", help: "Queue entries created", labelNames: ["relay", "kind"] })),
    delivered: metric("parley_relay_deliveries_total", () => new Counter({ name: "parley_relay_deliveries_total", help: "Queue entries written to fetch streams", labelNames: ["relay", "kind"] })),
    deliveryReads: metric("parley_relay_delivery_reads_total", () => new Counter({ name: "parley_relay_delivery_reads_total", help: "Runs of entries fetch streams took to send: read from Postgres, or carried by a wake-up", labelNames: ["relay", "source"] })),
    acked: metric("parley_relay_acked_total", () => new Counter({ name: "parley_relay_acked_total", help: "Queue entries deleted by acknowledgement", labelNames: ["relay"] })),
    purged: metric("parley_relay_purged_messages_total", () => new Counter({ name: "parley_relay_purged_messages_total", help: "Queue entries purged (retention or admin)", labelNames: ["relay", "reason"] })),
    streams: metric("parley_relay_active_streams", () => new Gauge({ name: "parley_relay_active_streams", help: "Open fetch streams", labelNames: ["relay"] })),
    sendSeconds: metric("parley_relay_send_seconds", () => new Histogram({ name: "parley_relay_send_seconds", help: "Send and SendBatch: request to durable commit", labelNames: ["relay"], buckets: LATENCY_BUCKETS })),
    deliveryLatency: metric("parley_relay_delivery_latency_seconds", () =>
      new Histogram({ name: "parley_relay_delivery_latency_seconds", help: "Enqueue to write on a fetch stream", labelNames: ["relay"], buckets: LATENCY_BUCKETS }),
    ),
  };
}

export type RelayMetrics = ReturnType<typeof relayMetrics>;

/** The send path's series of one relay, bound once: inc() and observe() with labels hash them on every call (per message for SendStream). */
export function sendSeries(m: RelayMetrics, relay: string) {
  return {
    seconds: m.sendSeconds.labels({ relay }),
    sent: m.sent.labels({ relay }),
    duplicates: m.duplicates.labels({ relay }),
    queued: { device: m.queued.labels({ relay, kind: "device" }), identity: m.queued.labels({ relay, kind: "identity" }) },
  };
}
