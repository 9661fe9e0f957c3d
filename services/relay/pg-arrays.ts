/**
 * Postgres array literals for the hot statements' parameters, built with one
 * join instead of node-postgres's per-element quoting and escaping (which was
 * a fifth of what a relay allocated in bench/relay). The literal is sent as
 * text and parsed by Postgres as the parameter's array type, exactly as the
 * driver's own literal is.
 */

const NEEDS_ESCAPE = /["\\]/;

const quoted = (s: string) => `"${s.replace(/[\\"]/g, "\\$&")}"`;

/** A text[] literal: every element quoted, so NULL, spaces, commas and braces stay text. */
export function textArray(values: readonly string[]): string {
  if (!values.length) return "{}";
  for (const v of values) if (NEEDS_ESCAPE.test(v)) return `{${values.map(quoted).join(",")}}`;
  return `{"${values.join('","')}"}`;
}

/** An integer array literal (smallint[], int[], bigint[]). */
export function intArray(values: readonly number[]): string {
  return `{${values.join(",")}}`;
}
