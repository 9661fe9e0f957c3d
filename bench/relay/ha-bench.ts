// Relay high-availability benchmark: send throughput and latency with
// replication off (standalone) and on (primary + warm secondary), the
// secondary's lag under that load, and failover time (SIGKILL of the
// primary → first send accepted by the promoted secondary) over repeated
// trials. Relays run as `parley relay` processes on the real Postgres + NATS.
//
//   npm run build && node dist/bench/relay/ha-bench.js
//
// Environment (optional): HA_BENCH_MESSAGES=4000 HA_BENCH_SENDERS=4
// HA_BENCH_IN_FLIGHT=8 (Send calls per sender) HA_BENCH_PAYLOAD_BYTES=512
// HA_BENCH_ROUNDS=2 (alternating off/on runs; medians reported)
// HA_BENCH_FAILOVERS=10. Prints a markdown section for bench/RESULTS.md.

import { RelayAdmin } from "../../client/admin.js";
import { RelayClient, type DeviceCredentials } from "../../client/relay.js";
import { Harness, unique } from "../../test/support/harness.js";
import { ADMIN_TOKEN, ReplicaSet, type ReplicaProcess } from "../../test/support/relay-replicas.js";

const env = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const MESSAGES = env("HA_BENCH_MESSAGES", 4000);
const SENDERS = env("HA_BENCH_SENDERS", 4);
const IN_FLIGHT = env("HA_BENCH_IN_FLIGHT", 8);
const PAYLOAD = Buffer.alloc(env("HA_BENCH_PAYLOAD_BYTES", 512), 120);
const ROUNDS = env("HA_BENCH_ROUNDS", 2);
const FAILOVERS = env("HA_BENCH_FAILOVERS", 10);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};
const median = (xs: number[]) => pct(xs, 50);

interface LoadResult {
  msgsPerSec: number;
  p50: number;
  p99: number;
  maxBehindMessages: number;
  maxBehindSeconds: number;
  catchUpMs: number;
}

/** Senders and one receiver each, so that sends to different queues do not wait on one queue's row lock. */
async function people(h: Harness, address: string): Promise<{ senders: DeviceCredentials[]; receivers: DeviceCredentials[] }> {
  const receivers = await Promise.all(Array.from({ length: SENDERS }, (_, i) => h.identityWithDevice([address], unique(`r${i}`), unique(`r${i}-dev`))));
  const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => h.identityWithDevice([address], unique(`s${i}`), unique(`s${i}-dev`))));
  return { senders, receivers };
}

