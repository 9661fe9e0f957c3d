/**
 * Replicated relays for tests: a change stream of their own on the real NATS,
 * and replicas started in this process (one database each) or as separate
 * `parley relay` processes that a test can SIGKILL.
 *
 *   const set = new ReplicaSet(h, "relay-ha-1");
 *   const a = await set.inProcess("a", "primary");
 *   const b = await set.inProcess("b", "secondary");
 *   const p = await set.process("c", "secondary");   // p.kill("SIGKILL")
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { createPool } from "../../services/common/db.js";
import { startGrpcServer } from "../../services/common/grpc.js";
import { ChangeStream, defaultStreamName } from "../../services/relay/replication/change-stream.js";
import { RelayService } from "../../services/relay/service.js";
import { RelayAdmin } from "../../client/admin.js";
import { DEFAULT_RELAY_OPTIONS, NATS_URL, newRelayKey, type Harness, type RelayInstance } from "./harness.js";
import { waitFor } from "./wait.js";

export const ADMIN_TOKEN = DEFAULT_RELAY_OPTIONS.adminToken;
/** The compiled CLI beside this compiled file (dist/client/cli/main.js). */
const CLI_MAIN = fileURLToPath(new URL("../../client/cli/main.js", import.meta.url));

export interface ReplicaProcess {
  name: string;
  address: string;
  httpPort: number;
  databaseUrl: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
  /** Sends a signal and waits for the process to end. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

export class ReplicaSet {
  readonly key = newRelayKey();
  readonly streamName: string;

  constructor(private readonly h: Harness, readonly relayId: string) {
    this.streamName = defaultStreamName(relayId);
  }

  async changeStream(): Promise<ChangeStream> {
    const s = await ChangeStream.connect({ servers: NATS_URL, relayId: this.relayId, name: this.streamName });
    this.h.defer(() => s.close());
    return s;
  }

  /** Deletes the stream now and at cleanup (each test starts from an empty stream). */
  async fresh(): Promise<void> {
    const s = await this.changeStream();
    await s.destroy();
    this.h.defer(async () => {
      const t = await ChangeStream.connect({ servers: NATS_URL, relayId: this.relayId, name: this.streamName });
      await t.destroy();
      await t.close();
    });
  }

  async inProcess(name: string, role: "primary" | "secondary", databaseUrl?: string): Promise<RelayInstance & { databaseUrl: string }> {
    const url = databaseUrl ?? (await this.h.database(`ha_${name}`));
    const pool = createPool(url);
    const changes = await this.changeStream();
    const service = await RelayService.create(
      { ...DEFAULT_RELAY_OPTIONS, relayId: this.relayId, replication: { role, replicaName: name } },
      { pool, bus: await this.h.nats(), clock: (await import("../../services/common/clock.js")).systemClock, log: this.h.log, key: this.key, changes },
    );
    const grpc = await startGrpcServer({ host: "127.0.0.1", port: 0, services: service.services });
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await service.stop();
      await grpc.shutdown(2000);
      await pool.end();
    };
    this.h.defer(stop);
    return { address: `127.0.0.1:${grpc.port}`, service, grpc, stop, databaseUrl: url };
  }

  /** A `parley relay` process (dist/client/cli/main.js) on fixed free ports. */
  async process(name: string, role: "primary" | "secondary" | "standalone", opts: { databaseUrl?: string; grpcPort?: number; httpPort?: number } = {}): Promise<ReplicaProcess> {
    const databaseUrl = opts.databaseUrl ?? (await this.h.database(`ha_${name}`));
    const keyFile = join(tmpdir(), `parley-${this.relayId}-${randomBytes(3).toString("hex")}.pem`);
    writeFileSync(keyFile, this.key.privateKeyPem, { mode: 0o600 });
    const grpcPort = opts.grpcPort ?? (await freePort());
    const httpPort = opts.httpPort ?? (await freePort());
    const args = [
      CLI_MAIN, "relay",
      "--relay-id", this.relayId, "--database-url", databaseUrl, "--nats-url", NATS_URL, "--relay-key-file", keyFile,
      "--role", role, "--replica-name", name, "--primary-stream", this.streamName,
      "--host", "127.0.0.1", "--grpc-port", String(grpcPort), "--http-port", String(httpPort), "--admin-token", ADMIN_TOKEN,
      "--shutdown-grace", "1s",
    ];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PARLEY_LOG_LEVEL: process.env.PARLEY_LOG_LEVEL ?? "warn" } });
    const output: string[] = [];
    const keep = (b: Buffer) => {
      output.push(b.toString());
      if (output.length > 200) output.shift();
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const proc: ReplicaProcess = {
      name, address: `127.0.0.1:${grpcPort}`, httpPort, databaseUrl, child, output, exited,
      kill: async (signal) => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        await exited;
      },
    };
    this.h.defer(() => proc.kill("SIGKILL"));
    const admin = RelayAdmin.create(proc.address, ADMIN_TOKEN);
    try {
      await waitFor(`relay process ${name} serving its admin API`, async () => {
        if (child.exitCode !== null) throw new Error(`relay process ${name} exited: ${output.join("")}`);
        return (await admin.replicationStatus()) ?? false;
      }, 20_000, 50);
    } finally {
      admin.close();
    }
    return proc;
  }
}

export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
