#!/usr/bin/env node
// Runs the compiled test suite: dist/test/**/*.test.js, unit first, then
// integration, then e2e (then anything else under dist/test).
//
//   node scripts/run-tests.mjs [filter ...] [--node-test-option ...]
//
// filter   keeps only test files whose path contains it; `test/unit/x.test.ts`,
//          `dist/test/unit/x.test.js` and `unit/x` all select the same file.
// --opt    anything starting with `-` is passed on to `node --test`
//          (e.g. --test-name-pattern=relay).
//
// Each tier is one `node --test` run (the test runner sorts the files it is
// given, so the tier order has to come from separate runs) with concurrency 1,
// because integration and e2e tests share one Postgres and one NATS. Output is
// the spec reporter on stdout; scripts/count-reporter.mjs records one line per
// leaf test to a scratch file, from which the final line is printed:
//
//   N passed, N failed[, N skipped]
//
// The exit status is non-zero if anything failed or if no test ran at all.
//
// Environment:
//   PARLEY_TEST_TIMEOUT       per-test timeout in ms (default 300000)
//   PARLEY_TEST_TIER_TIMEOUT  wall-clock limit per tier in ms (default 3600000);
//                             on expiry the tier's processes are killed and the
//                             run counts as failed
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const distTests = join(root, "dist", "test");
const srcTests = join(root, "test");
const reporter = pathToFileURL(join(root, "scripts", "count-reporter.mjs")).href;
const TIERS = ["unit", "integration", "e2e"];

const positiveInt = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`run-tests: ${name} must be a positive integer (ms), got "${raw}"`);
    process.exit(2);
  }
  return n;
};
const testTimeout = positiveInt("PARLEY_TEST_TIMEOUT", 300_000);
const tierTimeout = positiveInt("PARLEY_TEST_TIER_TIMEOUT", 3_600_000);

const major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  console.error(
    `run-tests: needs Node >= 22 (this is ${process.version}); run it with node_modules/.bin/node`,
  );
  process.exit(2);
}

const toPosix = (p) => p.split(sep).join("/");

// --- arguments -------------------------------------------------------------
const filters = [];
const passThrough = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith("-")) passThrough.push(arg);
  else if (arg !== "") filters.push(normaliseFilter(arg));
}

function normaliseFilter(arg) {
  let f = toPosix(arg).replace(/^\.\//, "");
  f = f.replace(/\.test\.(ts|tsx|cts)$/, ".test.js").replace(/\.test\.mts$/, ".test.mjs");
  if (f.startsWith("test/")) f = `dist/${f}`;
  return f;
}

// --- discovery -------------------------------------------------------------
function walk(dir) {
  const out = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === "ENOENT") return out;
    throw err;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules") out.push(...walk(p));
    } else if (/\.test\.m?js$/.test(e.name)) {
      out.push(p);
    }
  }
  return out;
}

// A compiled test whose TypeScript source has been deleted is stale output
// left in dist/ (tsc never removes files); don't run it.
function hasSource(file) {
  if (!existsSync(srcTests)) return true; // no sources around (e.g. an image)
  const rel = relative(distTests, file);
  const stem = rel.replace(/\.m?js$/, "");
  return [".ts", ".tsx", ".mts", ".cts", ".js", ".mjs"].some((ext) =>
    existsSync(join(srcTests, stem + ext)),
  );
}

const all = walk(distTests).sort();
const tiers = new Map([...TIERS, "other"].map((t) => [t, []]));
for (const file of all) {
  const rel = toPosix(relative(root, file)); // dist/test/unit/x.test.js
  const inTests = toPosix(relative(distTests, file)); // unit/x.test.js
  if (filters.length && !filters.some((f) => rel.includes(f) || inTests.includes(f))) continue;
  if (!hasSource(file)) {
    console.error(`run-tests: skipping stale ${rel} (its source under test/ is gone)`);
    continue;
  }
  const first = inTests.split("/")[0];
  tiers.get(TIERS.includes(first) ? first : "other").push(file);
}

// --- running ---------------------------------------------------------------
const scratch = mkdtempSync(join(tmpdir(), "parley-tests-"));
let current = null; // the running `node --test` child
let interrupted = null;

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    interrupted = sig;
    if (current) killGroup(current, "SIGTERM");
    else finish(); // between tiers
  });
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

