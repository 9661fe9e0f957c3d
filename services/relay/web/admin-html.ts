/**
 * Server-rendered HTML of the relay's admin page: no scripts, plain forms.
 * Every figure carries a data-figure attribute so tests (and scrapers) can
 * find it without depending on the layout.
 */
import type * as pb from "../../../generated/parley/v1/relay.js";

export const esc = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const STYLE = `
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.flash{background:#eef7ee;border:1px solid #9c9;padding:.5rem}.error{background:#fbeeee;border-color:#c99}
form.inline{display:inline}fieldset{margin:.5rem 0;border:1px solid #ddd}
.warn{color:#a40}`;

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

export function loginPage(relayId: string, error?: string): string {
  return page(
    `Relay ${relayId}: sign in`,
    `<h1>Relay <code>${esc(relayId)}</code> admin</h1>
     ${error ? `<p class="flash error" role="alert">${esc(error)}</p>` : ""}
     <form method="post" action="/admin/login">
       <label>Admin token <input type="password" name="token" autocomplete="current-password" autofocus></label>
       <button type="submit">Sign in</button>
     </form>`,
  );
}

const hidden = (fields: Record<string, string>) => Object.entries(fields).map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`).join("");

function queueName(q: pb.QueueStats): { kind: string; id: string } {
  return { kind: q.queue?.target?.$case === "identityId" ? "identity" : "device", id: q.queue?.target?.value ?? "" };
}

function queueTable(title: string, id: string, queues: pb.QueueStats[], csrf: string): string {
  if (!queues.length) return `<h2>${esc(title)}</h2><p>No queued messages.</p>`;
  const rows = queues
    .map((q) => {
      const { kind, id: qid } = queueName(q);
      return `<tr data-queue="${esc(`${kind}:${qid}`)}"><td>${kind}</td><td><code>${esc(qid)}</code></td>
        <td class="n" data-figure="depth">${q.depth}</td><td class="n" data-figure="bytes">${q.bytes}</td><td class="n">${q.oldestAgeSeconds.toFixed(0)} s</td>
        <td><form class="inline" method="post" action="/admin/confirm">${hidden({ csrf, action: "purge-queue", kind, queue: qid })}<button type="submit">Purge…</button></form></td></tr>`;
    })
    .join("");
  return `<h2>${esc(title)}</h2><table id="${id}"><thead><tr><th>kind</th><th>queue</th><th>messages</th><th>bytes</th><th>oldest</th><th></th></tr></thead><tbody>${rows}</tbody></table>`;
}

const ROLE_NAMES = ["standalone", "primary", "secondary", "syncing"];

export function dashboard(opts: {
  relayId: string;
  stats: pb.RelayStats;
  oldest: pb.RelayStats;
  replication: pb.ReplicationStatus;
  csrf: string;
  flash?: string;
  error?: string;
}): string {
  const { stats: s, replication: r, csrf } = opts;
  const figure = (name: string, label: string, value: string | number) => `<tr><th>${esc(label)}</th><td class="n" data-figure="${name}">${esc(value)}</td></tr>`;
  const role = ROLE_NAMES[r.role] ?? String(r.role);
  return page(
    `Relay ${opts.relayId}`,
    `<h1>Relay <code>${esc(opts.relayId)}</code></h1>
     <form method="post" action="/admin/logout">${hidden({ csrf })}<button type="submit">Sign out</button></form>
     ${opts.flash ? `<p class="flash" role="status">${esc(opts.flash)}</p>` : ""}
     ${opts.error ? `<p class="flash error" role="alert">${esc(opts.error)}</p>` : ""}
     <h2>Queues</h2>
     <table id="totals">
       ${figure("queues", "Queues holding messages", s.queues)}
       ${figure("depth", "Messages queued", s.depth)}
       ${figure("bytes", "Bytes queued", s.bytes)}
       ${figure("oldest", "Oldest message age (s)", s.oldestAgeSeconds.toFixed(0))}
       ${figure("identities", "Identities", s.identities)}
       ${figure("devices", "Devices", s.devices)}
       ${figure("suspended", "Suspended devices", s.suspendedDevices)}
       ${figure("purged-messages", "Purged messages", s.purgedMessages)}
       ${figure("purged-bytes", "Purged bytes", s.purgedBytes)}
     </table>
     <h2>Replication</h2>
     <table id="replication">
       ${figure("role", "Role", role)}
       ${r.role ? figure("replica", "This replica", r.replica) + figure("primary", "Primary", r.primary || "-") + figure("epoch", "Epoch", r.epoch) : ""}
       ${figure("applied-change", "Last change applied", r.appliedChange)}
       ${r.role ? figure("behind-messages", "Behind (messages)", r.behindMessages) + figure("behind-seconds", "Behind (seconds)", r.behindSeconds.toFixed(1)) : ""}
       ${r.needsRebuild ? `<tr><th>Needs rebuild</th><td class="warn" data-figure="needs-rebuild">${esc(r.needsRebuild)}</td></tr>` : ""}
       ${r.rebuild ? `<tr><th>Last rebuild</th><td data-figure="rebuild">${esc(r.rebuild)}</td></tr>` : ""}
     </table>
     ${queueTable("Fullest queues", "top-depth", s.top, csrf)}
     ${queueTable("Queues with the oldest messages", "top-oldest", opts.oldest.top, csrf)}
     <h2>Maintenance</h2>
     <fieldset><legend>Purge by age</legend>
       <form method="post" action="/admin/confirm">${hidden({ csrf, action: "purge-age" })}
         <label>Older than <input name="age" placeholder="7d" required></label> <button type="submit">Purge…</button></form></fieldset>
     <fieldset><legend>Device</legend>
       <form method="post" action="/admin/confirm">${hidden({ csrf })}
         <label>Device id <input name="device" required></label>
         <button type="submit" name="action" value="suspend">Suspend…</button>
         <button type="submit" name="action" value="resume">Resume…</button></form></fieldset>
     <fieldset><legend>Rebuild from the change stream</legend>
       <form method="post" action="/admin/confirm">${hidden({ csrf, action: "rebuild" })}
         <label>Peer relay (optional) <input name="peer" placeholder="relay-b:50051"></label>
         <label><input type="checkbox" name="fromScratch" value="1"> from scratch</label>
         <button type="submit">Rebuild…</button></form></fieldset>`,
  );
}

/** The confirmation step: what will happen, and a button that does it. */
export function confirmPage(relayId: string, what: string, fields: Record<string, string>): string {
  return page(
    `Relay ${relayId}: confirm`,
    `<h1>Confirm</h1><p id="confirm-text">${esc(what)}</p>
     <form method="post" action="/admin/do">${hidden(fields)}<button type="submit" id="confirm">Yes, do it</button></form>
     <p><a href="/admin">Cancel</a></p>`,
  );
}
