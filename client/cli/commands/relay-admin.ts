/**
 * `parley relay stats|purge|suspend|resume`: maintenance through the admin
 * API. (`parley relay` with service flags runs the relay itself; see main.ts.)
 */
import type { Command } from "commander";
import type { RelayStats } from "../../../generated/parley/v1/relay.js";
import { duration } from "../../../services/common/config.js";
import { printJson, UsageError, withRelayAdmin } from "../context.js";
import { registerReplication, REPLICATION_VERBS } from "./relay-replication.js";

export const ADMIN_VERBS = new Set(["stats", "purge", "suspend", "resume", ...REPLICATION_VERBS, "help", "--help", "-h"]);

function printStats(s: RelayStats): void {
  console.log(`queues ${s.queues}  messages ${s.depth}  bytes ${s.bytes}  oldest ${s.oldestAgeSeconds.toFixed(0)}s`);
  console.log(`identities ${s.identities}  devices ${s.devices} (${s.suspendedDevices} suspended)  purged ${s.purgedMessages} messages / ${s.purgedBytes} bytes`);
  if (!s.top.length) return;
  console.log("\nkind      queue                             depth      bytes  oldest");
  for (const q of s.top) {
    const kind = q.queue?.target?.$case === "deviceId" ? "device" : "identity";
    console.log(`${kind.padEnd(9)} ${(q.queue?.target?.value ?? "").padEnd(32)} ${String(q.depth).padStart(6)} ${String(q.bytes).padStart(10)}  ${q.oldestAgeSeconds.toFixed(0)}s`);
  }
}

export function register(program: Command): void {
  const relay = program
    .command("relay")
    .description("run a relay (parley relay [--flags]; see parley relay --help-config) or maintain one")
    .option("--admin-token <token>", "admin token (or PARLEY_ADMIN_TOKEN)");

  relay
    .command("stats")
    .description("queue totals and the fullest (or oldest) queues")
    .option("--top <n>", "queues to list", (v) => Number(v), 20)
    .option("--order <order>", "depth or oldest", "depth")
    .option("--json", "print JSON")
    .action(async (opts: { top: number; order: string; json?: boolean }, cmd: Command) => {
      if (opts.order !== "depth" && opts.order !== "oldest") throw new UsageError(`--order must be depth or oldest, not '${opts.order}'`);
      if (!Number.isInteger(opts.top) || opts.top < 1) throw new UsageError("--top must be a positive integer");
      const stats = await withRelayAdmin(cmd, (a) => a.stats({ top: opts.top, order: opts.order as "depth" | "oldest" }));
      if (opts.json) printJson(stats);
      else printStats(stats);
    });

  relay
    .command("purge")
    .description("delete queued messages: one queue (--device/--identity) or all older than an age")
    .option("--device <id>", "purge this device's queue")
    .option("--identity <id>", "purge this identity's queue")
    .option("--older-than <age>", "purge everything older than this (e.g. 7d, 12h)")
    .action(async (opts: { device?: string; identity?: string; olderThan?: string }, cmd: Command) => {
      const chosen = [opts.device, opts.identity, opts.olderThan].filter((x) => x !== undefined).length;
      if (chosen !== 1) throw new UsageError("choose exactly one of --device ID, --identity ID or --older-than AGE");
      let ageMs = 0;
      if (opts.olderThan !== undefined) {
        try {
          ageMs = duration({ min: 1000 })(opts.olderThan);
        } catch (err) {
          throw new UsageError(`--older-than: ${(err as Error).message}, got '${opts.olderThan}'`);
        }
      }
      const res = await withRelayAdmin(cmd, (a) =>
        opts.device ? a.purgeQueue({ deviceId: opts.device }) : opts.identity ? a.purgeQueue({ identityId: opts.identity }) : a.purgeOlderThan(Math.floor(ageMs / 1000)),
      );
      console.log(`purged ${res.deleted} message(s), ${res.bytes} bytes`);
    });

  for (const verb of ["suspend", "resume"] as const) {
    relay
      .command(`${verb} <device>`)
      .description(verb === "suspend" ? "stop queueing for a device and end its streams" : "let a suspended device receive again")
      .action(async (device: string, _opts, cmd: Command) => {
        const state = await withRelayAdmin(cmd, (a) => (verb === "suspend" ? a.suspend(device) : a.resume(device)));
        console.log(`device '${state.deviceId}' is ${state.suspended ? "suspended" : "active"}`);
      });
  }

  registerReplication(relay);
}
