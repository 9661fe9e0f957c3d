/**
 * Long-running child processes for test infrastructure (etcd, kube-apiserver)
 * that stop on request, can be crashed on purpose, and never outlive the test
 * process.
 *
 *   const p = new TetheredProcess("etcd", "/path/etcd", ["--data-dir=..."], "/tmp/etcd.log");
 *   p.start();
 *   await p.until("etcd healthy", () => probe(), 30_000);   // fails fast with the log tail if it exits
 *   await p.stop();                                          // SIGTERM, SIGKILL after a grace period
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { waitFor } from "./wait.js";

/**
 * A child that cannot outlive this process: it runs under a bash tether that
 * holds our pipe and sends SIGTERM to the child when the pipe closes, which
 * happens on stop() and also when the test process dies (even by SIGKILL), so
 * a crashed or timed-out test leaves no apiserver behind holding a port.
 */
const TETHER = [
  "exec 3<&0",
  '"$@" 0</dev/null 3<&- &',
  "child=$!",
  '( read -r -u 3 _; kill -TERM "$child" 2>/dev/null ) &',
  "tether=$!",
  "exec 3<&-",
  'wait "$child"; code=$?',
  'kill "$tether" 2>/dev/null',
  "exit $code",
].join("\n");

export class TetheredProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exitCode: number | null = null;

  constructor(
    private readonly name: string,
    private readonly binary: string,
    private readonly args: string[],
    private readonly logFile: string,
  ) {}

  get pgid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    const log = openSync(this.logFile, "a");
    // detached: its own process group, so stop() can SIGKILL the binary and the tether together.
    const child = spawn("bash", ["-c", TETHER, this.name, this.binary, ...this.args], { stdio: ["pipe", log, log], detached: true });
    closeSync(log);
    this.exitCode = null;
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => ((this.exitCode = code ?? (signal ? 128 : 1)), resolve())));
    child.once("error", () => {});
    this.child = child;
  }

  /** Waits for `probe`, failing early with the log's tail if the process exits first. */
  async until(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const outcome = await waitFor(what, async () => (this.exitCode !== null ? "exited" : (await probe()) && "ready"), timeoutMs, 100).catch(
      (err: Error) => {
        throw new Error(`${err.message}\n${this.name} log (${this.logFile}):\n${this.logTail()}`);
      },
    );
    if (outcome === "exited") throw new Error(`${this.name} exited with ${this.exitCode} before ${what}:\n${this.logTail()}`);
  }

  /** SIGTERM through the tether; SIGKILL if still running after graceMs. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.child || this.exitCode !== null) return;
    this.child.stdin?.end();
    const timer = setTimeout(() => this.killGroup(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** SIGKILL to the binary and its tether at once, as a crash would. */
  async kill(): Promise<void> {
    if (!this.child || this.exitCode !== null) return;
    this.killGroup();
    await this.exited;
  }

  private killGroup(): void {
    try {
      process.kill(-this.child!.pid!, "SIGKILL");
    } catch {
      /* already gone */
    }
  }

  private logTail(): string {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-30).join("\n");
    } catch {
      return "(no log)";
    }
  }
}
