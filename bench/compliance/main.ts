/**
 * The compliance benchmark, with its baselines in the same run:
 *
 *   npm run build && node dist/bench/compliance/main.js [--quick]      (or: make bench BENCH=compliance)
 *
 * 1. Collection: N `message.posted` records (ChatMessages of ~200 bytes of
 *    text, as ComplianceLog.record writes them) published to a stream of the
 *    benchmark's own; then a `parley compliance` process (real Postgres
 *    staging database) is started and timed until its status RPC reports all
 *    N staged. Baselines: the same messages consumed and acked with no
 *    database; the same rows INSERTed with no JetStream (plain unnest, and
 *    the service's own staging statement), batches of the same size. Then
 *    the rate while records are published and collected at once.
 * 2. Export of those N staged records across the rooms (default XML only;
 *    then again, the same records, with the CSV stylesheet and EML on):
 *    time, files, bytes, and the service's peak RSS during the export (VmHWM).
 * 3. Lag from a post (through a real channel instance) to the XML file
 *    holding it, with a short conversation interval; p50/p99/max.
 *
 * Scale (flag, or environment BENCH_<FLAG>, e.g. BENCH_RECORDS=20000):
 *   --records 100000 --rooms 1000 --text-bytes 200 --staging-batch 500 --concurrent 20000
 *   --lag-interval 2000 (ms) --lag-rate 20 (posts/s) --lag-seconds 30 --lag-rooms 10 --lag-users 4
 *   --only staging,lag   --quick (5,000 records over 50 rooms, 2,000 concurrent, 8 s of lag probes)
 *   --cpu-prof-dir DIR (service processes with --cpu-prof)   --write-results / BENCH_WRITE_RESULTS=0|1
 *   BENCH_NOTE="…" adds a paragraph to the RESULTS.md section (e.g. the machine's state)
 * Postgres and NATS: PARLEY_TEST_PG_URL, PARLEY_TEST_NATS_URL (the test harness's; default local).
 * Results go into bench/RESULTS.md for full runs (not --quick, unless --write-results).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { NatsBus } from "../../services/common/bus/nats.js";
import { complianceStream } from "../../services/common/compliance.js";
import { createPool, migrate } from "../../services/common/db.js";
import { complianceMigrations } from "../../services/compliance/migrations.js";
import type { Manifest } from "../../services/compliance/output.js";
import { STYLESHEETS } from "../../test/support/compliance.js";
import { Harness, NATS_URL } from "../../test/support/harness.js";
import { MiB, nowMs } from "../support/stats.js";
import { measureLag, type LagResult } from "./lag.js";
import { consumeAndAck, insertBatches, makeRecords, publishRecords } from "./records.js";
import { ComplianceProcess } from "./service-process.js";

const FLAGS = { records: "100000", rooms: "1000", "text-bytes": "200", "staging-batch": "500", concurrent: "20000", "lag-interval": "2000", "lag-rate": "20", "lag-seconds": "30", "lag-rooms": "10", "lag-users": "4", only: "staging,lag" };
const QUICK: Partial<typeof FLAGS> = { records: "5000", rooms: "50", concurrent: "2000", "lag-rate": "10", "lag-seconds": "8", "lag-rooms": "5", "lag-users": "2" };
const envName = (flag: string) => `BENCH_${flag.toUpperCase().replace(/-/g, "_")}`;

const { values: args } = parseArgs({
  options: {
    ...Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: "string" as const }])),
    quick: { type: "boolean", default: process.env.BENCH_QUICK === "1" },
    "write-results": { type: "boolean" },
    "cpu-prof-dir": { type: "string", default: process.env.BENCH_CPU_PROF_DIR },
  },
});
const flag = (k: keyof typeof FLAGS): string => ((args as Record<string, unknown>)[k] as string | undefined) ?? process.env[envName(k)] ?? (args.quick ? QUICK[k] : undefined) ?? FLAGS[k];
const num = (k: Exclude<keyof typeof FLAGS, "only">): number => {
  const v = Number(flag(k));
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k} (${envName(k)}) must be a positive number, got '${flag(k)}'`);
  return v;
};
const N = num("records");
const ROOMS = num("rooms");
const TEXT = num("text-bytes");
const BATCH = num("staging-batch");
const CONCURRENT = num("concurrent");
const ONLY = new Set(flag("only").split(",").map((s) => s.trim()));
for (const o of ONLY) if (o !== "staging" && o !== "lag") throw new Error(`--only: unknown part '${o}' (staging, lag)`);
const CPU_PROF = args["cpu-prof-dir"] as string | undefined;
const WRITE = process.env.BENCH_WRITE_RESULTS ? process.env.BENCH_WRITE_RESULTS !== "0" : (args["write-results"] ?? !args.quick);

const f0 = (n: number) => Math.round(n).toLocaleString("en-US");
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
const mib = (b: number) => f1(b / MiB);

interface ExportRow { label: string; conversations: number; records: number; files: number; bytes: number; byKind: Record<string, number>; seconds: number; peakRss: number; rssBefore: number; cpu: number; childCpu: number; heapAfter: number; errors: number }

async function exportOnce(svc: ComplianceProcess, outputDir: string, label: string): Promise<ExportRow> {
  const reset = svc.resetPeakRss();
  const rssBefore = svc.rssBytes();
  const cpu0 = svc.cpuSeconds();
  const child0 = svc.cpuSeconds(true);
  const t0 = nowMs();
  const r = await svc.admin.exportNow(1_800_000);
  const seconds = (nowMs() - t0) / 1000;
  const manifest = JSON.parse(readFileSync(join(outputDir, `${r.batchId}.manifest.json`), "utf8")) as Manifest;
  const byKind: Record<string, number> = {};
  for (const f of manifest.files) byKind[f.kind] = (byKind[f.kind] ?? 0) + f.bytes;
  const status = await svc.admin.status();
  return {
    label, conversations: r.conversations, records: r.records, files: r.files.length, bytes: manifest.files.reduce((n, f) => n + f.bytes, 0),
    byKind, seconds, peakRss: reset ? svc.peakRssBytes() : NaN, rssBefore, cpu: svc.cpuSeconds() - cpu0, childCpu: svc.cpuSeconds(true) - child0, heapAfter: (await svc.heapBytes()).used, errors: status.errors,
  };
}

async function staging(h: Harness, out: string[]): Promise<void> {
  const bus = await NatsBus.connect({ servers: NATS_URL, name: "parley-bench" });
  const stream = complianceStream(`PARLEY_BENCH_${randomBytes(4).toString("hex").toUpperCase()}`);
  h.defer(async () => {
    await bus.deleteStream(stream.name);
    await bus.close();
  });
  await bus.ensureStream(stream.config);
  const records = makeRecords({ count: N, rooms: ROOMS, textBytes: TEXT });
  const avgBytes = records.reduce((n, r) => n + r.json.length, 0) / N;
  const pub = await publishRecords(bus, stream, records);
  console.log(`published ${N} records (${avgBytes.toFixed(0)} B each) in ${pub.seconds.toFixed(2)} s`);

  // Baselines: the consuming half alone, then the database half alone.
  const raw = await consumeAndAck(bus, stream.name, N, BATCH * 2);
  console.log(`raw consume + ack: ${f0(raw.perSec)}/s`);
  const basePool = createPool(await h.database("bcbase"), 1);
  await migrate(basePool, "compliance", complianceMigrations);
  for (const how of ["raw", "service"] as const) await insertBatches(basePool, records.slice(0, BATCH * 10), BATCH, how); // warm-up
  const pgRaw = await insertBatches(basePool, records, BATCH, "raw");
  const pgService = await insertBatches(basePool, records, BATCH, "service");
  await basePool.end();
  console.log(`postgres: raw ${f0(pgRaw.perSec)}/s, staging statement ${f0(pgService.perSec)}/s`);

  // The service on the backlog.
  const databaseUrl = await h.database("bcstage");
  const outputDir = mkdtempSync(join(os.tmpdir(), "parley-bench-compliance-"));
  h.defer(() => rmSync(outputDir, { recursive: true, force: true }));
  const consumer = `bench-${randomBytes(4).toString("hex")}`;
  const common = { databaseUrl, natsUrl: NATS_URL, stream: stream.name, outputDir, consumer, cpuProfDir: CPU_PROF, args: ["--staging-batch-size", String(BATCH)] };
  let svc = await ComplianceProcess.start(common);
  h.defer(() => svc.stop());
  const readyRss = svc.rssBytes();
  const cpu0 = svc.cpuSeconds();
  const stagedAt = await svc.waitStaged(N);
  const collect = { fromReady: (stagedAt - svc.readyAtMs) / 1000, fromSpawn: (stagedAt - svc.spawnedAtMs) / 1000, cpu: svc.cpuSeconds() - cpu0, rss: svc.rssBytes(), heap: await svc.heapBytes() };
  console.log(`service staged ${N} in ${collect.fromReady.toFixed(2)} s after ready`);

  // Export, default XML. The staged rows are kept aside to stage the very same records again for the second export.
  const db = createPool(databaseUrl, 1);
  h.defer(() => db.end());
  await db.query("CREATE TABLE bench_snapshot AS SELECT * FROM staged_events");
  const xmlRow = await exportOnce(svc, outputDir, "default XML");
  console.log(JSON.stringify(xmlRow));
  await svc.stop();
  for (const n of readdirSync(outputDir)) rmSync(join(outputDir, n), { force: true });
  await db.query("TRUNCATE exported_ids, participants, rooms; INSERT INTO staged_events SELECT * FROM bench_snapshot; DROP TABLE bench_snapshot");
  svc = await ComplianceProcess.start({ ...common, args: [...common.args, "--xslt", join(STYLESHEETS, "csv.xsl"), "--xslt-extension", "csv", "--eml", "true"] });
  await svc.waitStaged(N);
  const allRow = await exportOnce(svc, outputDir, "XML + CSV (xsltproc) + EML");
  console.log(JSON.stringify(allRow));
  for (const n of readdirSync(outputDir)) rmSync(join(outputDir, n), { force: true });

  // Steady state: publishing and collecting at once (staging is empty after the export).
  const more = makeRecords({ count: CONCURRENT, rooms: ROOMS, textBytes: TEXT });
  const cpu1 = svc.cpuSeconds();
  const t0 = nowMs();
  const pub2 = await publishRecords(bus, stream, more);
  const behind = CONCURRENT - (await svc.admin.status()).stagedRecords;
  const doneAt = await svc.waitStaged(CONCURRENT);
  const steady = { seconds: (doneAt - t0) / 1000, behind, cpu: svc.cpuSeconds() - cpu1 };
  console.log(`concurrent: ${f0(CONCURRENT / steady.seconds)}/s staged while publishing at ${f0(pub2.perSec)}/s`);
  await svc.stop();

  const pct = (cpu: number, s: number) => `${Math.round((cpu / s) * 100)}%`;
  out.push(
    `**Collection into staging**: ${f0(N)} \`message.posted\` records over ${f0(ROOMS)} rooms, ${f0(TEXT)} B of text each (${avgBytes.toFixed(0)} B per JSON envelope), staging batches of ${BATCH} (the service's --staging-batch-size; at most ${BATCH * 2} unacked).`,
    "",
    "| path | records | seconds | records/s | notes |",
    "| --- | ---: | ---: | ---: | --- |",
    `| publish to JetStream (source of the run) | ${f0(N)} | ${pub.seconds.toFixed(2)} | ${f0(pub.perSec)} | 256 PubAcks awaited at once |`,
    `| baseline: raw JetStream consume + ack | ${f0(N)} | ${raw.seconds.toFixed(2)} | ${f0(raw.perSec)} | same NatsBus.consume() as the collector (pull 64, ${BATCH * 2} unacked), ack on arrival, no decoding, no database |`,
    `| baseline: raw Postgres INSERT … unnest | ${f0(N)} | ${pgRaw.seconds.toFixed(2)} | ${f0(pgRaw.perSec)} | batches of ${BATCH}, one after another, into the staging table (same indexes) |`,
    `| baseline: the service's staging statement, in-process | ${f0(N)} | ${pgService.seconds.toFixed(2)} | ${f0(pgService.perSec)} | StagingStore.stage (dedup against exported ids, ON CONFLICT DO NOTHING), batches of ${BATCH} |`,
    `| **compliance service: backlog → staged** | ${f0(N)} | ${collect.fromReady.toFixed(2)} | **${f0(N / collect.fromReady)}** | from "ready" to status stagedRecords = N (${collect.fromSpawn.toFixed(2)} s from spawn); service CPU ${pct(collect.cpu, collect.fromReady)} of a core; RSS ${mib(readyRss)} MiB at ready, ${mib(collect.rss)} MiB after (V8 heap in use ${mib(collect.heap.used)}, external ${mib(collect.heap.external)}) |`,
    `| **compliance service: staged while publishing** | ${f0(CONCURRENT)} | ${steady.seconds.toFixed(2)} | **${f0(CONCURRENT / steady.seconds)}** | publishing at ${f0(pub2.perSec)}/s meanwhile; ${f0(behind)} not yet staged when the last PubAck came; service CPU ${pct(steady.cpu, steady.seconds)} |`,
    "",
    `**Export** of the same ${f0(N)} staged records (${f0(xmlRow.conversations)} conversations), one \`Export\` RPC each; peak RSS = the service's VmHWM reset just before the export.`,
    "",
    "| export | files | MiB written | seconds | records/s | ms per conversation | peak RSS MiB | RSS before MiB | heap in use after MiB | service CPU s | xsltproc CPU s | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...[xmlRow, allRow].map((r) => `| ${r.label} | ${f0(r.files)} | ${mib(r.bytes)} (${Object.entries(r.byKind).map(([k, b]) => `${k} ${mib(b)}`).join(", ")}) | ${r.seconds.toFixed(2)} | ${f0(r.records / r.seconds)} | ${f1((r.seconds * 1000) / r.conversations)} | ${mib(r.peakRss)} | ${mib(r.rssBefore)} | ${mib(r.heapAfter)} | ${r.cpu.toFixed(1)} | ${r.childCpu.toFixed(1)} | ${r.errors} |`),
    "",
  );
}

function lagLines(r: LagResult, o: { intervalMs: number; rate: number; seconds: number; rooms: number }): string[] {
  const p = (x: { p50: number; p99: number; max: number }) => `${f0(x.p50)} / ${f0(x.p99)} / ${f0(x.max)}`;
  return [
    `**Lag from post to exported file**: ${f0(r.posted)} posts at ${o.rate}/s for ${o.seconds} s into ${o.rooms} rooms through a channel instance (in this process), \`--conversation-interval ${o.intervalMs}ms\`; ${r.batches} batches; ${r.failed} posts failed, ${r.missing} acked posts not found in an export.`,
    "",
    "| from the post's ack to … | p50 ms | p99 ms | max ms | mean ms |",
    "| --- | ---: | ---: | ---: | ---: |",
    `| the XML file holding it exists | ${p(r.toXml).split(" / ").join(" | ")} | ${f0(r.toXml.mean)} |`,
    `| its batch's manifest exists (complete for pickup) | ${p(r.toManifest).split(" / ").join(" | ")} | ${f0(r.toManifest.mean)} |`,
    `| (post call → ack) | ${p(r.postAck).split(" / ").join(" | ")} | ${f0(r.postAck.mean)} |`,
    `| (export per batch: claimed → manifest written) | ${p(r.exportMs).split(" / ").join(" | ")} | ${f0(r.exportMs.mean)} |`,
    "",
    `The lag is dominated by the interval: a record waits for the next export tick, ≈ interval/2 = ${f0(o.intervalMs / 2)} ms on average (up to a whole interval), plus the staging commit (≤ 20 ms batch delay) and the export itself (row above).`,
    "",
  ];
}

function writeResults(body: string): void {
  const file = fileURLToPath(new URL("../../../bench/RESULTS.md", import.meta.url));
  const begin = "<!-- bench:compliance:begin -->";
  const end = "<!-- bench:compliance:end -->";
  const command = `node dist/bench/compliance/main.js${process.argv.slice(2).length ? " " + process.argv.slice(2).join(" ") : ""}`;
  const reading = [
    "Reading the figures: collection pipelines a JetStream pull consumer into staging commits (a record is acked only after the commit that staged it, at most twice the batch size unacked), so its rate is bounded by the slower of the two baselines beside it, and below that by how well they overlap; the service's CPU (in the notes) shows whether it or the database is the limit.",
    "An export claims every staged record (one UPDATE), then per conversation (four at a time) reads its records and writes its files (each fsynced), then the manifest, then deletes the batch from staging; with the CSV stylesheet each conversation also runs one `xsltproc` process (the xsltproc CPU column).",
    "Peak RSS is the service process's VmHWM, reset just before the export; heap in use is V8's used heap from its /metrics (garbage not yet collected included), to compare with RSS, which V8 does not hand back when garbage is freed.",
  ].join("\n");
  const note = process.env.BENCH_NOTE ? `\n${process.env.BENCH_NOTE}\n` : "";
  const section = [begin, "## Compliance: collection, export, post-to-file lag (bench/compliance)", "", `Command: \`npm run build && ${command}\` (or \`make bench BENCH=compliance\`).`, "", reading, note, body, end].join("\n");
  const current = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmark results\n";
  const i = current.indexOf(begin);
  const j = current.indexOf(end);
  writeFileSync(file, i >= 0 && j > i ? current.slice(0, i) + section + current.slice(j + end.length) : `${current.trimEnd()}\n\n${section}\n`);
}

async function main(): Promise<void> {
  execFileSync("xsltproc", ["--version"], { stdio: "ignore" }); // the CSV export needs it; fail early
  const h = new Harness();
  const out: string[] = [];
  const load0 = os.loadavg()[0]!;
  try {
    if (ONLY.has("staging")) await staging(h, out);
    if (ONLY.has("lag")) {
      const o = { intervalMs: num("lag-interval"), rate: num("lag-rate"), seconds: num("lag-seconds"), rooms: num("lag-rooms"), users: num("lag-users"), cpuProfDir: CPU_PROF };
      out.push(...lagLines(await measureLag(h, o), o));
    }
  } finally {
    await h.cleanup();
  }
  out.unshift(`Run ${new Date().toISOString()} on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), load average ${load0.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end; Postgres, NATS, the service and this load generator share the machine.${args.quick ? " Quick mode (--quick): a trial scale, not the issue's figures." : ""}`, "");
  console.log(out.join("\n"));
  if (WRITE) writeResults(out.join("\n"));
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
