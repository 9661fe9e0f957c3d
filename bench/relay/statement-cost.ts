// Postgres CPU per message of the relay's hot statements, on one otherwise
// idle connection: the one-statement send (relay_enqueue, services/relay/
// fast-path.ts) in groups of BENCH_GROUP messages and the cumulative ack
// (relay_ack), beside a raw baseline in the same run: the same payloads as
// plain multi-row INSERTs into a table with a bigserial key, and DELETEs.
//
//   node dist/bench/relay/statement-cost.js
//
// The figure is the backend's own CPU (utime + stime from /proc/<pid>/stat,
// 10 ms ticks) over BENCH_GROUPS groups, divided by the messages: it leaves
// out the relay process, the network and lock waits, so it is steady from run
// to run where the end-to-end benchmark (main.ts) is not, and shows what a
// schema or statement change costs Postgres.
//
// Environment: BENCH_GROUP=32 BENCH_GROUPS=3000 BENCH_RECEIVERS=4
//   BENCH_PAYLOAD_BYTES=1024 BENCH_ACK_EVERY=200 (messages per receiver
//   between acks) BENCH_PG_URL (admin URL; a throwaway database is made and dropped)
//   BENCH_SQL_FILE=<file>: SQL run after the migrations, to measure a change
//   (a CREATE OR REPLACE FUNCTION, an index) before writing its migration

import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import pg from "pg";

import { createPool, migrate } from "../../services/common/db.js";
import { ackAtOnce, enqueueAtOnce } from "../../services/relay/fast-path.js";
import { relayMigrations } from "../../services/relay/migrations.js";
import type { Limits, OutgoingMessage } from "../../services/relay/types.js";
import { envInt } from "../support/env.js";
import { processCpuSeconds } from "../support/stats.js";

const backendCpuMs = (pid: number) => processCpuSeconds(pid) * 1000;

async function backendPid(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  return rows[0]!.pid;
}

const LIMITS: Limits = { maxMessageBytes: 1 << 20, maxQueueMessages: 1e12, maxQueueBytes: 1e15, maxBatchMessages: 1 << 16, maxRecipients: 1000 };

async function main(): Promise<void> {
  const group = envInt("BENCH_GROUP", 32);
  const groups = envInt("BENCH_GROUPS", 3000);
  const receivers = envInt("BENCH_RECEIVERS", 4);
  const payloadBytes = envInt("BENCH_PAYLOAD_BYTES", 1024);
  const ackEvery = envInt("BENCH_ACK_EVERY", 200);
  const adminUrl = process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres";
  const name = `parley_bench_stmt_${randomBytes(4).toString("hex")}`;
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const pool = createPool(url.toString(), 1);
  try {
    await migrate(pool, "relay", relayMigrations);
    if (process.env.BENCH_SQL_FILE) await pool.query(readFileSync(process.env.BENCH_SQL_FILE, "utf8"));
    const senders = ["s0", "s1"].map((id) => ({ identityId: id, deviceId: `${id}-d` }));
    const devices = Array.from({ length: receivers }, (_, i) => `r${i}-d`);
    for (const id of [...senders.map((s) => s.identityId), ...devices.map((d) => d.slice(0, -2))]) {
      await pool.query("INSERT INTO identities (id, public_key, created_at_ms) VALUES ($1, $2, 0)", [id, Buffer.alloc(32)]);
      await pool.query("INSERT INTO devices (id, identity_id, public_key, created_at_ms) VALUES ($1, $2, $3, 0)", [`${id}-d`, id, Buffer.alloc(32)]);
    }
    await pool.query("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload bytea NOT NULL)");
    const pid = await backendPid(pool);
    const payload = Buffer.alloc(payloadBytes, 0x61);

    // The relay: groups of `group` messages, message i to receiver i mod receivers, acks every ackEvery per receiver.
    let n = 0;
    let sendMs = 0;
    let ackMs = 0;
    const last = new Array<number>(receivers).fill(0);
    let sinceAck = 0;
    for (let g = 0; g < groups; g++) {
      const messages: OutgoingMessage[] = [];
      for (let k = 0; k < group; k++, n++) messages.push({ messageId: `m${n}`, recipients: [{ kind: "device", id: devices[n % receivers]! }], payload, contentType: "" });
      const t = backendCpuMs(pid);
      const outcomes = await enqueueAtOnce(pool, [{ sender: senders[g % senders.length]!, messages }], LIMITS, Date.now());
      sendMs += backendCpuMs(pid) - t;
      if (!outcomes) throw new Error("relay_enqueue refused a common-case group");
      for (const o of outcomes[0]!) last[devices.indexOf(o.queued[0]!.queue.id)] = o.queued[0]!.seq;
      if ((sinceAck += group) >= ackEvery * receivers) {
        sinceAck = 0;
        const t2 = backendCpuMs(pid);
        for (let r = 0; r < receivers; r++) await ackAtOnce(pool, devices[r]!, devices[r]!.slice(0, -2), last[r]!, 0);
        ackMs += backendCpuMs(pid) - t2;
      }
    }

    // The baseline: the same payloads, `group` rows per INSERT, deleted at the same rate.
    const insert = `INSERT INTO bench_raw (payload) VALUES ${Array.from({ length: group }, (_, i) => `($${i + 1})`).join(",")} RETURNING id`;
    const values = Array.from({ length: group }, () => payload);
    let rawInsertMs = 0;
    let rawDeleteMs = 0;
    let top = 0;
    sinceAck = 0;
    for (let g = 0; g < groups; g++) {
      const t = backendCpuMs(pid);
      const { rows } = await pool.query<{ id: number }>({ name: "bench_raw_insert", text: insert, values });
      rawInsertMs += backendCpuMs(pid) - t;
      top = rows[rows.length - 1]!.id;
      if ((sinceAck += group) >= ackEvery * receivers) {
        sinceAck = 0;
        const t2 = backendCpuMs(pid);
        await pool.query("DELETE FROM bench_raw WHERE id <= $1", [top]);
        rawDeleteMs += backendCpuMs(pid) - t2;
      }
    }

    const per = (ms: number) => ((ms * 1000) / n).toFixed(1).padStart(6);
    console.log(`Postgres backend CPU per message (µs), ${n} messages of ${payloadBytes} B in groups of ${group}, ${receivers} queues, acks every ${ackEvery} per queue:`);
    console.log(`  relay  send (relay_enqueue) ${per(sendMs)}   ack (relay_ack) ${per(ackMs)}   total ${per(sendMs + ackMs)}`);
    console.log(`  raw    INSERT               ${per(rawInsertMs)}   DELETE          ${per(rawDeleteMs)}   total ${per(rawInsertMs + rawDeleteMs)}`);
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((err: unknown) => {
  console.error(`statement-cost: ${(err as Error).message}`);
  process.exit(1);
});
