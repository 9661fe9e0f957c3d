/**
 * `parley workspace …`: workspace sync from this device (state in
 * <profile>/workspaces.sqlite).
 *
 *   parley workspace create team-task --name "Team Task"
 *   parley workspace invite team-task jane --role manager > jane.invite.json
 *   parley --profile /tmp/jane workspace join jane.invite.json
 *   parley workspace change team-task todo/1 "write the spec"
 *   parley workspace sync [--follow]        # receive, catch up, send
 *   parley workspace show team-task [KEY]   # the content as this endpoint has it
 *   parley workspace status team-task       # queues, missing ranges, alerts
 *   parley workspace suspend team-task      # offers members to suspend to recover disk space
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { systemClock } from "../../../services/common/clock.js";
import { WorkspaceEngine } from "../../sync/engine.js";
import { SyncStore } from "../../sync/store.js";
import { RelayTransport } from "../../sync/transport.js";
import type { Invitation } from "../../sync/types.js";
import { loadProfile, printJson, UsageError } from "../context.js";

async function withEngine<T>(cmd: Command, fn: (engine: WorkspaceEngine) => Promise<T> | T): Promise<T> {
  const profile = loadProfile(cmd);
  const store = SyncStore.open(join(profile.dir, "workspaces.sqlite"));
  const transport = RelayTransport.create({
    device: profile.device(),
    relays: profile.data.relay,
    clock: systemClock,
    relayPublicKeys: profile.relayPublicKey ? { [profile.data.relay[0]!]: profile.relayPublicKey } : undefined,
  });
  try {
    return await fn(WorkspaceEngine.create({ store, transport, clock: systemClock }));
  } finally {
    transport.close();
    store.close();
  }
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
const date = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");

function role(value: string): "manager" | "participant" {
  if (value !== "manager" && value !== "participant") throw new UsageError(`--role '${value}' must be manager or participant`);
  return value;
}

export function register(program: Command): void {
  const ws = program.command("workspace").description("workspaces synchronised between members' devices through relays");

  ws.command("create <id>")
    .description("create a workspace; you are its first manager")
    .option("--name <name>", "display name")
    .option("--legacy", "Groove 2.5 alerts: no 100 MB size condition")
    .action((id: string, opts: { name?: string; legacy?: boolean }, cmd: Command) =>
      withEngine(cmd, async (e) => {
        e.createWorkspace(id, opts.name ?? id, { legacy: opts.legacy });
        await e.pump();
        console.log(`created workspace '${id}'`);
      }),
    );

  ws.command("invite <workspace> <identity>")
    .description("add a member and write the invitation it joins with")
    .option("--role <role>", "manager or participant", "participant")
    .option("--out <file>", "write the invitation here (default stdout)")
    .action((id: string, identity: string, opts: { role: string; out?: string }, cmd: Command) =>
      withEngine(cmd, async (e) => {
        const inv = e.invite(id, identity, role(opts.role));
        await e.pump();
        const text = JSON.stringify(inv) + "\n";
        if (opts.out) writeFileSync(opts.out, text, { mode: 0o600 });
        else process.stdout.write(text);
      }),
    );

  ws.command("join <invitation-file>")
    .description("join a workspace from an invitation (this device becomes one of your endpoints)")
    .action((file: string, _opts: unknown, cmd: Command) =>
      withEngine(cmd, async (e) => {
        let inv: Invitation;
        try {
          inv = JSON.parse(readFileSync(file, "utf8")) as Invitation;
        } catch (err) {
          throw new UsageError(`${file} is not an invitation: ${(err as Error).message}`);
        }
        e.join(inv);
        await e.pumpUntilQuiet();
        console.log(`joined workspace '${inv.workspaceId}' as ${inv.role}`);
      }),
    );

  ws.command("change <workspace> <key> <value>")
    .description("change a workspace item; managers may get a synchronisation alert")
    .option("--file-bytes <n>", "size of a file this item attaches", (v) => Number.parseInt(v, 10))
    .action((id: string, key: string, value: string, opts: { fileBytes?: number }, cmd: Command) =>
      withEngine(cmd, async (e) => {
        const { seq, alerts } = await e.change(id, key, value, { fileBytes: opts.fileBytes });
        console.log(`change ${seq} made`);
        for (const a of alerts) {
          console.log(`⚠ synchronisation alert: '${a.memberId}' has ${a.outstanding} change(s) (${mb(a.bytes)}) queued since ${date(a.oldestQueuedAtMs)}; see 'parley workspace suspend ${id}'`);
        }
      }),
    );

  ws.command("sync")
    .description("receive, catch up from peers, send; --follow keeps going while online")
    .option("--follow", "stay online (live relay streams) until interrupted")
    .action((opts: { follow?: boolean }, cmd: Command) =>
      withEngine(cmd, async (e) => {
        await e.pumpUntilQuiet();
        if (opts.follow) {
          // Online: relay streams stay open and each arrival runs a round.
          const ctl = new AbortController();
          process.once("SIGINT", () => ctl.abort());
          process.once("SIGTERM", () => ctl.abort());
          await e.live(ctl.signal);
        }
        for (const w of e.workspaces()) {
          const s = e.status(w);
          console.log(`${w}: ${s.missing.length ? `missing ${s.missing.map((r) => `${r.origin}:${r.from}-${r.to}`).join(", ")}` : "synchronised"}`);
        }
      }),
    );

  ws.command("show <workspace> [key]")
    .description("the workspace's content as this endpoint has it (one item with KEY)")
    .option("--json", "print as JSON")
    .action((id: string, key: string | undefined, opts: { json?: boolean }, cmd: Command) =>
      withEngine(cmd, (e) => {
        const content = e.content(id);
        if (key !== undefined && !(key in content)) throw new UsageError(`workspace '${id}' has no item '${key}' here`);
        const shown = key === undefined ? content : { [key]: content[key]! };
        if (opts.json) return printJson(shown);
        for (const [k, v] of Object.entries(shown)) console.log(`${k}\t${v}`);
      }),
    );

  ws.command("status <workspace>")
    .description("members, endpoints, this endpoint's outgoing queue and alerts")
    .option("--json", "print as JSON")
    .action((id: string, opts: { json?: boolean }, cmd: Command) =>
      withEngine(cmd, (e) => {
        const s = e.status(id);
        if (opts.json) return printJson(s);
        console.log(`${s.name} (${s.workspaceId}) — ${mb(s.sizeBytes)}${s.legacy ? ", legacy alerts" : ""}; you are ${s.self.memberId}/${s.self.endpointId} (${s.self.role ?? "not a member"}${s.self.suspended ? ", suspended" : ""})`);
        for (const m of s.members) console.log(`  ${m.role.padEnd(11)} ${m.memberId}: ${m.endpoints.map((x) => `${x.endpointId}${x.suspended ? ` [suspended: ${x.reason}]` : ""}`).join(", ") || "(no endpoint yet)"}`);
        for (const o of s.outgoing) console.log(`  queued for ${o.memberId}/${o.endpointId}: ${o.outstanding} change(s), ${mb(o.bytes)}, oldest ${date(o.oldestQueuedAtMs)}`);
        if (s.missing.length) console.log(`  missing: ${s.missing.map((r) => `${r.origin}:${r.from}-${r.to}`).join(", ")}`);
        for (const a of s.alerts) console.log(`  ⚠ alert since ${date(a.raisedAtMs)}: '${a.memberId}' not synchronised since ${date(a.oldestQueuedAtMs)}`);
      }),
    );

  ws.command("alerts <workspace>")
    .description("synchronisation alerts on this endpoint")
    .action((id: string, _opts: unknown, cmd: Command) => withEngine(cmd, (e) => printJson(e.alerts(id))));

  ws.command("suspend <workspace>")
    .description("without --member/--endpoint: list whom suspending would recover disk space from")
    .option("--member <identity>", "suspend all of a member's endpoints")
    .option("--endpoint <device>", "suspend one endpoint")
    .option("--yes", "confirm the suspension")
    .action((id: string, opts: { member?: string; endpoint?: string; yes?: boolean }, cmd: Command) =>
      withEngine(cmd, async (e) => {
        if (!opts.member && !opts.endpoint) {
          const choices = e.suspendChoices(id);
          if (!choices.length) return console.log("no member has changes waiting in this endpoint's queue");
          for (const c of choices) {
            console.log(`${c.memberId}${c.stale ? " (not synchronised for 21 days or more)" : ""}: ${c.outstanding} change(s) since ${date(c.oldestQueuedAtMs)}; suspending frees ${mb(c.bytes)} here`);
            console.log(`  parley workspace suspend ${id} --member ${c.memberId} --yes`);
          }
          return;
        }
        if (opts.member && opts.endpoint) throw new UsageError("give --member or --endpoint, not both");
        if (!opts.yes) throw new UsageError("suspension stops all delivery to the member until resumed: add --yes to confirm");
        const done = await e.suspend(id, opts.member ? { memberId: opts.member } : { endpointId: opts.endpoint! });
        await e.pump();
        console.log(done.length ? `suspended ${done.join(", ")}` : "already suspended");
      }),
    );

  ws.command("resume <workspace>")
    .description("resume a suspended member; it catches up on its next synchronisation")
    .requiredOption("--member <identity>", "the member to resume")
    .action((id: string, opts: { member: string }, cmd: Command) =>
      withEngine(cmd, async (e) => {
        const done = await e.resume(id, opts.member);
        await e.pump();
        console.log(done.length ? `resumed ${done.join(", ")}` : `'${opts.member}' has no suspended endpoint`);
      }),
    );

  ws.command("role <workspace> <identity> <role>")
    .description("make a member a manager or a participant")
    .action((id: string, identity: string, r: string, _opts: unknown, cmd: Command) =>
      withEngine(cmd, async (e) => {
        await e.setRole(id, identity, role(r));
        await e.pump();
        console.log(`'${identity}' is now ${r}`);
      }),
    );
}
