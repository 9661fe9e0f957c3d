/**
 * Workspace-sync benchmark, against a real relay (Postgres + NATS, through
 * the integration-test harness and rig: same wiring as the tests).
 *
 *   node dist/bench/sync/main.js [--changes 10000] [--endpoints 20] [--live-changes 100] [--interval 200] [--only catchup|steady]
 *
 * 1. Catch-up: an endpoint missed N changes from 3 peers, the older half
 *    purged from its relay; time and bytes until it is synchronised (all
 *    peers' queues freed). Baseline in the same run: the raw relay moving
 *    the same bytes (one sender, SendBatch of 48 KiB messages, one fetch).
 * 2. Steady state: a 20-endpoint workspace online (live streams); latency
 *    from change() on one endpoint to applied on each other one, p50/p99.
 *    Baseline: the raw relay, one message to 19 devices, send → received.
 */
import { parseArgs } from "node:util";
import { DAY, ManualClock, systemClock } from "../../services/common/clock.js";
import type { Outbound, SyncTransport } from "../../client/sync/transport.js";
import { Harness, newRelayKey, unique } from "../../test/support/harness.js";
import { NOON, SyncNet, type Peer } from "../../test/support/sync.js";

const { values: args } = parseArgs({
  options: { changes: { type: "string", default: "10000" }, endpoints: { type: "string", default: "20" }, "live-changes": { type: "string", default: "100" }, only: { type: "string" }, interval: { type: "string", default: "200" } },
});
const N = Number(args.changes);
const ENDPOINTS = Number(args.endpoints);
const LIVE = Number(args["live-changes"]);
/** Pause between changes: a rate the workspace sustains, so latency is not queueing. */
const INTERVAL = Number(args.interval);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;

/** Counts what an endpoint puts on the wire. */
function counting(counter: { bytes: number; messages: number }) {
  return (t: SyncTransport): SyncTransport => ({
    get endpointId() { return t.endpointId; },
    get memberId() { return t.memberId; },
    get relays() { return t.relays; },
    receive: (h) => t.receive(h),
    listen: t.listen ? (h, s) => t.listen!(h, s) : undefined,
    directory: () => t.directory(),
    close: () => t.close(),
    send: async (ms: Outbound[]) => {
      const r = await t.send(ms);
      for (const i of r.delivered) {
        counter.bytes += ms[i]!.payload.length;
        counter.messages++;
      }
      return r;
    },
  });
}

async function catchUp(h: Harness) {
  const clock = new ManualClock(NOON(2027, 1, 1));
  const relay = await h.relay({ databaseUrl: await h.database("bsync"), bus: await h.nats(), key: newRelayKey(), clock, options: { relayId: unique("relay"), limits: { maxMessageBytes: 64 * 1024, maxQueueMessages: 100_000, maxQueueBytes: 1 << 30, maxBatchMessages: 1000, maxRecipients: 100 } } });
  const net = new SyncNet(h, clock, [relay]);
  const counter = { bytes: 0, messages: 0 };
  const wrap = counting(counter);
  const fred = await net.endpoint("fred", "fred-pc", [relay], { wrap });
  const peers: Peer[] = [];
  for (const name of ["jane", "mary", "bob"]) peers.push(await net.endpoint(name, `${name}-pc`, [relay], { wrap }));
  const ws = unique("bench");
  fred.engine.createWorkspace(ws, "Bench");
  for (const p of peers) {
    p.engine.join(fred.engine.invite(ws, p.memberId, "participant"));
    await net.settle();
  }
  fred.online = false;
  const perPeer = Math.ceil(N / 2 / peers.length);
  for (const half of [0, 1]) {
    clock.set(NOON(2027, 1, 2 + half * 20));
    for (const p of peers) {
      for (let i = 0; i < perPeer; i += 500) {
        await p.engine.changeMany(ws, Array.from({ length: Math.min(500, perPeer - i) }, (_, j) => ({ key: `${p.memberId}/${half}/${i + j}`, value: `item ${i + j} of ${p.memberId}, half ${half}: ${"x".repeat(40)}` })));
      }
    }
    await net.settle(peers);
  }
  clock.set(NOON(2027, 2, 2));
  const purged = await relay.service.retention.runOnce();
  const queued = (await relay.service.store.readEntries({ kind: "device", id: "fred-pc" }, 0, 1_000_000)).length;
  counter.bytes = counter.messages = 0;
  fred.online = true;
  const started = performance.now();
  await net.settle(net.peers, 200);
  const elapsed = performance.now() - started;
  const total = perPeer * peers.length * 2;
  if (Object.keys(fred.engine.content(ws)).length !== total || peers.some((p) => p.engine.status(ws).outgoing.length)) throw new Error("catch-up did not complete");
  return { elapsed, bytes: counter.bytes, messages: counter.messages, total, purged: purged.messages, queued, requests: fred.engine.events(ws, "gap-request").length, relay, h };
}

