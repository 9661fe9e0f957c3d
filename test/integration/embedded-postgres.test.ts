/**
 * Runs the real embedded Postgres binaries: init + persistence across
 * restarts, recovery from a stale postmaster.pid and from a SIGKILLed owner
 * process, and database-name validation.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { InvalidArgumentError } from "../../services/common/errors.js";
import { startEmbeddedPostgres, type EmbeddedPostgresServer } from "../../services/common/embedded-postgres.js";

const TEST_TIMEOUT_MS = 180_000;

let root: string;
const servers = new Set<EmbeddedPostgresServer>();
const children = new Set<ChildProcess>();

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), "parley-epg-"));
  // When the tests run as root, Postgres runs as the 'parley' system user, which must traverse this directory.
  await fs.chmod(root, 0o755);
});

after(async () => {
  for (const s of servers) await s.stop().catch(() => undefined);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await fs.rm(root, { recursive: true, force: true });
});

async function start(dataDir: string, lines?: string[]): Promise<EmbeddedPostgresServer> {
  const s = await startEmbeddedPostgres({ dataDir, log: (l) => lines?.push(l) });
  servers.add(s);
  return s;
}

async function stop(s: EmbeddedPostgresServer): Promise<void> {
  await s.stop();
  servers.delete(s);
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  return true;
}

/** True when pid is gone or a zombie (this container's init may never reap orphans). */
async function deadOrZombie(pid: number): Promise<boolean> {
  if (!alive(pid)) return true;
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(25);
  }
}

