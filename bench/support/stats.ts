// Benchmark support: latency recording, peak-RSS sampling, payload
// time-stamping and result tables. Shared by the relay benchmark and its
// baselines (bench/relay/baselines.ts).

import { readFileSync, readdirSync } from "node:fs";

/** Latency summary in milliseconds (nearest-rank percentiles). */
export type Percentiles = {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
};

export type BenchResult = {
  name: string;
  messages: number;
  seconds: number;
  msgsPerSec: number;
  sendAck: Percentiles;
  endToEnd: Percentiles;
  /** Peak RSS of the benchmarking (client) process during the run. */
  peakRssMiB: number;
  /** Optional: peak RSS of the server process(es) under test, summed. */
  serverPeakRssMiB?: number;
  notes?: string;
};

export const EMPTY_PERCENTILES: Percentiles = Object.freeze({
  count: 0,
  p50: NaN,
  p90: NaN,
  p99: NaN,
  max: NaN,
  mean: NaN,
}) as Percentiles;

/** Wall-clock milliseconds since the epoch with sub-ms resolution. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Records latency samples (ms). Storage is a growable Float64Array so a
 * million samples cost 8 MB and no per-sample allocation.
 */
export class LatencyRecorder {
  private buf: Float64Array;
  private n = 0;

  constructor(expected = 1024) {
    this.buf = new Float64Array(Math.max(16, expected));
  }

  get count(): number {
    return this.n;
  }

  /** Record one sample in milliseconds. */
  record(ms: number): void {
    if (this.n === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.n++] = ms;
  }

  /** Record `nowMs() - startMs`; returns the sample. */
  recordSince(startMs: number): number {
    const ms = nowMs() - startMs;
    this.record(ms);
    return ms;
  }

  reset(): void {
    this.n = 0;
  }

  /** Nearest-rank percentile (q in [0,100]) of the samples so far. */
  percentile(q: number): number {
    if (this.n === 0) return NaN;
    const sorted = this.buf.slice(0, this.n).sort();
    return rank(sorted, q);
  }

  percentiles(): Percentiles {
    if (this.n === 0) return { ...EMPTY_PERCENTILES };
    const sorted = this.buf.slice(0, this.n).sort(); // typed-array sort is numeric
    let sum = 0;
    for (let i = 0; i < sorted.length; i++) sum += sorted[i]!;
    return {
      count: this.n,
      p50: rank(sorted, 50),
      p90: rank(sorted, 90),
      p99: rank(sorted, 99),
      max: sorted[sorted.length - 1]!,
      mean: sum / this.n,
    };
  }
}

