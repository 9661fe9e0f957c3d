/**
 * The operator as a child process for test/operator: `parley operator` against
 * a test control plane, with its HTTP port and metrics at hand.
 *
 *   const op = await startOperator(cp, ["--lease-duration", "8s"]);
 *   await op.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "success" });
 *   await op.proc.stop("SIGKILL");
 */
import { get } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ControlPlane } from "./controlplane.js";
import { startParley, type Proc } from "./processes.js";

/** crds/ in the repository (this file runs from dist/test/support). */
export const CRDS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "crds");

export interface OperatorProcess {
  proc: Proc;
  httpPort: number;
  /** The value of one sample in /metrics (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  http(path: string): Promise<{ status: number; body: string }>;
}

export async function startOperator(cp: ControlPlane, args: string[] = []): Promise<OperatorProcess> {
  const proc = startParley(["operator", "--kubeconfig", cp.kubeconfig, "--http-port", "0", "--host", "127.0.0.1", "--lease-namespace", "default", ...args], { PARLEY_LOG_LEVEL: "info" });
  const started = await proc.waitForOutput(/"httpPort":(\d+)[^\n]*"operator started"/, 20_000).catch(async (err: unknown) => {
    await proc.stop("SIGKILL").catch(() => {});
    throw err;
  });
  const httpPort = Number(started[1]);
  const http = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      get({ host: "127.0.0.1", port: httpPort, path, timeout: 5000 }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      }).on("error", reject);
    });
  return {
    proc,
    httpPort,
    http,
    async metric(name, labels = {}) {
      const { body } = await http("/metrics");
      const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      for (const line of body.split("\n")) {
        if (!line.startsWith(name)) continue;
        const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const have = (m[2] ?? "").split(",");
        if (want.every((w) => have.includes(w))) return Number(m[3]);
      }
      return 0;
    },
  };
}