describe("embedded Postgres", { timeout: TEST_TIMEOUT_MS }, () => {
  test("initialises once, persists data across a restart, stop is idempotent", async (t) => {
    const dataDir = path.join(root, "persist");
    const firstLog: string[] = [];
    let t0 = Date.now();
    const first = await start(dataDir, firstLog);
    t.diagnostic(`first start (initdb + start): ${Date.now() - t0} ms`);
    assert.ok(first.port > 0 && first.port < 65536);
    assert.ok(firstLog.some((l) => l.includes("initialised a new cluster")), "first start runs initdb");

    const pidFile = (await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n");
    assert.equal(pidFile[5], "127.0.0.1", "listens on 127.0.0.1 only");

    await first.ensureDatabase("relay");
    await first.ensureDatabase("relay"); // idempotent
    await withClient(first.connectionString("relay"), async (c) => {
      await c.query("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)");
      await c.query("INSERT INTO notes VALUES (1, 'survives restarts')");
    });
    t0 = Date.now();
    await stop(first);
    t.diagnostic(`stop: ${Date.now() - t0} ms`);
    await first.stop(); // idempotent
    await assert.rejects(fs.access(path.join(dataDir, "postmaster.pid")), "clean shutdown removes postmaster.pid");

    const secondLog: string[] = [];
    t0 = Date.now();
    const second = await start(dataDir, secondLog);
    t.diagnostic(`restart on existing data: ${Date.now() - t0} ms`);
    assert.ok(!secondLog.some((l) => l.includes("initialising")), "restart must not re-run initdb");
    await second.ensureDatabase("relay");
    const rows = await withClient(second.connectionString("relay"), async (c) => (await c.query("SELECT id, body FROM notes")).rows);
    assert.deepEqual(rows, [{ id: 1, body: "survives restarts" }]);
    await stop(second);
    assert.ok((await fs.readdir(dataDir)).includes("PG_VERSION"));
  });

  test("starts despite a stale postmaster.pid (dead pid, and a pid recycled by another process)", async () => {
    const dataDir = path.join(root, "stale");
    const s1 = await start(dataDir);
    await s1.ensureDatabase("chat");
    const pidText = await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8");
    await stop(s1);

    const writeStale = async (pid: number) => {
      const lines = pidText.split("\n");
      lines[0] = String(pid);
      await fs.writeFile(path.join(dataDir, "postmaster.pid"), lines.join("\n"));
    };

    // 1. A pid that no longer exists.
    const shortLived = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
    const deadPid = shortLived.pid!;
    await new Promise((resolve) => shortLived.once("exit", resolve));
    await waitFor("short-lived process to be reaped", async () => !alive(deadPid), 5_000);
    await writeStale(deadPid);
    const s2 = await start(dataDir);
    await withClient(s2.connectionString("chat"), async (c) => assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1));
    await stop(s2);

    // 2. A pid now used by an unrelated live process (Postgres alone would refuse this when it can signal it).
    const unrelated = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)"], { stdio: "ignore" });
    children.add(unrelated);
    try {
      await writeStale(unrelated.pid!);
      const s3 = await start(dataDir);
      await withClient(s3.connectionString("chat"), async (c) => assert.equal((await c.query("SELECT 1 AS one")).rows[0].one, 1));
      await stop(s3);
      assert.ok(alive(unrelated.pid!), "the unrelated process is left alone");
    } finally {
      unrelated.kill("SIGKILL");
      children.delete(unrelated);
    }
  });

  test("restarts after the owning process was SIGKILLed", async (t) => {
    const dataDir = path.join(root, "crash");
    const moduleUrl = new URL("../../services/common/embedded-postgres.js", import.meta.url).href;
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(moduleUrl)});
      const s = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} });
      await s.ensureDatabase("sync");
      process.stdout.write(JSON.stringify({ url: s.connectionString("sync") }) + "\\n");
      setInterval(() => {}, 1e9);
    `;
    const owner = spawn(process.execPath, ["--input-type=module", "-e", script], {
      cwd: path.dirname(fileURLToPath(import.meta.url)),
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.add(owner);
    const ready = await new Promise<{ url: string }>((resolve, reject) => {
      let buf = "";
      const timer = setTimeout(() => reject(new Error("owner process did not report readiness within 120 s")), 120_000);
      owner.stdout!.setEncoding("utf8");
      owner.stdout!.on("data", (chunk: string) => {
        buf += chunk;
        const nl = buf.indexOf("\n");
        if (nl >= 0) {
          clearTimeout(timer);
          resolve(JSON.parse(buf.slice(0, nl)) as { url: string });
        }
      });
      owner.once("exit", (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`owner process exited early (code ${code}, signal ${sig})`));
      });
    });
    await withClient(ready.url, async (c) => {
      await c.query("CREATE TABLE changes (seq int PRIMARY KEY)");
      await c.query("INSERT INTO changes VALUES (42)");
    });
    const postmasterPid = Number((await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
    assert.ok(alive(postmasterPid));

    owner.kill("SIGKILL");
    await new Promise((resolve) => (owner.exitCode !== null || owner.signalCode !== null ? resolve(null) : owner.once("exit", resolve)));
    children.delete(owner);

    // Restart immediately: the orphaned postmaster (told to stop by its parent-death signal, or by
    // startEmbeddedPostgres itself) must be dealt with, not block the start.
    const log: string[] = [];
    const t0 = Date.now();
    const s = await start(dataDir, log);
    t.diagnostic(`restart after SIGKILL of owner: ${Date.now() - t0} ms`);
    assert.ok(await deadOrZombie(postmasterPid), "the previous postmaster is gone");
    const rows = await withClient(s.connectionString("sync"), async (c) => (await c.query("SELECT seq FROM changes")).rows);
    assert.deepEqual(rows, [{ seq: 42 }]);
    await stop(s);
  });

  test("a SIGKILLed owner's Postgres shuts itself down (parent-death signal)", { skip: process.platform !== "linux" }, async () => {
    const dataDir = path.join(root, "orphan");
    const moduleUrl = new URL("../../services/common/embedded-postgres.js", import.meta.url).href;
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(moduleUrl)});
      await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} });
      process.stdout.write("ready\\n");
      setInterval(() => {}, 1e9);
    `;
    const owner = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    children.add(owner);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("owner process did not report readiness within 120 s")), 120_000);
      owner.stdout!.once("data", () => {
        clearTimeout(timer);
        resolve();
      });
      owner.once("exit", (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`owner process exited early (code ${code}, signal ${sig})`));
      });
    });
    const postmasterPid = Number((await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0]);
    owner.kill("SIGKILL");
    children.delete(owner);
    // Only holds where util-linux setpriv provides PR_SET_PDEATHSIG (Linux); see the module's notes.
    await waitFor(`orphaned postmaster ${postmasterPid} to exit`, () => deadOrZombie(postmasterPid), 30_000);
    await waitFor("postmaster.pid removed by a clean shutdown", async () => {
      try {
        await fs.access(path.join(dataDir, "postmaster.pid"));
        return false;
      } catch {
        return true;
      }
    }, 30_000);
  });

  test("rejects bad database names with a clear error", async () => {
    const s = await start(path.join(root, "names"));
    for (const bad of ["Relay", "1relay", "re-lay", "relay; DROP DATABASE postgres", "", "a".repeat(64)]) {
      await assert.rejects(s.ensureDatabase(bad), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError for ${JSON.stringify(bad)}`);
        assert.match(err.message, /invalid database name .*must match/);
        return true;
      });
    }
    await s.ensureDatabase("_ok_123");
    await stop(s);
    await assert.rejects(s.ensureDatabase("relay"), /not running/);
  });
});
