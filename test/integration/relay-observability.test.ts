/** Traces continue from client to relay to the woken stream; metrics and health endpoints report the relay. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { startHttpServer } from "../../services/common/http.js";
import { startDefaultMetrics } from "../../services/common/metrics.js";
import { initTracing, shutdownTracing, withSpan } from "../../services/common/tracing.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

describe("relay observability", () => {
  const h = new Harness();
  const exporter = new InMemorySpanExporter();
  let relay: RelayInstance;
  let http: Awaited<ReturnType<typeof startHttpServer>>;
  before(async () => {
    initTracing("test", [new SimpleSpanProcessor(exporter)]);
    startDefaultMetrics();
    relay = await h.relay({ databaseUrl: await h.database("relayobs"), bus: await h.nats(), key: newRelayKey() });
    http = await startHttpServer({ host: "127.0.0.1", port: 0, log: h.log, readiness: [relay.service.readiness()] });
    h.defer(() => http.close());
  });
  after(async () => {
    await h.cleanup();
    await shutdownTracing();
  });

  it("continues the client's trace in the relay's handler span (gRPC metadata) and in the recipient's wake-up (bus headers)", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    const a = h.client([relay.address], alice);
    await a.authenticate();
    const ctl = new AbortController();
    let ready!: () => void;
    const caughtUp = new Promise<void>((r) => (ready = r));
    const inbox = h.client([relay.address], bob).inbox(() => undefined, { follow: true, signal: ctl.signal, onBacklogComplete: () => ready() });
    await caughtUp;
    let traceId = "";
    await withSpan("user-action", async (span) => {
      traceId = span.spanContext().traceId;
      await a.send({ to: [{ deviceId: bob.deviceId }], payload: Buffer.from("traced") });
    });
    const server = await waitFor("relay/send span", () => exporter.getFinishedSpans().find((s) => s.name === "relay/send" && s.spanContext().traceId === traceId));
    assert.equal(server.spanContext().traceId, traceId);
    const wake = await waitFor("relay/wake span", () => exporter.getFinishedSpans().find((s) => s.name === "relay/wake" && s.spanContext().traceId === traceId));
    assert.equal(wake.parentSpanContext?.spanId, server.spanContext().spanId);
    ctl.abort();
    await inbox;
  });

  it("exports queue figures, counters and latency histograms on /metrics", async () => {
    const alice = await h.identityWithDevice([relay.address], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([relay.address], unique("bob"), unique("b-dev"));
    await h.client([relay.address], alice).sendBatch([1, 2, 3].map((i) => ({ to: [{ deviceId: bob.deviceId }], payload: Buffer.alloc(10 * i) })));
    const body = await waitFor("metrics with the new depth", async () => {
      const text = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
      const m = /parley_relay_queue_depth\{relay="relay-test"\} (\d+)/.exec(text);
      return m && Number(m[1]) >= 3 ? text : undefined;
    });
    assert.match(body, /parley_relay_queue_oldest_message_age_seconds\{relay="relay-test"\} [\d.e+-]+/);
    assert.match(body, /parley_relay_queue_bytes\{relay="relay-test"\} \d+/);
    assert.match(body, new RegExp(`parley_relay_top_queue_depth\\{relay="relay-test",kind="device",queue="${bob.deviceId}"\\} 3`));
    assert.match(body, /parley_relay_messages_sent_total\{relay="relay-test"\} \d+/);
    assert.match(body, /parley_relay_send_seconds_bucket\{le="0.005",relay="relay-test"\} \d+/);
    assert.match(body, /parley_grpc_server_handled_total\{service="relay",method="sendBatch",code="OK"\} \d+/);
    assert.match(body, /parley_process_resident_memory_bytes \d+/);
  });

  it("answers /healthz and /readyz", async () => {
    assert.equal((await fetch(`http://127.0.0.1:${http.port}/healthz`)).status, 200);
    const ready = await fetch(`http://127.0.0.1:${http.port}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), "ready\n");
    assert.equal((await fetch(`http://127.0.0.1:${http.port}/nope`)).status, 404);
  });
});