function runTier(name, files, countsFile) {
  const args = [
    "--enable-source-maps",
    "--test",
    "--test-concurrency=1",
    `--test-timeout=${testTimeout}`,
    "--test-force-exit",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    `--test-reporter=${reporter}`,
    `--test-reporter-destination=${countsFile}`,
    ...passThrough,
    ...files,
  ];
  return new Promise((resolve) => {
    // Own process group, so a timeout can take down the per-file children too.
    const child = spawn(process.execPath, args, {
      cwd: root,
      stdio: ["ignore", "inherit", "inherit"],
      detached: true,
    });
    current = child;
    let timedOut = false;
    let killTimer;
    const watchdog = setTimeout(() => {
      timedOut = true;
      console.error(
        `run-tests: ${name} tests still running after ${tierTimeout} ms ` +
          "(PARLEY_TEST_TIER_TIMEOUT); killing them",
      );
      killGroup(child, "SIGTERM");
      killTimer = setTimeout(() => killGroup(child, "SIGKILL"), 10_000);
      killTimer.unref();
    }, tierTimeout);
    child.on("error", (err) => {
      clearTimeout(watchdog);
      current = null;
      resolve({ code: null, signal: null, timedOut, error: err });
    });
    child.on("exit", (code, signal) => {
      clearTimeout(watchdog);
      if (killTimer) clearTimeout(killTimer);
      current = null;
      resolve({ code, signal, timedOut, error: null });
    });
  });
}

function readCounts(countsFile) {
  const counts = { pass: 0, fail: 0, skip: 0, failures: [] };
  let text = "";
  try {
    text = readFileSync(countsFile, "utf8");
  } catch {
    return counts;
  }
  for (const line of text.split("\n")) {
    if (!line) continue;
    const [status, where = "?", name = ""] = line.split("\t");
    if (status === "pass") counts.pass++;
    else if (status === "skip") counts.skip++;
    else if (status === "fail") {
      counts.fail++;
      const short = (p) => (p.startsWith(root) ? toPosix(relative(root, p)) : p);
      counts.failures.push(`${short(where)}  ${short(name)}`);
    }
  }
  return counts;
}

const total = { pass: 0, fail: 0, skip: 0, failures: [] };
const totalFiles = [...tiers.values()].reduce((n, f) => n + f.length, 0);

if (totalFiles === 0) {
  console.error(
    filters.length
      ? `run-tests: no test file under dist/test matches ${filters.join(", ")}`
      : "run-tests: no test files under dist/test (did the build run?)",
  );
}

for (const [name, files] of tiers) {
  if (!files.length || interrupted) continue;
  console.log(`\n=== ${name} tests (${files.length} file${files.length === 1 ? "" : "s"}) ===\n`);
  const countsFile = join(scratch, `${name}.txt`);
  const res = await runTier(name, files, countsFile);
  const c = readCounts(countsFile);
  total.pass += c.pass;
  total.fail += c.fail;
  total.skip += c.skip;
  total.failures.push(...c.failures);
  const ok = res.code === 0 && !res.timedOut && !res.error;
  if (!ok && c.fail === 0 && !interrupted) {
    // The runner failed without reporting a failing test (crash, timeout,
    // bad option): make sure that cannot end in a green summary.
    const why = res.error
      ? `could not start node --test: ${res.error.message}`
      : res.timedOut
        ? `timed out after ${tierTimeout} ms`
        : `node --test exited with ${res.signal ?? `code ${res.code}`}`;
    total.fail++;
    total.failures.push(`${name} tier  ${why}`);
  }
}

finish();

function finish() {
  rmSync(scratch, { recursive: true, force: true });
  if (interrupted) {
    console.error(`run-tests: interrupted by ${interrupted}`);
  }
  if (total.failures.length) {
    console.log("\nfailed:");
    const max = 50;
    for (const f of total.failures.slice(0, max)) console.log(`  ${f}`);
    if (total.failures.length > max) console.log(`  ... and ${total.failures.length - max} more`);
  }
  if (total.pass + total.fail === 0 && totalFiles > 0 && !interrupted) {
    console.log("\nrun-tests: no test ran");
  }
  let line = `${total.pass} passed, ${total.fail} failed`;
  if (total.skip) line += `, ${total.skip} skipped`;
  console.log(`\n${line}`);
  if (interrupted) process.exit(128 + (constants.signals[interrupted] ?? 0));
  process.exit(total.fail > 0 || total.pass + total.fail === 0 ? 1 : 0);
}
