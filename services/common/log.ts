/** Structured JSON logs (pino), one child logger per service. */
import { pino, type Logger } from "pino";

export type { Logger };

const root = pino({
  level: process.env.PARLEY_LOG_LEVEL ?? "info",
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
});

export function logger(service: string): Logger {
  return root.child({ service });
}
