/**
 * Exponential backoff with jitter before retry `attempt` (1, 2, ...): baseMs
 * doubling per attempt, at most maxMs, times a random 0.5-1.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs = 2000): number {
  return Math.min(maxMs, baseMs * 2 ** attempt) * (0.5 + Math.random() / 2);
}

/** Waits ms, or less if signal aborts first (it resolves, never rejects). */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
