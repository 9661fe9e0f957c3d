/**
 * A per-object work queue, as client-go's: a key is queued at most once; a key
 * being processed is never processed concurrently, and if it is added again
 * meanwhile it runs once more afterwards; failures come back after a per-key
 * exponential backoff; success forgets the backoff.
 *
 *   const q = new WorkQueue(async (key) => reconcile(key), { workers: 2 });
 *   q.add("RelayServer/ns/name");  q.stop();
 */
import { Rechecks } from "./rechecks.js";

export interface WorkQueueOptions {
  workers?: number;
  /** Retry delay after the first failure; doubles per consecutive failure. */
  baseRetryMs?: number;
  maxRetryMs?: number;
  /** Called after each processing with the outcome, for metrics and logs. */
  onResult?: (key: string, result: "success" | "error", err?: unknown) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  /** Added while processing: requeue when done. */
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Rechecks((key) => this.add(key));
  private readonly waiters: Array<() => void> = [];
  private stopped = false;
  private readonly workers: Promise<void>[];

  constructor(private readonly handle: (key: string) => Promise<void>, private readonly opts: WorkQueueOptions = {}) {
    this.workers = Array.from({ length: opts.workers ?? 1 }, () => this.work());
  }

  get length(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.waiters.shift()?.();
  }

  /** Adds the key after a delay (a later add() may bring it sooner). */
  addAfter(key: string, delayMs: number): void {
    if (!this.stopped) this.delayed.after(key, delayMs);
  }

  /** Stops taking work; resolves when in-flight handlers finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.delayed.close();
    for (const w of this.waiters.splice(0)) w();
    await Promise.all(this.workers);
  }

  private retryDelay(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const base = this.opts.baseRetryMs ?? 250;
    return Math.min(this.opts.maxRetryMs ?? 60_000, base * 2 ** Math.min(n - 1, 20));
  }

  private async next(): Promise<string | undefined> {
    while (!this.stopped) {
      const key = this.queue.shift();
      if (key !== undefined) return key;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return undefined;
  }

  private async work(): Promise<void> {
    for (let key = await this.next(); key !== undefined; key = await this.next()) {
      this.queued.delete(key);
      this.processing.add(key);
      try {
        await this.handle(key);
        this.failures.delete(key);
        this.opts.onResult?.(key, "success");
      } catch (err) {
        this.opts.onResult?.(key, "error", err);
        this.addAfter(key, this.retryDelay(key));
      } finally {
        this.processing.delete(key);
        if (this.dirty.delete(key)) this.add(key);
      }
    }
  }
}
