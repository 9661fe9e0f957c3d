/**
 * A compliance service for tests: the real `parley compliance` process on
 * the real Postgres and NATS, on its own stream and consumer, with its admin
 * client. Output and archive directories are temporary.
 *
 *   const c = await ComplianceUnderTest.start(h, { stream, archiveDir, args: ["--eml", "true"] });
 *   const batch = await c.admin.exportNow();
 *   await c.kill();  await c.restart();
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ComplianceAdmin } from "../../client/compliance.js";
import type { Manifest } from "../../services/compliance/output.js";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { NATS_URL, type Harness } from "./harness.js";
import { startParley, type Proc } from "./processes.js";

export const ADMIN_TOKEN = "compliance-test-admin-token";
export const STYLESHEETS = new URL("../../../services/compliance/stylesheets/", import.meta.url).pathname;
export const XSD = new URL("../../../services/compliance/schema/parley-compliance-1.xsd", import.meta.url).pathname;

/** Validates against the XSD with libxml2's xmllint; returns its complaint, or "" when valid. */
export function xsdErrors(xml: string): string {
  try {
    execFileSync("xmllint", ["--noout", "--schema", XSD, "-"], { input: xml, stdio: ["pipe", "pipe", "pipe"] });
    return "";
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? err);
  }
}

/** A stream of its own per test, so parallel runs never share events. */
export const testStream = () => `PARLEY_T_${randomBytes(4).toString("hex").toUpperCase()}`;

/** Test streams go with their test (with their consumers). */
async function deleteStream(name: string): Promise<void> {
  const nc = await connect({ servers: NATS_URL });
  try {
    await (await jetstreamManager(nc)).streams.delete(name).catch(() => undefined);
  } finally {
    await nc.close();
  }
}

export class ComplianceUnderTest {
  proc!: Proc;
  admin!: ComplianceAdmin;
  httpPort = 0;
  address = "";
  readonly outputDir: string;
  private readonly consumer = `c-${randomBytes(4).toString("hex")}`;

  private constructor(private readonly h: Harness, private readonly opts: { stream: string; databaseUrl: string; archiveDir: string; args: string[] }) {
    this.outputDir = mkdtempSync(join(tmpdir(), "parley-compliance-out-"));
    h.defer(async () => {
      this.admin?.close();
      await this.proc?.stop("SIGKILL").catch(() => undefined);
      rmSync(this.outputDir, { recursive: true, force: true });
      await deleteStream(opts.stream);
    });
  }

  static async start(h: Harness, opts: { stream: string; archiveDir: string; args?: string[] }): Promise<ComplianceUnderTest> {
    const c = new ComplianceUnderTest(h, { ...opts, databaseUrl: await h.database("compliance"), args: opts.args ?? [] });
    await c.restart();
    return c;
  }

  /** Starts (again) the process on the same database, stream, consumer and directories. */
  async restart(): Promise<void> {
    this.admin?.close();
    this.proc = startParley(
      [
        "compliance", "--database-url", this.opts.databaseUrl, "--nats-url", NATS_URL, "--compliance-stream", this.opts.stream,
        "--consumer", this.consumer, "--output-dir", this.outputDir, "--archive-dir", this.opts.archiveDir,
        "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--conversation-interval", "1h", ...this.opts.args,
      ],
      { PARLEY_ADMIN_TOKEN: ADMIN_TOKEN, PARLEY_LOG_LEVEL: "info" },
    );
    const ready = await this.proc.waitForOutput(/"grpcPort":(\d+),"httpPort":(\d+).*compliance ready/, 30_000);
    this.httpPort = Number(ready[2]);
    this.address = `127.0.0.1:${ready[1]}`;
    this.admin = ComplianceAdmin.create(this.address, ADMIN_TOKEN);
  }

  async kill(): Promise<void> {
    await this.proc.stop("SIGKILL");
  }

  /** Complete batches (those with a manifest) and their manifests, oldest first. */
  manifests(): Manifest[] {
    return readdirSync(this.outputDir).filter((n) => n.endsWith(".manifest.json")).sort().map((n) => JSON.parse(readFileSync(join(this.outputDir, n), "utf8")) as Manifest);
  }

  read(name: string): string {
    return readFileSync(join(this.outputDir, name), "utf8");
  }

  files(): string[] {
    return readdirSync(this.outputDir).sort();
  }
}
