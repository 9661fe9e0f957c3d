// Benchmark settings from the environment: one clear error naming the
// variable on a bad value, the default when it is unset or empty.

/** An integer >= min (default 1). */
export function envInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return v;
}

/** A comma-separated subset of `all`, without repeats (default: `fallback`, or all of them). */
export function envList<T extends string>(name: string, all: readonly T[], fallback: readonly T[] = all): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return [...fallback];
  const items = [...new Set(raw.split(",").map((s) => s.trim()).filter(Boolean))];
  for (const i of items) if (!all.includes(i as T)) throw new Error(`${name}: unknown value ${i} (known: ${all.join(", ")})`);
  return items as T[];
}
