/**
 * Validated configuration from flags and environment. Each service declares
 * its options once (flag, env var, default, parser, description); loadConfig
 * resolves them (flag beats env beats default) and fails with one message
 * naming every bad value. The README's configuration reference is printed
 * from the same declarations (`parley config-reference`).
 *
 *   const spec = { port: option("--grpc-port", "PARLEY_GRPC_PORT", int({ min: 0, max: 65535 }), 50051, "gRPC port") };
 *   const cfg = loadConfig(spec, process.argv.slice(2));   // cfg.port: number
 */

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

export interface OptionSpec<T> {
  flag: string;
  env: string;
  parse: Parser<T>;
  /** undefined means the option is required. */
  default: T | undefined;
  description: string;
  /** Hidden from logs and error messages (tokens, passwords). */
  secret?: boolean;
}

export interface Parser<T> {
  (raw: string): T;
  /** What a valid value looks like, for error messages and docs. */
  expected: string;
  /** Shows a value the way a user would write it (for docs). */
  format?(value: T): string;
}

export function option<T>(flag: string, env: string, parse: Parser<T>, dflt: T | undefined, description: string, secret = false): OptionSpec<T> {
  return { flag, env, parse, default: dflt, description, secret };
}

function parser<T>(expected: string, fn: (raw: string) => T | undefined, format?: (value: T) => string): Parser<T> {
  const p = ((raw: string) => {
    const v = fn(raw.trim());
    if (v === undefined) throw new Error(`expected ${expected}`);
    return v;
  }) as Parser<T>;
  p.expected = expected;
  p.format = format;
  return p;
}

export const str = (opts: { pattern?: RegExp; expected?: string } = {}) =>
  parser(opts.expected ?? "a string", (raw) => (opts.pattern && !opts.pattern.test(raw) ? undefined : raw));

export const int = (opts: { min?: number; max?: number } = {}) =>
  parser(`an integer${opts.min !== undefined ? ` ≥ ${opts.min}` : ""}${opts.max !== undefined ? ` ≤ ${opts.max}` : ""}`, (raw) => {
    if (!/^-?\d+$/.test(raw)) return undefined;
    const n = Number(raw);
    if (opts.min !== undefined && n < opts.min) return undefined;
    if (opts.max !== undefined && n > opts.max) return undefined;
    return n;
  });

export const bool = () =>
  parser("true or false", (raw) => ({ true: true, "1": true, yes: true, false: false, "0": false, no: false })[raw.toLowerCase()]);

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Durations like 500ms, 30s, 15m, 12h, 30d; the result is milliseconds. */
export const duration = (opts: { min?: number } = {}) =>
  parser("a duration like 500ms, 30s, 15m, 12h or 30d", (raw) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(raw);
    if (!m) return undefined;
    const ms = Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
    return opts.min !== undefined && ms < opts.min ? undefined : ms;
  }, (ms) => largestUnit(ms, [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000], ["ms", 1]]));

/** 2592000000 → "30d": the largest unit that divides the value. */
function largestUnit(value: number, units: Array<[string, number]>): string {
  const [name, size] = units.find(([, size]) => value % size === 0 && value >= size) ?? units[units.length - 1]!;
  return `${value / size}${name}`;
}

const BYTE_UNITS: Record<string, number> = { "": 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3 };
/** Sizes like 1024, 64KiB, 1MiB, 10GB; the result is bytes. */
export const bytes = () =>
  parser("a size like 65536, 64KiB, 1MiB or 1GB", (raw) => {
    const m = /^(\d+)\s*([a-z]*)$/i.exec(raw);
    const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
    return m && unit !== undefined ? Number(m[1]) * unit : undefined;
  }, (n) => largestUnit(n, [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024], ["", 1]]));

export const oneOf = <T extends string>(...values: T[]) =>
  parser(`one of ${values.join(", ")}`, (raw) => (values as string[]).includes(raw) ? (raw as T) : undefined);

export const url = (protocols: string[]) =>
  parser(`a URL (${protocols.join(", ")})`, (raw) => {
    try {
      const u = new URL(raw);
      return protocols.includes(u.protocol.replace(/:$/, "")) ? raw : undefined;
    } catch {
      return undefined;
    }
  });

export type ConfigSpec = Record<string, OptionSpec<unknown>>;
export type ConfigOf<S extends ConfigSpec> = { [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };

/**
 * Resolves every option. argv holds `--flag value` or `--flag=value` pairs;
 * an unknown flag is an error too (a typo must not silently use a default).
 */
export function loadConfig<S extends ConfigSpec>(spec: S, argv: string[], env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  const problems: string[] = [];
  const flags = new Map<string, string>();
  const known = new Set(Object.values(spec).map((o) => o.flag));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) {
      problems.push(`unexpected argument '${arg}'`);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!known.has(flag)) {
      problems.push(`unknown option ${flag}`);
      if (eq < 0 && i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) i++;
      continue;
    }
    if (eq > 0) flags.set(flag, arg.slice(eq + 1));
    else if (i + 1 < argv.length) flags.set(flag, argv[++i]!);
    else problems.push(`${flag} needs a value`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, opt] of Object.entries(spec)) {
    const raw = flags.get(opt.flag) ?? env[opt.env];
    const source = flags.has(opt.flag) ? opt.flag : opt.env;
    if (raw === undefined || raw === "") {
      if (opt.default === undefined) problems.push(`${opt.flag} (or ${opt.env}) is required: ${opt.description}`);
      out[key] = opt.default;
      continue;
    }
    try {
      out[key] = opt.parse(raw);
    } catch (err) {
      const shown = opt.secret ? "(hidden)" : `'${raw}'`;
      problems.push(`${source}: ${(err as Error).message}, got ${shown}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return out as ConfigOf<S>;
}

/** Markdown table of options, for the README. */
export function describeConfig(title: string, spec: ConfigSpec): string {
  const rows = Object.values(spec).map((o) => {
    const shown = o.default === undefined ? "" : (o.parse.format?.(o.default) ?? String(o.default));
    const dflt = o.default === undefined ? "(required)" : o.secret ? "(empty)" : `\`${shown}\``;
    return `| \`${o.flag}\` | \`${o.env}\` | ${dflt} | ${o.description} (${o.parse.expected}) |`;
  });
  return [`### ${title}`, "", "| flag | env | default | meaning |", "|---|---|---|---|", ...rows, ""].join("\n");
}
