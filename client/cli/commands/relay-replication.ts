/**
 * `parley relay replication|promote|demote|rebuild|verify`: replication
 * through the admin API of the relay replica named by --relay.
 *
 *   parley --relay relay-b:50051 relay promote          # fail over to this secondary
 *   parley --relay relay-a:50051 relay rebuild --peer relay-b:50051 --from-scratch
 */
import type { Command } from "commander";
import { ReplicaRole, type RebuildReport, type ReplicationStatus } from "../../../generated/parley/v1/relay.js";
import type { RelayAdmin } from "../../admin.js";
import { printJson, UsageError, withRelayAdmin } from "../context.js";

export const REPLICATION_VERBS = ["replication", "promote", "demote", "rebuild", "verify"];

const ROLE_NAME: Record<number, string> = {
  [ReplicaRole.REPLICA_ROLE_STANDALONE]: "standalone",
  [ReplicaRole.REPLICA_ROLE_PRIMARY]: "primary",
  [ReplicaRole.REPLICA_ROLE_SECONDARY]: "secondary",
  [ReplicaRole.REPLICA_ROLE_SYNCING]: "syncing",
};

function printStatus(s: ReplicationStatus): void {
  const role = ROLE_NAME[s.role] ?? String(s.role);
  if (s.role === ReplicaRole.REPLICA_ROLE_STANDALONE) return console.log("standalone (no replication)");
  console.log(`replica ${s.replica}: ${role}  epoch ${s.epoch}  primary ${s.primary || "-"}  stream ${s.stream}`);
  console.log(`applied change ${s.appliedChange} (stream seq ${s.appliedStreamSeq})  behind ${s.behindMessages} messages / ${s.behindSeconds.toFixed(1)} s`);
  if (s.needsRebuild) console.log(`NEEDS REBUILD: ${s.needsRebuild}`);
  if (s.rebuild) console.log(`last rebuild: ${s.rebuild}`);
}

function printReport(r: RebuildReport): void {
  console.log(`source ${r.source}: ${r.replayedChanges} changes replayed, ${r.copiedEntries} entries copied (${r.seconds.toFixed(1)} s, stream seq ${r.streamSeq})`);
  console.log(`checked ${r.queuesChecked} queues, ${r.entriesChecked} entries: ${r.verified ? "verified" : `${r.mismatches.length} mismatch(es)`}`);
  for (const m of r.mismatches) console.log(`  ${m.queue?.target?.$case === "identityId" ? "identity" : "device"} ${m.queue?.target?.value ?? ""}: ${m.problem}`);
}

export function registerReplication(relay: Command): void {
  relay
    .command("replication")
    .description("this replica's role, epoch, position and lag")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const s = await withRelayAdmin(cmd, (a) => a.replicationStatus());
      if (opts.json) printJson(s);
      else printStatus(s);
    });

  relay
    .command("promote")
    .description("make this secondary the primary (applies the whole change stream first; fences the old primary)")
    .option("--timeout <seconds>", "give up after this long", (v) => Number(v), 30)
    .action(async (opts: { timeout: number }, cmd: Command) => {
      if (!Number.isInteger(opts.timeout) || opts.timeout < 1 || opts.timeout > 3600) throw new UsageError("--timeout must be 1–3600 seconds");
      printStatus(await withRelayAdmin(cmd, (a) => a.promote(opts.timeout)));
    });

  relay
    .command("demote")
    .description("make this primary stop accepting writes and follow the stream (switchover: demote, then promote the other)")
    .action(async (_opts, cmd: Command) => printStatus(await withRelayAdmin(cmd, (a) => a.demote())));

  relay
    .command("rebuild")
    .description("rebuild this relay's queues from the change stream (and a peer where the stream was trimmed), then verify")
    .option("--peer <address>", "peer relay to copy from and verify against")
    .option("--peer-admin-token <token>", "the peer's admin token (default: this relay's)")
    .option("--from-scratch", "drop this relay's queues first instead of replaying after what it has")
    .option("--json", "print JSON")
    .action(async (opts: { peer?: string; peerAdminToken?: string; fromScratch?: boolean; json?: boolean }, cmd: Command) => {
      const r = await withRelayAdmin(cmd, (a) => a.rebuild({ peerAddress: opts.peer, peerAdminToken: opts.peerAdminToken, fromScratch: opts.fromScratch }));
      if (opts.json) printJson(r);
      else printReport(r);
      if (!r.verified) process.exitCode = 1;
    });

  relay
    .command("verify")
    .description("compare this relay's queues with a peer's (or check its counters against its entries)")
    .option("--peer <address>", "peer relay to compare with")
    .option("--peer-admin-token <token>", "the peer's admin token (default: this relay's)")
    .action(async (opts: { peer?: string; peerAdminToken?: string }, cmd: Command) => {
      const r = await withRelayAdmin(cmd, (a) => a.verifyQueues({ peerAddress: opts.peer, peerAdminToken: opts.peerAdminToken }));
      printReport(r);
      if (!r.verified) process.exitCode = 1;
    });
}
