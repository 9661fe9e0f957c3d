/**
 * Graceful shutdown: on SIGTERM/SIGINT, readiness turns false, then the
 * registered closers run in reverse order of registration (servers stop
 * accepting and finish in-flight calls before the pools they use close).
 */
import type { Logger } from "./log.js";

export class Lifecycle {
  private readonly closers: Array<{ name: string; close: () => Promise<void> }> = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  get shuttingDown(): boolean {
    return this.stopping !== undefined;
  }

  /** Registers something to close on shutdown; the last added closes first. */
  add(name: string, close: () => Promise<void> | void): void {
    this.closers.push({ name, close: async () => close() });
  }

  shutdown(): Promise<void> {
    this.stopping ??= (async () => {
      for (const { name, close } of [...this.closers].reverse()) {
        try {
          await close();
        } catch (err) {
          this.log.error({ err, component: name }, "error while shutting down");
        }
      }
    })();
    return this.stopping;
  }

  /** Exits the process after a graceful shutdown on SIGTERM or SIGINT. */
  handleSignals(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      this.log.info({ signal }, "shutting down");
      void this.shutdown().then(() => process.exit(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
}
