/**
 * How the operator reaches a relay's admin gRPC API (promotion, fencing,
 * replication status, queue statistics). In the cluster: the RelayServer's
 * own pods through `<name>-replica.<namespace>.svc:50051` (paired relays) or
 * its client Service (standalone), with the token from `<name>-admin`.
 * Out of the cluster (tests running relays as local processes, an operator
 * run from a laptop), the annotation `parley.dev/admin-address: host:port`
 * names the address instead.
 *
 *   const access = new RelayAdminAccess(kube);
 *   const probe = await access.probe(cr);   // { reachable, replication?, stats?, error? }
 *   await access.withAdmin(cr, (admin) => admin.promote(30));
 */
import { RelayAdmin } from "../../client/admin.js";
import type { RelayStats, ReplicationStatus } from "../../generated/parley/v1/relay.js";
import type { RelayServer } from "../api/types.js";
import { resourcePath, type KubeClient } from "../kube/client.js";
import { RELAY_ADMIN_TOKEN_KEY, RELAY_GRPC_PORT, relayNames } from "../specs/relay.js";

export const ADMIN_ADDRESS_ANNOTATION = "parley.dev/admin-address";

export interface RelayProbe {
  reachable: boolean;
  /** Why it is not reachable (the admin call's error). */
  error?: string;
  replication?: ReplicationStatus;
  stats?: RelayStats;
}

export class RelayAdminAccess {
  /** `deadlineMs` bounds each probe call: an unreachable relay must not hold a reconcile up for long. */
  constructor(private readonly kube: KubeClient, private readonly deadlineMs = 3000) {}

  address(cr: RelayServer): string {
    const annotated = cr.metadata.annotations?.[ADMIN_ADDRESS_ANNOTATION]?.trim();
    if (annotated) return annotated;
    const names = relayNames(cr);
    const service = cr.spec.role === "primary" || cr.spec.role === "secondary" ? names.replicaService : names.service;
    return `${service}.${cr.metadata.namespace}.svc:${RELAY_GRPC_PORT}`;
  }

  async token(cr: RelayServer): Promise<string> {
    const name = relayNames(cr).adminSecret;
    const secret = await this.kube.get<{ data?: Record<string, string> }>(resourcePath("v1", "Secret", cr.metadata.namespace, name));
    const token = secret?.data?.[RELAY_ADMIN_TOKEN_KEY];
    if (!token) throw new Error(`Secret ${name} has no key '${RELAY_ADMIN_TOKEN_KEY}' (the relay's admin token)`);
    return Buffer.from(token, "base64").toString("utf8");
  }

  async withAdmin<T>(cr: RelayServer, fn: (admin: RelayAdmin) => Promise<T>, deadlineMs = this.deadlineMs): Promise<T> {
    const admin = RelayAdmin.create(this.address(cr), await this.token(cr), { deadlineMs });
    try {
      return await fn(admin);
    } finally {
      admin.close();
    }
  }

  /** Replication status and queue statistics; unreachable (with the reason) when either call fails. */
  async probe(cr: RelayServer): Promise<RelayProbe> {
    try {
      return await this.withAdmin(cr, async (admin) => {
        const [replication, stats] = await Promise.all([admin.replicationStatus(), admin.stats({ top: 1 })]);
        return { reachable: true, replication, stats };
      });
    } catch (err) {
      return { reachable: false, error: `${this.address(cr)}: ${(err as Error).message}` };
    }
  }
}
