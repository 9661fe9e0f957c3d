/**
 * `parley compliance` as a real process for the benchmark, with what the
 * figures need from it: its admin client, CPU seconds, and peak RSS (VmHWM,
 * which can be reset so that one phase's peak is read alone).
 *
 *   const svc = await ComplianceProcess.start({ databaseUrl, natsUrl, stream, outputDir, args: ["--eml", "true"] });
 *   await svc.waitStaged(100_000);  svc.resetPeakRss();  await svc.admin.exportNow();  svc.peakRssBytes();
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { ComplianceAdmin } from "../../client/compliance.js";
import { PARLEY_CLI, Proc } from "../../test/support/processes.js";
import { nowMs } from "../support/stats.js";

const TOKEN = "bench-compliance-admin-token";

export interface ComplianceProcessOptions {
  databaseUrl: string;
  natsUrl: string;
  stream: string;
  outputDir: string;
  /** Durable consumer name (default: a new one). */
  consumer?: string;
  args?: string[];
  /** Run with --cpu-prof into this directory. */
  cpuProfDir?: string;
}

export class ComplianceProcess {
  private constructor(readonly proc: Proc, readonly admin: ComplianceAdmin, readonly httpPort: number, readonly spawnedAtMs: number, readonly readyAtMs: number) {}

  static async start(o: ComplianceProcessOptions): Promise<ComplianceProcess> {
    const prof = o.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", o.cpuProfDir] : [];
    const args = [
      "compliance", "--database-url", o.databaseUrl, "--nats-url", o.natsUrl, "--compliance-stream", o.stream,
      "--consumer", o.consumer ?? `bench-${randomBytes(4).toString("hex")}`, "--output-dir", o.outputDir,
      "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--conversation-interval", "1h", ...(o.args ?? []),
    ];
    const spawnedAtMs = nowMs();
    const proc = new Proc(spawn(process.execPath, [...prof, PARLEY_CLI, ...args], {
      env: { ...process.env, PARLEY_ADMIN_TOKEN: TOKEN, PARLEY_LOG_LEVEL: "info" }, stdio: ["ignore", "pipe", "pipe"],
    }));
    const ready = await proc.waitForOutput(/"grpcPort":(\d+),"httpPort":(\d+).*compliance ready/, 60_000);
    return new ComplianceProcess(proc, ComplianceAdmin.create(`127.0.0.1:${ready[1]}`, TOKEN), Number(ready[2]), spawnedAtMs, nowMs());
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  /** utime + stime so far, in seconds; with children: of its exited children (xsltproc) instead. */
  cpuSeconds(children = false): number {
    const f = readFileSync(`/proc/${this.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    const [u, s] = children ? [13, 14] : [11, 12];
    return (Number(f[u]) + Number(f[s])) / 100;
  }

  /** V8 heap in use and external memory (Buffers) now, from its /metrics: what RSS holds that is live. */
  async heapBytes(): Promise<{ used: number; external: number }> {
    const text = await (await fetch(`http://127.0.0.1:${this.httpPort}/metrics`)).text();
    const read = (name: string) => Number(new RegExp(`^parley_${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    return { used: read("nodejs_heap_size_used_bytes"), external: read("nodejs_external_memory_bytes") };
  }

  private statusKiB(field: "VmHWM" | "VmRSS"): number {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
    return m ? Number(m[1]) : NaN;
  }

  /** Peak resident set since start or the last resetPeakRss(). */
  peakRssBytes(): number {
    return this.statusKiB("VmHWM") * 1024;
  }

  rssBytes(): number {
    return this.statusKiB("VmRSS") * 1024;
  }

  /** Resets VmHWM to the current RSS (Linux: "5" into clear_refs); false where not permitted. */
  resetPeakRss(): boolean {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, "5");
      return true;
    } catch {
      return false;
    }
  }

  /** Polls the status RPC until `count` records are staged; returns when (ms, this clock). */
  async waitStaged(count: number, timeoutMs = 900_000, pollMs = 200): Promise<number> {
    const deadline = nowMs() + timeoutMs;
    for (;;) {
      const s = await this.admin.status();
      if (s.stagedRecords >= count) return nowMs();
      if (nowMs() > deadline) throw new Error(`${s.stagedRecords}/${count} records staged after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** SIGTERM (a graceful stop: --cpu-prof writes its profile), SIGKILL if it hangs. */
  async stop(): Promise<void> {
    this.admin.close();
    await this.proc.stop("SIGTERM", 60_000).catch(() => this.proc.stop("SIGKILL"));
  }
}
