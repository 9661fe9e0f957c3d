/**
 * The frame every `parley <service>` process shares: a logger, tracing,
 * default metrics and a Lifecycle; SIGTERM/SIGINT shut it down gracefully,
 * and a start that fails closes whatever it had opened.
 *
 *   export const runLookup = (argv: string[]) => serviceProcess("lookup", async (life, log) => { … life.add(…) … });
 */
import { Lifecycle } from "./lifecycle.js";
import { logger, type Logger } from "./log.js";
import { startDefaultMetrics } from "./metrics.js";
import { initTracing, shutdownTracing } from "./tracing.js";

export async function serviceProcess(name: string, start: (life: Lifecycle, log: Logger) => Promise<void>): Promise<Lifecycle> {
  const log = logger(name);
  initTracing(name);
  startDefaultMetrics();
  const life = new Lifecycle(log);
  life.add("tracing", () => shutdownTracing());
  try {
    await start(life, log);
    life.handleSignals();
    return life;
  } catch (err) {
    await life.shutdown();
    throw err;
  }
}
