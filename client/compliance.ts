/**
 * The compliance service's admin API for operators, the CLI and the
 * Kubernetes operator (its finalizer flushes a last export).
 *
 *   const admin = ComplianceAdmin.create("127.0.0.1:50054", token);
 *   const { batchId } = await admin.exportNow();
 */
import * as grpc from "@grpc/grpc-js";
import * as pb from "../generated/parley/v1/compliance.js";
import { callWithToken } from "./admin.js";

export class ComplianceAdmin {
  private readonly client: pb.ComplianceAdminClient;

  private constructor(address: string, private readonly token: string) {
    this.client = new pb.ComplianceAdminClient(address, grpc.credentials.createInsecure());
  }

  static create(address: string, token: string): ComplianceAdmin {
    return new ComplianceAdmin(address, token);
  }

  close(): void {
    this.client.close();
  }

  status(): Promise<pb.ComplianceStatus> {
    return callWithToken(this.token, (md, o, cb) => this.client.status({}, md, o, cb));
  }

  /** Exports everything staged now; resolves with the batch written (empty batchId: nothing was staged). */
  exportNow(timeoutMs = 600_000): Promise<pb.ExportResult> {
    return callWithToken(this.token, (md, o, cb) => this.client.export({}, md, o, cb), timeoutMs);
  }

  acknowledgePickup(batchId: string): Promise<pb.AcknowledgePickupResponse> {
    return callWithToken(this.token, (md, o, cb) => this.client.acknowledgePickup({ batchId }, md, o, cb));
  }
}
