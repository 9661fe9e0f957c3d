/**
 * Rebuild: after the relay's database was lost or restored from an old
 * backup, bring its queues back from the change stream — copying a snapshot
 * from a peer relay first when the stream was trimmed past this database's
 * position — then verify them against the source.
 *
 *   const report = await rebuild({ pool, replica, stream, peer: { address, token } });
 */
import * as grpc from "@grpc/grpc-js";
import { FailedPreconditionError, UnavailableError } from "../../common/errors.js";
import { tx, type Pool } from "../../common/db.js";
import type { Logger } from "../../common/log.js";
import * as pb from "../../../generated/parley/v1/relay.js";
import type { ChangeStream } from "./change-stream.js";
import { readPosition, type Replica } from "./replica.js";
import { clearRelayTables, compareChecksums, importSnapshot, queueChecksums, type Checksums, type Mismatch, type SnapshotChunk } from "./snapshot.js";

export interface PeerRef {
  address: string;
  token: string;
}

export interface RebuildReport {
  source: "stream" | "peer";
  replayedChanges: number;
  copiedEntries: number;
  queuesChecked: number;
  entriesChecked: number;
  mismatches: Mismatch[];
  verified: boolean;
  streamSeq: number;
  seconds: number;
}

/** A peer relay's admin API, as far as rebuilds need it. */
export class PeerRelay {
  private readonly client: pb.RelayAdminClient;

  constructor(private readonly peer: PeerRef) {
    this.client = new pb.RelayAdminClient(peer.address, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 256 * 1024 * 1024 });
  }

  close(): void {
    this.client.close();
  }

  private md(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${this.peer.token}`);
    return md;
  }

  async checksums(): Promise<Checksums> {
    const res = await new Promise<pb.QueueChecksums>((resolve, reject) =>
      this.client.getQueueChecksums({}, this.md(), { deadline: Date.now() + 60_000 }, (err, r) => (err ? reject(peerError(this.peer, err)) : resolve(r))),
    );
    return {
      streamSeq: res.streamSeq,
      changeSeq: res.changeSeq,
      queues: res.queues.map((q) => ({
        kind: q.queue?.target?.$case === "identityId" ? 2 : 1,
        id: q.queue?.target?.value ?? "",
        lastSeq: q.lastSeq, depth: q.depth, bytes: q.bytes, entries: q.depth,
        checksum: Buffer.from(q.checksum),
      })),
    };
  }

  async *snapshot(): AsyncGenerator<SnapshotChunk> {
    const call = this.client.exportSnapshot({}, this.md());
    try {
      for await (const c of call as AsyncIterable<pb.SnapshotChunk>) yield c;
    } catch (err) {
      throw peerError(this.peer, err as grpc.ServiceError);
    }
  }
}

function peerError(peer: PeerRef, err: grpc.ServiceError): Error {
  return new UnavailableError(`peer relay ${peer.address}: ${err.details || err.message}`);
}

export async function rebuild(opts: {
  pool: Pool;
  replica: Replica;
  stream: ChangeStream;
  log: Logger;
  peer?: PeerRef;
  fromScratch: boolean;
}): Promise<RebuildReport> {
  const started = performance.now();
  const { pool, replica, stream } = opts;
  const peer = opts.peer && new PeerRelay(opts.peer);
  try {
    const bounds = await stream.bounds();
    const startAt = opts.fromScratch ? 0 : (await readPosition(pool)).streamSeq;
    // Messages startAt+1 … first-1 are gone from the stream: only a peer still has their effect.
    const needPeer = bounds.first > startAt + 1;
    if (needPeer && !peer) {
      throw new FailedPreconditionError(
        `the change stream starts at ${bounds.first} but this relay's database is at ${startAt}: name a peer relay (peer_address) to copy from`,
      );
    }
    await replica.pause("rebuilding");
    if (opts.fromScratch) await tx(pool, (c) => clearRelayTables(c));
    let pos = await readPosition(pool);
    let source: RebuildReport["source"] = "stream";
    let copiedEntries = 0;
    if (needPeer && peer) {
      copiedEntries = await importSnapshot(pool, peer.snapshot());
      source = "peer";
      pos = await readPosition(pool);
      if (bounds.first > pos.streamSeq + 1) {
        throw new FailedPreconditionError(`the peer's copy is at ${pos.streamSeq}, also before the stream's start ${bounds.first}: rebuild from a peer that is caught up`);
      }
      opts.log.info({ entries: copiedEntries, streamSeq: pos.streamSeq }, "rebuild: copied the peer's snapshot");
    }
    const before = pos.change;
    await replica.reload();
    const after = await readPosition(pool);
    const { mismatches, checked } = await verify(pool, peer);
    const report: RebuildReport = {
      source,
      replayedChanges: after.change - before,
      copiedEntries,
      queuesChecked: checked.queues.length,
      entriesChecked: checked.queues.reduce((s, q) => s + q.entries, 0),
      mismatches,
      verified: mismatches.length === 0,
      streamSeq: checked.streamSeq,
      seconds: (performance.now() - started) / 1000,
    };
    opts.log.info({ ...report, mismatches: mismatches.length }, "rebuild finished");
    return report;
  } catch (err) {
    // Whatever happened, follow the stream again from wherever the database now stands.
    await replica.reload().catch(() => undefined);
    throw err;
  } finally {
    peer?.close();
  }
}

/**
 * Compares with the peer at one replication position (retrying while the two
 * are at different positions), or checks the relay's counters against its
 * entries when there is no peer.
 */
export async function verify(pool: Pool, peer: PeerRelay | undefined, attempts = 20): Promise<{ mismatches: Mismatch[]; checked: Checksums }> {
  if (!peer) {
    const local = await queueChecksums(pool);
    return { mismatches: compareChecksums(local), checked: local };
  }
  let last: { mismatches: Mismatch[]; checked: Checksums } | undefined;
  for (let i = 0; i < attempts; i++) {
    const theirs = await peer.checksums();
    const mine = await queueChecksums(pool);
    last = { mismatches: compareChecksums(mine, theirs), checked: mine };
    if (mine.streamSeq === theirs.streamSeq) return last;
    last.mismatches.unshift({ kind: 0, id: "", problem: `positions differ: here ${mine.streamSeq}, source ${theirs.streamSeq} (writes continued during verification)` });
    await new Promise((r) => setTimeout(r, 250));
  }
  return last!;
}
