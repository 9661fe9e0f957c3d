/**
 * The relay's web admin page on its HTTP port, behind the admin token:
 * statistics, replication state, and maintenance with a confirmation step.
 * It calls the same handlers as the gRPC admin API, so both report the same
 * figures and act alike.
 *
 *   startHttpServer({ ..., routes: [adminPage({ relayId, adminToken, api })] });
 *   // browser: GET /admin → sign in with the token → HttpOnly session cookie
 *   // scripts: curl -H "authorization: Bearer $PARLEY_ADMIN_TOKEN" http://relay:9090/admin
 *
 * Sessions are HMAC-signed expiry times (key random per process), so they
 * need no storage and die with the process. Every POST except sign-in must
 * carry a CSRF token derived from the session, and the cookie is
 * SameSite=Strict: another site cannot make a signed-in browser act.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { duration } from "../../common/config.js";
import { httpStatusOf } from "../../common/errors.js";
import type { Route } from "../../common/http.js";
import * as pb from "../../../generated/parley/v1/relay.js";
import { confirmPage, dashboard, loginPage } from "./admin-html.js";

/** The admin operations the page uses: the gRPC admin handlers. */
export interface AdminApi {
  getStats(req: pb.GetStatsRequest): Promise<pb.RelayStats>;
  purgeQueue(req: pb.PurgeQueueRequest): Promise<pb.PurgeResult>;
  purgeOlderThan(req: pb.PurgeOlderThanRequest): Promise<pb.PurgeResult>;
  suspendDevice(req: pb.DeviceRef): Promise<pb.DeviceState>;
  resumeDevice(req: pb.DeviceRef): Promise<pb.DeviceState>;
  getReplicationStatus(req: pb.GetReplicationStatusRequest): Promise<pb.ReplicationStatus>;
  /** Starts a rebuild; resolves when it is under way (progress shows in the replication status). */
  startRebuild(req: pb.RebuildRequest): void;
}

const COOKIE = "parley_admin";
const SESSION_MS = 8 * 3600_000;
const MAX_FORM_BYTES = 16 * 1024;

export function adminPage(opts: { relayId: string; adminToken: string; api: AdminApi }): Route {
  const key = randomBytes(32);
  const sign = (what: string) => createHmac("sha256", key).update(what).digest("base64url");
  const newSession = () => {
    const exp = String(Date.now() + SESSION_MS);
    return `${exp}.${sign(exp)}`;
  };
  const validSession = (value: string | undefined) => {
    const [exp, mac] = (value ?? "").split(".");
    return !!exp && !!mac && same(mac, sign(exp)) && Number(exp) > Date.now();
  };
  const csrfFor = (session: string) => sign(`csrf:${session}`);
  const tokenOk = (given: string) => !!opts.adminToken && same(given, opts.adminToken);

  return async (req, res, url) => {
    if (url.pathname !== "/admin" && !url.pathname.startsWith("/admin/")) return false;
    if (!opts.adminToken) return send(res, 404, "text/plain", "the admin page is disabled: no admin token is configured\n"), true;
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1];
    const session = cookies(req)[COOKIE];
    const viaBearer = bearer !== undefined && tokenOk(bearer);
    const signedIn = viaBearer || validSession(session);
    const csrf = viaBearer ? "" : session ? csrfFor(session) : "";

    if (url.pathname === "/admin/login" && req.method === "POST") {
      const form = await readForm(req);
      if (!form) return send(res, 413, "text/plain", "form too large\n"), true;
      if (!tokenOk(form.get("token") ?? "")) return send(res, 401, "text/html", loginPage(opts.relayId, "That is not the admin token.")), true;
      res.setHeader("set-cookie", `${COOKIE}=${newSession()}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=${SESSION_MS / 1000}`);
      return redirect(res, "/admin"), true;
    }
    if (!signedIn) {
      if (bearer !== undefined) return send(res, 401, "text/plain", "admin token required\n"), true;
      return send(res, 401, "text/html", loginPage(opts.relayId)), true;
    }
    if (req.method === "GET" && url.pathname === "/admin") {
      const [stats, oldest, replication] = await Promise.all([
        opts.api.getStats({ top: 10, order: pb.StatsOrder.STATS_ORDER_DEPTH }),
        opts.api.getStats({ top: 10, order: pb.StatsOrder.STATS_ORDER_OLDEST }),
        opts.api.getReplicationStatus({}),
      ]);
      const flash = url.searchParams.get("done") ?? undefined;
      const error = url.searchParams.get("error") ?? undefined;
      return send(res, 200, "text/html", dashboard({ relayId: opts.relayId, stats, oldest, replication, csrf, flash, error })), true;
    }
    if (req.method !== "POST") return send(res, 405, "text/plain", "method not allowed\n"), true;

    const form = await readForm(req);
    if (!form) return send(res, 413, "text/plain", "form too large\n"), true;
    if (!viaBearer && !same(form.get("csrf") ?? "", csrf)) return send(res, 403, "text/plain", "invalid or missing CSRF token; reload the page\n"), true;
    if (url.pathname === "/admin/logout") {
      res.setHeader("set-cookie", `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0`);
      return redirect(res, "/admin"), true;
    }
    let action: Action;
    try {
      action = parseAction(form);
    } catch (err) {
      return redirect(res, `/admin?error=${encodeURIComponent((err as Error).message)}`), true;
    }
    if (url.pathname === "/admin/confirm") {
      return send(res, 200, "text/html", confirmPage(opts.relayId, action.describe, { ...Object.fromEntries(form), csrf })), true;
    }
    if (url.pathname === "/admin/do") {
      try {
        const done = await action.run(opts.api);
        return redirect(res, `/admin?done=${encodeURIComponent(done)}`), true;
      } catch (err) {
        const status = httpStatusOf(err);
        if (status >= 500 && status !== 503) throw err;
        return redirect(res, `/admin?error=${encodeURIComponent((err as Error).message)}`), true;
      }
    }
    return send(res, 404, "text/plain", "not found\n"), true;
  };
}

