/**
 * Gap recovery: which ranges an endpoint misses, which peer to ask next,
 * and when to give up on a peer. Pure over the store's figures and an
 * in-memory record of the request in flight (requests are re-derived from
 * the store after a restart: the missing ranges are the truth).
 */
import type { Range, Vector } from "./types.js";

/** Cap per request so one answer stays a bounded amount of work for the peer. */
export const MAX_REQUEST_CHANGES = 5000;

export interface RequestInFlight {
  id: string;
  peer: string;
  ranges: Range[];
  snapshot: boolean;
  askedAtMs: number;
}

export interface RecoveryState {
  inFlight: RequestInFlight | undefined;
  /** Peers that said "don't have" or went quiet since the last progress. */
  tried: Set<string>;
  /** True while a gap is open, so its closing is announced. */
  recovering: boolean;
  /** When the current gap was first seen. */
  missingSince: number | undefined;
}

/** Seqs in (applied, target] not already waiting in pending, as ranges. */
export function missingRanges(applied: Vector, targets: Vector, pending: Map<string, number[]>): Range[] {
  const out: Range[] = [];
  for (const [origin, target] of Object.entries(targets).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const have = new Set(pending.get(origin) ?? []);
    let start: number | undefined;
    for (let s = (applied[origin] ?? 0) + 1; s <= target + 1; s++) {
      const gap = s <= target && !have.has(s);
      if (gap && start === undefined) start = s;
      if (!gap && start !== undefined) {
        out.push({ origin, from: start, to: s - 1 });
        start = undefined;
      }
    }
  }
  return out;
}

/** Keeps the first ranges up to the cap. */
export function capRanges(ranges: Range[], max = MAX_REQUEST_CHANGES): Range[] {
  const out: Range[] = [];
  let left = max;
  for (const r of ranges) {
    if (left <= 0) break;
    const to = Math.min(r.to, r.from + left - 1);
    out.push({ ...r, to });
    left -= to - r.from + 1;
  }
  return out;
}

/**
 * The peers to ask, best first: those known to hold the start of the
 * missing ranges, then the most recently heard from (likely online now).
 */
export function rankPeers(ranges: Range[], peers: string[], known: Record<string, Vector>, heardAt: Map<string, number>): string[] {
  const covers = (p: string) => ranges.filter((r) => (known[p]?.[r.origin] ?? 0) >= r.from).length;
  return [...peers].sort((a, b) => covers(b) - covers(a) || (heardAt.get(b) ?? 0) - (heardAt.get(a) ?? 0) || (a < b ? -1 : 1));
}
