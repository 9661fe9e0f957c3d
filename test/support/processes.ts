/** Child processes for end-to-end tests: the real `parley` CLI, with output captured and waited on. */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { withTimeout } from "./wait.js";

export const PARLEY_CLI = fileURLToPath(new URL("../../client/cli/main.js", import.meta.url));

export class Proc {
  output = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on("data", (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  /** Resolves with the first match of re in the output so far or to come. */
  waitForOutput(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return withTimeout(`output matching ${re}`, new Promise((resolve, reject) => {
      void this.exited.then(({ code, signal }) => reject(new Error(`process exited (${code ?? signal}) before printing ${re}; output:\n${this.output.slice(-2000)}`)));
      const check = () => {
        const m = this.output.match(re);
        if (m) {
          this.child.stdout?.off("data", check);
          this.child.stderr?.off("data", check);
          resolve(m);
        }
      };
      this.child.stdout?.on("data", check);
      this.child.stderr?.on("data", check);
      check();
    }), timeoutMs);
  }

  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return withTimeout("process exit", this.exited, timeoutMs);
  }
}

/** Starts `parley ARGS…` as a child process. */
export function startParley(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  return new Proc(spawn(process.execPath, [PARLEY_CLI, ...args], { env: { ...process.env, PARLEY_LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] }));
}

/** Runs `parley ARGS…` to completion. */
export async function runParley(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [PARLEY_CLI, ...args], { env: { ...process.env, PARLEY_LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await withTimeout(`parley ${args.join(" ")}`, new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c))), timeoutMs);
  return { code, stdout, stderr };
}