/** The raw relay moving the same bytes: SendBatch of 48 KiB messages to one device, then one fetch. */
async function rawTransfer(h: Harness, address: string, bytes: number) {
  const a = await h.identityWithDevice([address], unique("a"), unique("a-dev"));
  const b = await h.identityWithDevice([address], unique("b"), unique("b-dev"));
  const sender = h.client([address], a);
  const receiver = h.client([address], b);
  const size = 48 * 1024;
  const count = Math.ceil(bytes / size);
  const started = performance.now();
  for (let i = 0; i < count; i += 100) {
    await sender.sendBatch(Array.from({ length: Math.min(100, count - i) }, () => ({ to: [{ deviceId: b.deviceId }], payload: Buffer.alloc(size, 7) })));
  }
  let got = 0;
  await receiver.inbox(() => void got++);
  if (got !== count) throw new Error(`raw transfer got ${got} of ${count}`);
  return performance.now() - started;
}

async function steadyState(h: Harness) {
  const relay = await h.relay({ databaseUrl: await h.database("bsync"), bus: await h.nats(), key: newRelayKey(), options: { relayId: unique("relay") } });
  const net = new SyncNet(h, new ManualClock(), [relay]);
  const sent = new Map<string, number>();
  const latencies: number[] = [];
  const peers: Peer[] = [];
  for (let i = 0; i < ENDPOINTS; i++) {
    peers.push(
      await net.endpoint(`m${i}`, `m${i}-pc`, [relay], {
        engine: { clock: systemClock, onApply: (_ws, origin, seq) => { const t = sent.get(`${origin}/${seq}`); if (t !== undefined) latencies.push(performance.now() - t); } },
      }),
    );
  }
  const ws = unique("live");
  peers[0]!.engine.createWorkspace(ws, "Live");
  const t0 = performance.now();
  for (const p of peers.slice(1)) p.engine.join(peers[0]!.engine.invite(ws, p.memberId, "participant"));
  const rounds = await net.settle(peers, 200);
  console.error(`steady state: ${ENDPOINTS} endpoints joined and settled in ${rounds} rounds, ${fmt(performance.now() - t0)}`);
  const ctl = new AbortController();
  const running = peers.map((p) => p.engine.live(ctl.signal));
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < LIVE; i++) {
    const p = peers[i % peers.length]!;
    // Recorded before the call: peers may apply the change before change() returns.
    sent.set(`${p.name}/${(p.engine.status(ws).vector[p.name] ?? 0) + 1}`, performance.now());
    await p.engine.change(ws, `k${i % 50}`, `value ${i}`);
    await new Promise((r) => setTimeout(r, INTERVAL));
  }
  const expected = LIVE * (ENDPOINTS - 1);
  const deadline = Date.now() + 30_000;
  while (latencies.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  ctl.abort();
  await Promise.allSettled(running);

  // Baseline: raw relay fan-out of the same size to 19 devices, received on live streams.
  const devices = [];
  for (let i = 0; i < ENDPOINTS; i++) devices.push(await h.identityWithDevice([relay.address], unique("r"), unique("r-dev")));
  const raw: number[] = [];
  const rawCtl = new AbortController();
  const clients = devices.map((d) => h.client([relay.address], d));
  const streams = clients.map((c) => c.inbox((m) => void raw.push(performance.now() - Number(Buffer.from(m.payload).toString().split(" ")[0])), { follow: true, signal: rawCtl.signal }));
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < LIVE; i++) {
    const from = i % ENDPOINTS;
    const to = devices.filter((_, j) => j !== from).map((d) => ({ deviceId: d.deviceId }));
    await clients[from]!.send({ to, payload: Buffer.from(`${performance.now()} ${"x".repeat(300)}`) });
    await new Promise((r) => setTimeout(r, INTERVAL));
  }
  const rawDeadline = Date.now() + 30_000;
  while (raw.length < expected && Date.now() < rawDeadline) await new Promise((r) => setTimeout(r, 50));
  rawCtl.abort();
  await Promise.allSettled(streams);
  return { latencies, raw, expected };
}

const h = new Harness();
try {
  if (args.only !== "steady") {
  const c = await catchUp(h);
  const rawMs = await rawTransfer(h, c.relay.address, c.bytes);
  console.log(`catch-up: ${c.total} changes missed from 3 peers; the relay purged ${c.purged} of the endpoint's queued messages (the older half), ${c.queued} still queued`);
  console.log(`  sync catch-up          ${fmt(c.elapsed)}   ${kib(c.bytes)} in ${c.messages} relay messages (all endpoints, incl. acks)   gap requests: ${c.requests}`);
  console.log(`  baseline raw relay     ${fmt(rawMs)}   same bytes as 48 KiB messages, one sender → one fetch`);
  }
  if (args.only !== "catchup") {
  const s = await steadyState(h);
  console.log(`steady state: ${ENDPOINTS} endpoints, ${LIVE} changes, one every ${INTERVAL} ms, ${s.latencies.length}/${s.expected} applications measured`);
  console.log(`  sync change → applied  p50 ${fmt(pct(s.latencies, 50))}   p99 ${fmt(pct(s.latencies, 99))}`);
  console.log(`  baseline raw relay     p50 ${fmt(pct(s.raw, 50))}   p99 ${fmt(pct(s.raw, 99))}   (${s.raw.length}/${s.expected} received)`);
  }
} finally {
  await h.cleanup();
}
