/**
 * The Helm chart (charts/parley) for tests: helm and promtool found the way
 * the Makefile provides them, rendered manifests as objects, and the metric
 * names Parley's code defines.
 *
 *   const tools = await chartTools();                 // { helm, promtool }
 *   const objs = await renderChart(tools, ["--set", "crds.install=false"]);
 *   find(objs, "Deployment", "parley-operator");
 *   definedMetricNames().has("parley_relay_queue_depth");
 */
import { execFile, spawn } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
// js-yaml as plain data: client-node's loadAllYaml turns objects into its model classes.
import { loadAll } from "js-yaml";
import { collectDefaultMetrics, Registry } from "prom-client";

/** The repository (this file runs from dist/test/support). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const CHART_DIR = join(REPO_ROOT, "charts", "parley");

export interface ChartTools {
  helm: string;
  promtool: string;
}

export interface KubeManifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: any;
}

/** $PARLEY_HELM and $PARLEY_PROMTOOL (set by `make test`), else what scripts/ensure-chart-tools.sh provides. */
export async function chartTools(): Promise<ChartTools> {
  const { PARLEY_HELM: helm, PARLEY_PROMTOOL: promtool } = process.env;
  if (helm && promtool) return { helm, promtool };
  const script = join(REPO_ROOT, "scripts", "ensure-chart-tools.sh");
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn("bash", [script], { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`${script} exited with ${code}`))));
  });
  const value = (name: string) => {
    const m = new RegExp(`^${name}=(.*)$`, "m").exec(out);
    if (!m) throw new Error(`${script} printed no ${name}`);
    return m[1]!.replace(/\\(.)/g, "$1"); // printf %q escapes
  };
  return { helm: helm || value("PARLEY_HELM"), promtool: promtool || value("PARLEY_PROMTOOL") };
}

/** Runs a tool; resolves stdout, rejects with its stderr (and stdout) in the message. */
export function runTool(bin: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(" ")} failed: ${stderr.trim()}\n${stdout.trim()}`.trim()));
      else resolve(stdout);
    });
  });
}

/** Values that switch every optional part of the chart on. */
export const ALL_TOGGLES = [
  "--set", "monitoring.serviceMonitor.enabled=true",
  "--set", "monitoring.podMonitor.enabled=true",
  "--set", "monitoring.prometheusRules.enabled=true",
  "--set", "monitoring.grafanaDashboard.enabled=true",
  "--set", "examples.enabled=true",
];

/** `helm template` of the chart (release "parley" in namespace "parley-system" unless args say otherwise), as YAML text. */
export function templateChart(tools: ChartTools, args: string[] = []): Promise<string> {
  return runTool(tools.helm, ["template", "parley", CHART_DIR, "--namespace", "parley-system", ...args]);
}

export async function renderChart(tools: ChartTools, args: string[] = []): Promise<KubeManifest[]> {
  return parseManifests(await templateChart(tools, args));
}

export function parseManifests(yaml: string): KubeManifest[] {
  return loadAll(yaml).filter((o): o is KubeManifest => o !== null && typeof o === "object");
}

/** The one object of this kind (and name); fails the test naming what was there instead. */
export function find(objs: KubeManifest[], kind: string, name?: string): KubeManifest {
  const hits = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (hits.length !== 1) {
    const have = objs.map((o) => `${o.kind}/${o.metadata.name}`).join(", ");
    throw new Error(`expected one ${kind}${name ? `/${name}` : ""}, found ${hits.length} (rendered: ${have})`);
  }
  return hits[0]!;
}

/** Every `parley_…` metric name in a PromQL expression or dashboard text. */
export function metricNamesIn(text: string): Set<string> {
  return new Set(text.match(/\bparley_[a-z0-9_]+\b/g) ?? []);
}

/**
 * The metric names Parley's code defines: every "parley_…" string literal in
 * the TypeScript under services/, operator/ and client/ (metric() calls and
 * helpers that pass the name on, like the relay's totalsGauge), and the
 * process/Node.js metrics prom-client exports under the `parley_` prefix
 * (services/common/metrics.ts startDefaultMetrics). A histogram's samples add
 * _bucket, _sum and _count.
 */
export function definedMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const dir of ["services", "operator", "client"]) {
    for (const file of walk(join(REPO_ROOT, dir))) {
      if (!file.endsWith(".ts")) continue;
      for (const m of readFileSync(file, "utf8").matchAll(/["'`](parley_[a-z0-9_]+)["'`]/g)) names.add(m[1]!);
    }
  }
  const defaults = new Registry();
  collectDefaultMetrics({ register: defaults, prefix: "parley_" });
  for (const m of defaults.getMetricsAsArray()) names.add(m.name);
  return names;
}

/** Whether `name` is a defined metric or one of a defined histogram's series. */
export function isDefinedMetric(name: string, defined: Set<string>): boolean {
  return defined.has(name) || defined.has(name.replace(/_(bucket|sum|count)$/, ""));
}

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}