interface Action {
  describe: string;
  run(api: AdminApi): Promise<string>;
}

const target = (kind: string, id: string) => ({ target: kind === "identity" ? { $case: "identityId" as const, value: id } : { $case: "deviceId" as const, value: id } });

/** Turns a submitted form into an action, rejecting incomplete or malformed ones with a precise message. */
function parseAction(form: URLSearchParams): Action {
  const need = (name: string) => {
    const v = (form.get(name) ?? "").trim();
    if (!v) throw new Error(`the form is missing '${name}'`);
    return v;
  };
  switch (form.get("action")) {
    case "purge-queue": {
      const kind = need("kind");
      if (kind !== "device" && kind !== "identity") throw new Error(`kind must be device or identity, not '${kind}'`);
      const id = need("queue");
      return {
        describe: `Delete every message queued for ${kind} '${id}'?`,
        run: async (api) => {
          const r = await api.purgeQueue({ queue: target(kind, id) });
          return `purged ${r.deleted} message(s), ${r.bytes} bytes from ${kind} '${id}'`;
        },
      };
    }
    case "purge-age": {
      const raw = need("age");
      let ms: number;
      try {
        ms = duration({ min: 1000 })(raw);
      } catch (err) {
        throw new Error(`age: ${(err as Error).message}, got '${raw}'`);
      }
      return {
        describe: `Delete every queued message older than ${raw}, on all queues?`,
        run: async (api) => {
          const r = await api.purgeOlderThan({ ageSeconds: Math.floor(ms / 1000) });
          return `purged ${r.deleted} message(s) older than ${raw}, ${r.bytes} bytes`;
        },
      };
    }
    case "suspend":
    case "resume": {
      const verb = form.get("action")!;
      const device = need("device");
      return {
        describe: verb === "suspend" ? `Suspend device '${device}'? Nothing is queued for it and its streams end.` : `Resume device '${device}'?`,
        run: async (api) => {
          const s = verb === "suspend" ? await api.suspendDevice({ deviceId: device }) : await api.resumeDevice({ deviceId: device });
          return `device '${s.deviceId}' is ${s.suspended ? "suspended" : "active"}`;
        },
      };
    }
    case "rebuild": {
      const peer = (form.get("peer") ?? "").trim();
      const fromScratch = form.get("fromScratch") === "1";
      return {
        describe: `Rebuild this relay's queues from the change stream${peer ? ` and peer ${peer}` : ""}${fromScratch ? ", dropping what it holds first" : ""}? It stops serving until done.`,
        run: async (api) => {
          api.startRebuild({ peerAddress: peer, peerAdminToken: "", fromScratch });
          return "rebuild started; its progress shows under Replication";
        },
      };
    }
    default:
      throw new Error(`unknown action '${form.get("action") ?? ""}'`);
  }
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookies(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

/** The urlencoded form body, or undefined when it is too large. */
async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    "content-type": `${type}; charset=utf-8`,
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "referrer-policy": "same-origin",
  });
  res.end(body);
}

function redirect(res: ServerResponse, to: string): void {
  res.writeHead(303, { location: to, "cache-control": "no-store" });
  res.end();
}