function rank(sorted: Float64Array, q: number): number {
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((q / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

// ---------------------------------------------------------------- payloads

/**
 * A payload of `bytes` bytes (min 8) whose first 8 bytes are the send time
 * (float64 little-endian, `performance.timeOrigin + performance.now()`).
 * The rest is filler ('a').
 */
export function makeStampedPayload(bytes: number, sendMs: number = nowMs()): Buffer {
  const buf = Buffer.allocUnsafe(Math.max(8, bytes));
  buf.fill(0x61, 8);
  buf.writeDoubleLE(sendMs, 0);
  return buf;
}

/** Re-stamp an existing payload buffer in place (first 8 bytes). */
export function stampPayload(buf: Uint8Array, sendMs: number = nowMs()): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setFloat64(0, sendMs, true);
}

/** The send time embedded by makeStampedPayload/stampPayload. */
export function readPayloadStamp(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getFloat64(0, true);
}

// -------------------------------------------------------------- memory

/** VmRSS of a process in bytes, from /proc/PID/status; undefined if gone/unreadable. */
export function readProcessRssBytes(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/**
 * Proportional set size (Pss) of a process in bytes, from
 * /proc/PID/smaps_rollup: shared pages are divided among the processes
 * sharing them, so Pss values of a process group (e.g. all postgres
 * backends) can be summed without counting shared_buffers N times.
 */
export function readProcessPssBytes(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  } catch {
    return undefined;
  }
  const m = /^Pss:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** utime + stime of a process in seconds, from /proc/PID/stat (10 ms ticks); 0 if gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Pids whose /proc/PID/comm equals one of `names` (e.g. "nats-server", "beam.smp", "postgres"). */
export function findPidsByName(...names: string[]): number[] {
  const want = new Set(names);
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return pids;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const comm = readFileSync(`/proc/${e}/comm`, "utf8").trim();
      if (want.has(comm)) pids.push(Number(e));
    } catch {
      // process went away
    }
  }
  return pids;
}

/**
 * What a PeakRssSampler measures:
 *  - "self": process.memoryUsage().rss of this process;
 *  - a pid: that process's VmRSS;
 *  - pids: the sum of their VmRSS (processes that vanish count 0);
 *  - { pids, metric }: the sum of their VmRSS ("rss") or Pss ("pss", better
 *    for multi-process servers that share memory, such as Postgres);
 *  - a function returning bytes (or undefined to skip the sample).
 */
export type RssSource =
  | "self"
  | number
  | number[]
  | { pids: number[]; metric?: "rss" | "pss" }
  | (() => number | undefined);

function sumOver(pids: number[], read: (pid: number) => number | undefined): () => number | undefined {
  const list = [...pids];
  return () => {
    let sum = 0;
    let any = false;
    for (const pid of list) {
      const v = read(pid);
      if (v !== undefined) {
        sum += v;
        any = true;
      }
    }
    return any ? sum : undefined;
  };
}

export const MiB = 1024 * 1024;

/** Samples RSS every `intervalMs` (default 50) between start() and stop(), keeping the peak. */
export class PeakRssSampler {
  private timer: NodeJS.Timeout | undefined;
  private peak = 0;
  private readonly read: () => number | undefined;

  constructor(
    source: RssSource = "self",
    private readonly intervalMs = 50,
  ) {
    if (source === "self") this.read = () => process.memoryUsage().rss;
    else if (typeof source === "number") this.read = () => readProcessRssBytes(source);
    else if (Array.isArray(source)) this.read = sumOver(source, readProcessRssBytes);
    else if (typeof source === "function") this.read = source;
    else this.read = sumOver(source.pids, source.metric === "pss" ? readProcessPssBytes : readProcessRssBytes);
  }

  /** Take one sample now (also done automatically by start/stop). */
  sample(): void {
    const v = this.read();
    if (v !== undefined && v > this.peak) this.peak = v;
  }

  start(): this {
    this.stopTimer();
    this.peak = 0;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** Stops sampling; returns the peak in bytes. */
  stop(): number {
    this.sample();
    this.stopTimer();
    return this.peak;
  }

  get peakBytes(): number {
    return this.peak;
  }

  get peakMiB(): number {
    return this.peak / MiB;
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

// -------------------------------------------------------------- output

function fmt(n: number | undefined, digits: number): string {
  if (n === undefined || !Number.isFinite(n)) return "-";
  return n.toFixed(digits);
}

function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return "-";
  return Math.round(n).toLocaleString("en-US");
}

/**
 * Prints an aligned text table to stdout and returns the same results as a
 * Markdown table (for bench/RESULTS.md). Latencies in ms, memory in MiB.
 */
export function printTable(results: BenchResult[]): string {
  const withServer = results.some((r) => r.serverPeakRssMiB !== undefined);
  const headers = [
    "name",
    "messages",
    "seconds",
    "msgs/s",
    "ack p50",
    "ack p99",
    "e2e p50",
    "e2e p99",
    "e2e max",
    "peak RSS MiB",
    ...(withServer ? ["server RSS MiB"] : []),
    "notes",
  ];
  const rows = results.map((r) => [
    r.name,
    fmtInt(r.messages),
    fmt(r.seconds, 2),
    fmtInt(r.msgsPerSec),
    fmt(r.sendAck.p50, 2),
    fmt(r.sendAck.p99, 2),
    fmt(r.endToEnd.p50, 2),
    fmt(r.endToEnd.p99, 2),
    fmt(r.endToEnd.max, 2),
    fmt(r.peakRssMiB, 1),
    ...(withServer ? [fmt(r.serverPeakRssMiB, 1)] : []),
    r.notes ?? "",
  ]);
  const numeric = headers.map((h) => h !== "name" && h !== "notes");
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const text = [line(headers), widths.map((w, i) => (i === widths.length - 1 ? "-".repeat(5) : "-".repeat(w))).join("  "), ...rows.map(line)];
  console.log(text.join("\n"));
  console.log("(latencies in ms: ack = send start -> durable ack; e2e = send start -> received by consumer)");

  const esc = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const md = [
    `| ${headers.join(" | ")} |`,
    `|${numeric.map((n) => (n ? " ---: " : " --- ")).join("|")}|`,
    ...rows.map((row) => `| ${row.map(esc).join(" | ")} |`),
  ];
  return md.join("\n") + "\n";
}
