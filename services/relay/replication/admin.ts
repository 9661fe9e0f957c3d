/**
 * Replication methods of parley.v1.RelayAdmin: status, promote, demote,
 * rebuild, verification and the snapshot a peer rebuilds from. A relay
 * without replication (standalone) answers status and serves checksums and
 * snapshots; the rest need a replica.
 */
import type { ServerWritableStream } from "@grpc/grpc-js";
import { FailedPreconditionError, InvalidArgumentError } from "../../common/errors.js";
import type { Pool } from "../../common/db.js";
import type { Logger } from "../../common/log.js";
import * as pb from "../../../generated/parley/v1/relay.js";
import type { ChangeStream } from "./change-stream.js";
import { PeerRelay, rebuild, verify, type RebuildReport } from "./rebuild.js";
import { readPosition, type Replica, type ReplicationStatus } from "./replica.js";
import { exportSnapshot, queueChecksums, type Mismatch } from "./snapshot.js";

export interface ReplicationContext {
  relayId: string;
  pool: Pool;
  log: Logger;
  adminToken: string;
  replica?: Replica;
  stream?: ChangeStream;
}

const ROLE: Record<string, pb.ReplicaRole> = {
  primary: pb.ReplicaRole.REPLICA_ROLE_PRIMARY,
  secondary: pb.ReplicaRole.REPLICA_ROLE_SECONDARY,
  syncing: pb.ReplicaRole.REPLICA_ROLE_SYNCING,
};

const address = (kind: number, id: string) => ({ target: kind === 2 ? { $case: "identityId" as const, value: id } : { $case: "deviceId" as const, value: id } });

/** Status of the relay's replication, also for the web admin page. */
export class ReplicationView {
  /** Progress or outcome of the last rebuild started here. */
  lastRebuild = "";
  private rebuilding: Promise<RebuildReport> | undefined;

  constructor(readonly ctx: ReplicationContext) {}

  /** A standalone relay reports its position with role "primary" (it takes writes); toProto() says STANDALONE. */
  async status(): Promise<ReplicationStatus> {
    if (this.ctx.replica) return this.ctx.replica.status();
    const pos = await readPosition(this.ctx.pool);
    return { ...pos, role: "primary", replica: "", stream: "", behindMessages: 0, behindSeconds: 0, needsRebuild: "" };
  }

  async toProto(): Promise<pb.ReplicationStatus> {
    const s = await this.status();
    return {
      role: this.ctx.replica ? ROLE[s.role]! : pb.ReplicaRole.REPLICA_ROLE_STANDALONE,
      replica: s.replica,
      primary: s.primary,
      epoch: s.epoch,
      stream: s.stream,
      appliedChange: s.change,
      appliedStreamSeq: s.streamSeq,
      behindMessages: s.behindMessages,
      behindSeconds: s.behindSeconds,
      needsRebuild: s.needsRebuild,
      rebuild: this.lastRebuild,
    };
  }

  private need(): { replica: Replica; stream: ChangeStream } {
    if (!this.ctx.replica || !this.ctx.stream) {
      throw new FailedPreconditionError(`relay '${this.ctx.relayId}' runs standalone: start it with --role primary or --role secondary to replicate`);
    }
    return { replica: this.ctx.replica, stream: this.ctx.stream };
  }

  async promote(timeoutMs: number): Promise<void> {
    await this.need().replica.promote(timeoutMs);
  }

  async demote(): Promise<void> {
    await this.need().replica.demote();
  }

