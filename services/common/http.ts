/**
 * The HTTP port every service has: /metrics (Prometheus), /healthz (the
 * process is alive), /readyz (it can serve: dependencies reachable, not
 * shutting down). Services may add routes (the relay's admin page).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./log.js";
import { registry } from "./metrics.js";

export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean;
/** Returns undefined when ready, or the reason it is not. */
export type ReadinessCheck = () => Promise<string | undefined>;

export interface HttpServerHandle {
  port: number;
  server: Server;
  close(): Promise<void>;
}

export async function startHttpServer(opts: {
  host?: string;
  port: number;
  readiness: ReadinessCheck[];
  routes?: Route[];
  log: Logger;
}): Promise<HttpServerHandle> {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    try {
      if (url.pathname === "/healthz") return text(res, 200, "ok\n");
      if (url.pathname === "/readyz") {
        const reasons = (await Promise.all(opts.readiness.map((check) => check().catch((e: Error) => e.message)))).filter(Boolean);
        return reasons.length ? text(res, 503, `not ready: ${reasons.join("; ")}\n`) : text(res, 200, "ready\n");
      }
      if (url.pathname === "/metrics") {
        res.setHeader("content-type", registry.contentType);
        return res.end(await registry.metrics());
      }
      for (const route of opts.routes ?? []) if (await route(req, res, url)) return;
      text(res, 404, "not found\n");
    } catch (err) {
      opts.log.error({ err, path: url.pathname }, "http handler failed");
      if (!res.headersSent) text(res, 500, "internal error\n");
      else res.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host ?? "0.0.0.0", () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

export function text(res: ServerResponse, code: number, body: string): void {
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8" });
  res.end(body);
}
