/**
 * Timed re-queues of one key each: a controller asks to look at an object
 * again later (a cooldown ending, a status to poll). One pending timer per
 * key; asking again while one is pending keeps the earlier one.
 *
 *   const rechecks = new Rechecks(enqueue);
 *   rechecks.after(key, 10_000);  rechecks.forget(key);  rechecks.close();
 */
export class Rechecks {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly enqueue: (key: string) => void) {}

  after(key: string, afterMs: number): void {
    if (this.timers.has(key)) return;
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.enqueue(key);
    }, afterMs);
    t.unref();
    this.timers.set(key, t);
  }

  forget(key: string): void {
    clearTimeout(this.timers.get(key));
    this.timers.delete(key);
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
