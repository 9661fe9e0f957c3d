/**
 * `parley compliance status|export|ack BATCH`: the compliance service's admin
 * API. (`parley compliance` with service flags runs the service; see main.ts.)
 * The address is --address, or the profile's relay address (parley up serves
 * everything on one port).
 */
import type { Command } from "commander";
import { ComplianceAdmin } from "../../compliance.js";
import { adminToken, loadProfile, printJson, withClient } from "../context.js";

export const COMPLIANCE_VERBS = new Set(["status", "export", "ack", "help", "--help", "-h"]);

function withAdmin<T>(cmd: Command, fn: (admin: ComplianceAdmin) => Promise<T>): Promise<T> {
  const address = cmd.optsWithGlobals<{ address?: string }>().address ?? loadProfile(cmd).data.relay[0]!;
  return withClient(ComplianceAdmin.create(address, adminToken(cmd)), fn);
}

const when = (ms: number) => (ms ? new Date(ms).toISOString() : "never");

export function register(program: Command): void {
  const c = program
    .command("compliance")
    .description("run the compliance service (parley compliance [--flags]; see parley compliance --help-config) or query one")
    .option("--address <host:port>", "the compliance service's gRPC address (default: the profile's relay address, as with parley up)")
    .option("--admin-token <token>", "admin token (or PARLEY_ADMIN_TOKEN)");

  c.command("status")
    .description("staged records, last export, files written, errors")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const s = await withAdmin(cmd, (a) => a.status());
      if (opts.json) return printJson(s);
      console.log(`staged ${s.stagedRecords} records, oldest ${s.oldestStagedAgeSeconds.toFixed(0)}s old; export every ${s.conversationIntervalMs / 1000}s into ${s.outputDir}`);
      console.log(`last export ${when(s.lastExportAtMs)}${s.lastBatchId ? ` (batch ${s.lastBatchId})` : ""}; ${s.batchesAwaitingPickup} batch(es) awaiting pickup`);
      console.log(`written ${s.filesWritten} files, ${s.bytesWritten} bytes; errors ${s.errors}${s.lastError ? ` (last: ${s.lastError})` : ""}`);
    });

  c.command("export")
    .description("export everything staged now instead of at the next interval")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await withAdmin(cmd, (a) => a.exportNow());
      if (opts.json) return printJson(r);
      if (!r.batchId) return console.log("nothing staged: no batch written");
      console.log(`batch ${r.batchId}: ${r.conversations} conversation(s), ${r.records} record(s), ${r.files.length} file(s)`);
      for (const f of r.files) console.log(`  ${f}`);
    });

  c.command("ack")
    .description("mark a batch picked up: its files are removed from the output directory")
    .argument("<batch>", "batch id, e.g. 20261122T081500123Z-1a2b3c4d")
    .action(async (batch: string, _opts: unknown, cmd: Command) => {
      const r = await withAdmin(cmd, (a) => a.acknowledgePickup(batch));
      console.log(`batch ${batch} removed (${r.filesRemoved} files)`);
    });
}