  /** Runs one rebuild at a time; a second request while one runs is refused. */
  rebuild(req: { peerAddress: string; peerAdminToken: string; fromScratch: boolean }): Promise<RebuildReport> {
    const { replica, stream } = this.need();
    if (this.rebuilding) throw new FailedPreconditionError("a rebuild is already running on this relay");
    const peer = req.peerAddress ? { address: req.peerAddress, token: req.peerAdminToken || this.ctx.adminToken } : undefined;
    this.lastRebuild = `running since ${new Date().toISOString()}${peer ? ` (peer ${peer.address})` : ""}`;
    const run = rebuild({ pool: this.ctx.pool, replica, stream, log: this.ctx.log, peer, fromScratch: req.fromScratch });
    this.rebuilding = run;
    run.then(
      (r) => (this.lastRebuild = `finished ${new Date().toISOString()}: ${r.source}, ${r.replayedChanges} changes replayed, ${r.copiedEntries} entries copied, ${r.queuesChecked} queues checked, ${r.verified ? "verified" : `${r.mismatches.length} mismatches`}`),
      (err: Error) => (this.lastRebuild = `failed ${new Date().toISOString()}: ${err.message}`),
    ).finally(() => (this.rebuilding = undefined));
    return run;
  }
}

function reportToProto(r: RebuildReport): pb.RebuildReport {
  return {
    source: r.source,
    replayedChanges: r.replayedChanges,
    copiedEntries: r.copiedEntries,
    queuesChecked: r.queuesChecked,
    entriesChecked: r.entriesChecked,
    mismatches: r.mismatches.map(mismatchToProto),
    verified: r.verified,
    streamSeq: r.streamSeq,
    seconds: r.seconds,
  };
}

const mismatchToProto = (m: Mismatch): pb.QueueMismatch => ({ queue: m.kind ? address(m.kind, m.id) : undefined, problem: m.problem });

export function replicationAdminHandlers(view: ReplicationView) {
  const { ctx } = view;
  return {
    getReplicationStatus: async (): Promise<pb.ReplicationStatus> => view.toProto(),
    promote: async (req: pb.PromoteRequest): Promise<pb.ReplicationStatus> => {
      if (req.timeoutSeconds > 3600) throw new InvalidArgumentError(`timeout_seconds is ${req.timeoutSeconds}; at most 3600`);
      await view.promote((req.timeoutSeconds || 30) * 1000);
      return view.toProto();
    },
    demote: async (): Promise<pb.ReplicationStatus> => {
      await view.demote();
      return view.toProto();
    },
    rebuild: async (req: pb.RebuildRequest): Promise<pb.RebuildReport> => reportToProto(await view.rebuild(req)),
    verifyQueues: async (req: pb.VerifyQueuesRequest): Promise<pb.RebuildReport> => {
      const started = performance.now();
      const peer = req.peerAddress ? new PeerRelay({ address: req.peerAddress, token: req.peerAdminToken || ctx.adminToken }) : undefined;
      try {
        const { mismatches, checked } = await verify(ctx.pool, peer);
        return reportToProto({
          source: peer ? "peer" : "stream", replayedChanges: 0, copiedEntries: 0,
          queuesChecked: checked.queues.length, entriesChecked: checked.queues.reduce((s, q) => s + q.entries, 0),
          mismatches, verified: mismatches.length === 0, streamSeq: checked.streamSeq, seconds: (performance.now() - started) / 1000,
        });
      } finally {
        peer?.close();
      }
    },
    getQueueChecksums: async (): Promise<pb.QueueChecksums> => {
      const cs = await queueChecksums(ctx.pool);
      return {
        streamSeq: cs.streamSeq,
        changeSeq: cs.changeSeq,
        queues: cs.queues.map((q) => ({ queue: address(q.kind, q.id), lastSeq: q.lastSeq, depth: q.depth, bytes: q.bytes, checksum: q.checksum })),
      };
    },
    exportSnapshot: async (_req: pb.ExportSnapshotRequest, _ctx: unknown, stream: ServerWritableStream<pb.ExportSnapshotRequest, pb.SnapshotChunk>): Promise<void> => {
      for await (const chunk of exportSnapshot(ctx.pool)) {
        // Respect the peer's flow control: a large relay is sent in chunks, not buffered whole.
        if (!stream.write(chunk)) await new Promise((r) => stream.once("drain", r));
      }
    },
  };
}
