/**
 * Watch supervisor around client-node's informer (ListWatch). The informer
 * relists by itself on 410 Gone and rewatches when a watch ends or goes quiet;
 * on any other failure (connection reset, apiserver down, list error) it
 * reports ERROR and stops for good. The supervisor restarts it after a
 * backoff (doubling, capped), which relists and delivers what changed.
 *
 *   const w = supervisor.watch<Deployment>("deployments", "/apis/apps/v1/deployments", { labelSelector }, (type, obj) => queue.add(...));
 *   await supervisor.synced();        // every watch has listed once
 */
import { makeInformer, type Informer, type KubeConfig, type KubernetesObject, type ObjectCache } from "@kubernetes/client-node";
import type { Logger } from "../../services/common/log.js";
import type { KubeClient } from "./client.js";

export type WatchEvent = "add" | "update" | "delete";

export interface WatchOptions {
  labelSelector?: string;
}

export interface SupervisedWatch<T extends KubernetesObject> {
  readonly name: string;
  /** The informer's cache of the watched objects. */
  readonly cache: ObjectCache<T>;
  /** True once the first list completed. */
  readonly synced: boolean;
}

export interface WatchSupervisorOptions {
  kubeConfig: KubeConfig;
  client: KubeClient;
  log: Logger;
  /** First restart delay; doubles per consecutive failure up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called on each failure and restart, for metrics. */
  onRestart?: (watch: string, err: unknown) => void;
}

interface Entry {
  name: string;
  informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
  synced: boolean;
  failures: number;
  timer?: NodeJS.Timeout;
}

export class WatchSupervisor {
  private readonly entries: Entry[] = [];
  private stopped = false;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(private readonly opts: WatchSupervisorOptions) {
    this.minBackoffMs = opts.minBackoffMs ?? 200;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5000;
  }

  watch<T extends KubernetesObject>(name: string, path: string, options: WatchOptions, onEvent: (type: WatchEvent, obj: T) => void): SupervisedWatch<T> {
    const query = options.labelSelector ? `?labelSelector=${encodeURIComponent(options.labelSelector)}` : "";
    const list = async () => {
      const result = await this.opts.client.list<T>(`${path}${query}`);
      entry.synced = true;
      return result as never;
    };
    const informer = makeInformer<T>(this.opts.kubeConfig, path, list, options.labelSelector) as unknown as Entry["informer"];
    const entry: Entry = { name, informer, synced: false, failures: 0 };
    // Backoff resets only when events flow: a list that succeeds followed by a
    // watch that fails at once must not turn into a tight relist loop.
    const deliver = (type: WatchEvent) => (o: KubernetesObject) => {
      entry.failures = 0;
      onEvent(type, o as T);
    };
    informer.on("add", deliver("add"));
    informer.on("update", deliver("update"));
    informer.on("delete", deliver("delete"));
    informer.on("error", (err) => this.restartLater(entry, err));
    this.entries.push(entry);
    this.start(entry);
    return {
      name,
      cache: informer as unknown as ObjectCache<T>,
      get synced() {
        return entry.synced;
      },
    };
  }

  /** True once every watch has completed its first list. */
  get allSynced(): boolean {
    return this.entries.every((e) => e.synced);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.entries) {
      clearTimeout(e.timer);
      await e.informer.stop();
    }
  }

  private start(entry: Entry): void {
    // Failures inside start() arrive through the "error" callback; a rejection is one more.
    entry.informer.start().catch((err: unknown) => this.restartLater(entry, err));
  }

  private restartLater(entry: Entry, err: unknown): void {
    if (this.stopped || entry.timer) return;
    entry.failures++;
    const delay = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(entry.failures - 1, 16));
    this.opts.log.warn({ watch: entry.name, err: (err as Error)?.message ?? String(err), retryInMs: delay }, "watch failed; restarting");
    this.opts.onRestart?.(entry.name, err);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (!this.stopped) this.start(entry);
    }, delay);
    entry.timer.unref();
  }
}
