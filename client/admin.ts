/**
 * The relay's admin API for operators and the CLI.
 *
 *   const admin = RelayAdmin.create("127.0.0.1:50051", token);
 *   const stats = await admin.stats({ top: 10 });
 */
import * as grpc from "@grpc/grpc-js";
import * as pb from "../generated/parley/v1/relay.js";
import { fromServiceError } from "./errors.js";

export type QueueSelector = { deviceId: string } | { identityId: string };

export class RelayAdmin {
  private readonly client: pb.RelayAdminClient;

  private constructor(address: string, private readonly token: string, private readonly deadlineMs: number) {
    this.client = new pb.RelayAdminClient(address, grpc.credentials.createInsecure());
  }

  /** `deadlineMs` bounds the short calls (status, stats, demote); promote and rebuild have their own. */
  static create(address: string, token: string, opts: { deadlineMs?: number } = {}): RelayAdmin {
    return new RelayAdmin(address, token, opts.deadlineMs ?? 15_000);
  }

  close(): void {
    this.client.close();
  }

  stats(opts: { top?: number; order?: "depth" | "oldest" } = {}): Promise<pb.RelayStats> {
    const order = opts.order === "oldest" ? pb.StatsOrder.STATS_ORDER_OLDEST : pb.StatsOrder.STATS_ORDER_DEPTH;
    return this.call<pb.RelayStats>((md, o, cb) => this.client.getStats({ top: opts.top ?? 20, order }, md, o, cb));
  }

  purgeQueue(queue: QueueSelector): Promise<pb.PurgeResult> {
    const target = "deviceId" in queue ? { $case: "deviceId" as const, value: queue.deviceId } : { $case: "identityId" as const, value: queue.identityId };
    return this.call<pb.PurgeResult>((md, o, cb) => this.client.purgeQueue({ queue: { target } }, md, o, cb));
  }

  purgeOlderThan(ageSeconds: number): Promise<pb.PurgeResult> {
    return this.call<pb.PurgeResult>((md, o, cb) => this.client.purgeOlderThan({ ageSeconds }, md, o, cb));
  }

  suspend(deviceId: string): Promise<pb.DeviceState> {
    return this.call<pb.DeviceState>((md, o, cb) => this.client.suspendDevice({ deviceId }, md, o, cb));
  }

  resume(deviceId: string): Promise<pb.DeviceState> {
    return this.call<pb.DeviceState>((md, o, cb) => this.client.resumeDevice({ deviceId }, md, o, cb));
  }

  replicationStatus(): Promise<pb.ReplicationStatus> {
    return this.call<pb.ReplicationStatus>((md, o, cb) => this.client.getReplicationStatus({}, md, o, cb));
  }

  /** Makes this (secondary) replica the primary; resolves once it serves. */
  promote(timeoutSeconds = 30): Promise<pb.ReplicationStatus> {
    return this.call<pb.ReplicationStatus>((md, o, cb) => this.client.promote({ timeoutSeconds }, md, o, cb), timeoutSeconds * 1000 + 15_000);
  }

  demote(): Promise<pb.ReplicationStatus> {
    return this.call<pb.ReplicationStatus>((md, o, cb) => this.client.demote({}, md, o, cb));
  }

  /** Rebuilds this relay's queues from the change stream (and the peer, where the stream was trimmed), then verifies them. */
  rebuild(opts: { peerAddress?: string; peerAdminToken?: string; fromScratch?: boolean } = {}, timeoutMs = 600_000): Promise<pb.RebuildReport> {
    const req = { peerAddress: opts.peerAddress ?? "", peerAdminToken: opts.peerAdminToken ?? "", fromScratch: opts.fromScratch ?? false };
    return this.call<pb.RebuildReport>((md, o, cb) => this.client.rebuild(req, md, o, cb), timeoutMs);
  }

  verifyQueues(opts: { peerAddress?: string; peerAdminToken?: string } = {}): Promise<pb.RebuildReport> {
    return this.call<pb.RebuildReport>((md, o, cb) => this.client.verifyQueues({ peerAddress: opts.peerAddress ?? "", peerAdminToken: opts.peerAdminToken ?? "" }, md, o, cb), 120_000);
  }

  queueChecksums(): Promise<pb.QueueChecksums> {
    return this.call<pb.QueueChecksums>((md, o, cb) => this.client.getQueueChecksums({}, md, o, cb), 60_000);
  }

  private call<T>(fn: AdminCall<T>, timeoutMs = this.deadlineMs): Promise<T> {
    return callWithToken(this.token, fn, timeoutMs);
  }
}

export type AdminCall<T> = (md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: T) => void) => void;

/** One unary call with the admin token and a deadline; gRPC errors become ParleyClientErrors. */
export function callWithToken<T>(token: string, fn: AdminCall<T>, timeoutMs = 15_000): Promise<T> {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  return new Promise<T>((resolve, reject) => fn(md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res))));
}
