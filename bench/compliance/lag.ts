/**
 * Lag from a post to the message being in an exported file: a real channel
 * instance (in this process, ChatPool as in the integration tests) records
 * its compliance events to a stream of its own; a `parley compliance`
 * process with a short conversation interval exports them. Posts go at a
 * steady rate; for each, the time from the post's ack to (a) the moment the
 * XML file holding it appeared in the output directory and (b) the moment
 * its batch's manifest appeared (the batch is then complete for pickup).
 */
import { watch, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NatsBus } from "../../services/common/bus/nats.js";
import { complianceStream } from "../../services/common/compliance.js";
import type { Manifest } from "../../services/compliance/output.js";
import { batchTimeMs } from "../../services/compliance/output.js";
import { ChatPool, roomName } from "../../test/support/chat.js";
import { NATS_URL, type Harness } from "../../test/support/harness.js";
import { LatencyRecorder, nowMs, type Percentiles } from "../support/stats.js";
import { bounded } from "./records.js";
import { ComplianceProcess } from "./service-process.js";

export interface LagOptions {
  intervalMs: number;
  rate: number;
  seconds: number;
  rooms: number;
  users: number;
  cpuProfDir?: string;
}

export interface LagResult {
  posted: number;
  failed: number;
  missing: number;
  batches: number;
  toXml: Percentiles;
  toManifest: Percentiles;
  postAck: Percentiles;
  /** Per batch: manifest written − batch opened (the export itself), ms. */
  exportMs: Percentiles;
}

/** First time each name was seen in dir (inotify, with a readdir poll behind it). */
function watchDir(dir: string): { seen: Map<string, number>; close(): void } {
  const seen = new Map<string, number>();
  const note = (name: string | null) => {
    if (name && !name.startsWith(".") && !seen.has(name)) seen.set(name, nowMs());
  };
  const w = watch(dir, (_e, name) => note(typeof name === "string" ? name : null));
  const poll = setInterval(() => {
    for (const n of readdirSync(dir)) note(n);
  }, 50);
  return { seen, close: () => (w.close(), clearInterval(poll)) };
}

export async function measureLag(h: Harness, o: LagOptions): Promise<LagResult> {
  const stream = complianceStream(`PARLEY_BENCH_LAG_${Math.random().toString(16).slice(2, 10).toUpperCase()}`);
  const outputDir = mkdtempSync(join(tmpdir(), "parley-bench-lag-"));
  h.defer(() => rmSync(outputDir, { recursive: true, force: true }));
  const bus = await NatsBus.connect({ servers: NATS_URL, name: "parley-bench" });
  h.defer(async () => {
    await bus.deleteStream(stream.name);
    await bus.close();
  });

  const pool = await ChatPool.create(h);
  const ch = await pool.channel("bench-lag", { complianceStream: stream.name });
  const users = [];
  for (let u = 0; u < o.users; u++) users.push(await pool.user(`lag${u}`, { channel: ch.address }));
  const rooms: string[] = [];
  for (let r = 0; r < o.rooms; r++) {
    const room = roomName("lag");
    await users[0]!.chat.createRoom(room);
    for (const u of users.slice(1)) await u.chat.join(room);
    rooms.push(room);
  }
  const dir = watchDir(outputDir);
  const svc = await ComplianceProcess.start({
    databaseUrl: await h.database("bclag"), natsUrl: NATS_URL, stream: stream.name, outputDir,
    args: ["--conversation-interval", `${o.intervalMs}ms`], cpuProfDir: o.cpuProfDir,
  });
  h.defer(() => svc.stop());

  // Posts on a fixed schedule (not one after the other): a slow ack does not slow the offered rate.
  const acked = new Map<string, number>();
  const postAck = new LatencyRecorder();
  let failed = 0;
  const total = Math.round(o.rate * o.seconds);
  const t0 = nowMs();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / o.rate - nowMs();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const user = users[i % users.length]!;
    const room = rooms[i % rooms.length]!;
    const start = nowMs();
    inFlight.push(user.chat.post(room, `lag probe ${i}: ${"x".repeat(180)}`).then((m) => {
      const at = nowMs();
      postAck.record(at - start);
      acked.set(`msg:${m.roomId}:${m.eventSeq}`, at);
    }, () => void failed++));
  }
  await Promise.all(inFlight);

  // Every acked post is in some batch within a few intervals.
  const exported = new Map<string, { xml: string; batch: string }>();
  const scan = () => {
    for (const name of [...dir.seen.keys()].filter((n) => n.endsWith(".manifest.json"))) {
      const m = JSON.parse(readFileSync(join(outputDir, name), "utf8")) as Manifest;
      for (const f of m.files.filter((x) => x.kind === "xml")) {
        const xml = readFileSync(join(outputDir, f.name), "utf8");
        for (const hit of xml.matchAll(/<message event="posted"[^>]*? id="(msg:[^"]+)"/g)) if (!exported.has(hit[1]!)) exported.set(hit[1]!, { xml: f.name, batch: m.batch });
      }
    }
    return [...acked.keys()].every((id) => exported.has(id));
  };
  await bounded((async () => {
    while (!scan()) await new Promise((r) => setTimeout(r, Math.min(500, o.intervalMs / 4)));
  })(), o.intervalMs * 5 + 60_000, () => `${[...acked.keys()].filter((id) => !exported.has(id)).length} acked posts not exported`).catch(() => undefined);
  dir.close();

  const toXml = new LatencyRecorder(total);
  const toManifest = new LatencyRecorder(total);
  let missing = 0;
  for (const [id, at] of acked) {
    const e = exported.get(id);
    const xmlAt = e && dir.seen.get(e.xml);
    const manAt = e && dir.seen.get(`${e.batch}.manifest.json`);
    if (!e || xmlAt === undefined || manAt === undefined) {
      missing++;
      continue;
    }
    toXml.record(xmlAt - at);
    toManifest.record(manAt - at);
  }
  const exportMs = new LatencyRecorder();
  const batches = new Set([...exported.values()].map((e) => e.batch));
  for (const b of batches) {
    const m = JSON.parse(readFileSync(join(outputDir, `${b}.manifest.json`), "utf8")) as Manifest;
    exportMs.record(Date.parse(m.createdAt) - batchTimeMs(b));
  }
  return { posted: total, failed, missing, batches: batches.size, toXml: toXml.percentiles(), toManifest: toManifest.percentiles(), postAck: postAck.percentiles(), exportMs: exportMs.percentiles() };
}