/** MESSAGES sends (SENDERS x IN_FLIGHT concurrent Send calls), sampling the secondary's lag meanwhile. */
async function load(h: Harness, primary: ReplicaProcess, secondary: ReplicaProcess | undefined): Promise<LoadResult> {
  const { senders, receivers } = await people(h, primary.address);
  const clients = senders.map((d) => h.client([primary.address], d));
  await Promise.all(clients.map((c) => c.authenticate()));
  const admin = secondary && RelayAdmin.create(secondary.address, ADMIN_TOKEN);
  let sampling = true;
  let maxBehindMessages = 0;
  let maxBehindSeconds = 0;
  const sampler = (async () => {
    while (admin && sampling) {
      const s = await admin.replicationStatus();
      maxBehindMessages = Math.max(maxBehindMessages, s.behindMessages);
      maxBehindSeconds = Math.max(maxBehindSeconds, s.behindSeconds);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    clients.flatMap((c, i) =>
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < MESSAGES) {
          next++;
          const t = performance.now();
          await c.send({ to: [{ deviceId: receivers[i]!.deviceId }], payload: PAYLOAD });
          latencies.push(performance.now() - t);
        }
      }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  let catchUpMs = 0;
  if (admin) {
    const primaryAdmin = RelayAdmin.create(primary.address, ADMIN_TOKEN);
    const target = (await primaryAdmin.replicationStatus()).appliedStreamSeq;
    primaryAdmin.close();
    const t = performance.now();
    while ((await admin.replicationStatus()).appliedStreamSeq < target) await new Promise((r) => setTimeout(r, 5));
    catchUpMs = performance.now() - t;
  }
  sampling = false;
  await sampler;
  admin?.close();
  return { msgsPerSec: latencies.length / seconds, p50: pct(latencies, 50), p99: pct(latencies, 99), maxBehindMessages, maxBehindSeconds, catchUpMs };
}

/** Kill → promote → first accepted send, FAILOVERS times; the killed replica restarts as secondary each time. */
async function failovers(h: Harness): Promise<{ promoteMs: number[]; firstSendMs: number[] }> {
  const set = new ReplicaSet(h, unique("hab"));
  await set.fresh();
  const dbs = new Map([["a", await h.database("hab_a")], ["b", await h.database("hab_b")]]);
  const ports = new Map<string, number>();
  const start = async (name: string) => {
    const p = await set.process(name, name === "a" ? "primary" : "secondary", { databaseUrl: dbs.get(name), grpcPort: ports.get(name) });
    ports.set(name, Number(p.address.split(":")[1]));
    return p;
  };
  let primary = await start("a");
  let secondary = await start("b");
  const { senders, receivers } = await people(h, primary.address);
  const receiver = receivers[0]!;
  const client = RelayClient.create({ addresses: [primary.address, secondary.address], device: senders[0]!, deadlineMs: 2000, maxAttempts: 2 });
  let accepted = 0;
  let running = true;
  const sending = (async () => {
    while (running) {
      try {
        await client.send({ to: [{ deviceId: receiver.deviceId }], payload: PAYLOAD });
        accepted++;
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  })();
  const promoteMs: number[] = [];
  const firstSendMs: number[] = [];
  for (let i = 0; i < FAILOVERS; i++) {
    const before = accepted;
    while (accepted < before + 20) await new Promise((r) => setTimeout(r, 5));
    const killedAt = performance.now();
    await primary.kill("SIGKILL");
    const admin = RelayAdmin.create(secondary.address, ADMIN_TOKEN);
    await admin.promote(30);
    admin.close();
    promoteMs.push(performance.now() - killedAt);
    const mark = accepted;
    while (accepted === mark) await new Promise((r) => setTimeout(r, 1));
    firstSendMs.push(performance.now() - killedAt);
    const revived = await start(primary.name);
    [primary, secondary] = [secondary, revived];
  }
  running = false;
  await sending;
  client.close();
  return { promoteMs, firstSendMs };
}

async function main(): Promise<void> {
  const h = new Harness();
  try {
    const off: LoadResult[] = [];
    const on: LoadResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate the order so neither mode always runs on a warmer machine.
      for (const mode of round % 2 ? ["on", "off"] : ["off", "on"]) {
        const set = new ReplicaSet(h, unique("hab"));
        await set.fresh();
        if (mode === "off") {
          const relay = await standalone(h, set);
          off.push(await load(h, relay, undefined));
          await relay.kill("SIGTERM");
        } else {
          const primary = await set.process("a", "primary");
          const secondary = await set.process("b", "secondary");
          on.push(await load(h, primary, secondary));
          await Promise.all([primary.kill("SIGTERM"), secondary.kill("SIGTERM")]);
        }
        console.error(`round ${round} ${mode}: ${JSON.stringify((mode === "off" ? off : on).at(-1))}`);
      }
    }
    const f = await failovers(h);
    const m = (rs: LoadResult[], k: keyof LoadResult) => median(rs.map((r) => r[k]));
    const fmt = (x: number, d = 1) => x.toFixed(d);
    const lines = [
      `### Relay replication and failover (bench/relay/ha-bench.ts)`,
      "",
      `\`node dist/bench/relay/ha-bench.js\` — ${MESSAGES} Send calls of ${PAYLOAD.length} B, ${SENDERS} senders (each to its own receiver) x ${IN_FLIGHT} in flight, ` +
        `relays as \`parley relay\` processes on local Postgres + NATS, medians of ${ROUNDS} alternating runs; ${FAILOVERS} failover trials.`,
      "",
      "| mode | msgs/s | send p50 ms | send p99 ms | secondary max behind (msgs / s) | catch-up after load ms |",
      "|---|---:|---:|---:|---:|---:|",
      `| standalone (replication off) | ${fmt(m(off, "msgsPerSec"), 0)} | ${fmt(m(off, "p50"))} | ${fmt(m(off, "p99"))} | – | – |`,
      `| primary + secondary (replication on) | ${fmt(m(on, "msgsPerSec"), 0)} | ${fmt(m(on, "p50"))} | ${fmt(m(on, "p99"))} | ${fmt(m(on, "maxBehindMessages"), 0)} / ${fmt(m(on, "maxBehindSeconds"), 2)} | ${fmt(m(on, "catchUpMs"), 0)} |`,
      "",
      `Failover (SIGKILL primary → promote → first accepted send), ${FAILOVERS} trials: ` +
        `promotion median ${fmt(median(f.promoteMs), 0)} ms / max ${fmt(Math.max(...f.promoteMs), 0)} ms; ` +
        `first accepted send median ${fmt(median(f.firstSendMs), 0)} ms / max ${fmt(Math.max(...f.firstSendMs), 0)} ms.`,
    ];
    console.log(lines.join("\n"));
  } finally {
    await h.cleanup();
  }
}

/** A standalone relay process: the same command without --role. */
async function standalone(_h: Harness, set: ReplicaSet): Promise<ReplicaProcess> {
  return set.process("solo", "standalone");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
