/**
 * The relay's workspace directory (migration 20): members with their role,
 * endpoints (devices) with their suspension, and the outgoing-queue figures
 * endpoints report. The changes themselves are ordinary queue entries; this
 * store only lets the relay refuse to queue for a suspended endpoint and
 * report per-workspace figures.
 */
import { tx, type Pool, type PoolClient } from "../common/db.js";
import { AlreadyExistsError, FailedPreconditionError, NotFoundError, PermissionDeniedError } from "../common/errors.js";

export type WorkspaceRoleName = "manager" | "participant";
export type SuspensionReasonName = "auto" | "manager";

export interface EndpointRecord {
  deviceId: string;
  suspended: boolean;
  reason: SuspensionReasonName | undefined;
}

export interface MemberRecord {
  identityId: string;
  role: WorkspaceRoleName;
  endpoints: EndpointRecord[];
}

export interface WorkspaceRecord {
  id: string;
  members: MemberRecord[];
}

export interface BacklogFigure {
  identityId: string;
  outstandingChanges: number;
  outstandingBytes: number;
  oldestAgeSeconds: number;
}

export interface WorkspaceFigureRow extends BacklogFigure {
  workspaceId: string;
  reporterDevice: string;
}

export class WorkspaceStore {
  constructor(private readonly pool: Pool) {}

  async register(workspaceId: string, identityId: string, nowMs: number): Promise<WorkspaceRecord> {
    return tx(this.pool, async (c) => {
      const ins = await c.query("INSERT INTO ws_workspaces (id, created_by, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING", [workspaceId, identityId, nowMs]);
      if (ins.rowCount) {
        await c.query("INSERT INTO ws_members (workspace_id, identity_id, role) VALUES ($1, $2, 'manager')", [workspaceId, identityId]);
      } else if ((await this.roleOf(c, workspaceId, identityId)) !== "manager") {
        throw new AlreadyExistsError(`workspace '${workspaceId}' already exists and '${identityId}' is not one of its managers`);
      }
      return this.read(c, workspaceId);
    });
  }

  async setMember(workspaceId: string, caller: string, identityId: string, role: WorkspaceRoleName): Promise<WorkspaceRecord> {
    return tx(this.pool, async (c) => {
      await this.requireManager(c, workspaceId, caller);
      const { rowCount } = await c.query("SELECT 1 FROM identities WHERE id = $1", [identityId]);
      if (!rowCount) throw new NotFoundError(`unknown identity '${identityId}'`);
      await c.query(
        `INSERT INTO ws_members (workspace_id, identity_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, identity_id) DO UPDATE SET role = EXCLUDED.role`,
        [workspaceId, identityId, role],
      );
      return this.read(c, workspaceId);
    });
  }

  async addEndpoint(workspaceId: string, identityId: string, deviceId: string): Promise<WorkspaceRecord> {
    return tx(this.pool, async (c) => {
      if (!(await this.roleOf(c, workspaceId, identityId))) throw new PermissionDeniedError(`'${identityId}' is not a member of workspace '${workspaceId}'`);
      await c.query(
        "INSERT INTO ws_endpoints (workspace_id, device_id, identity_id) VALUES ($1, $2, $3) ON CONFLICT (workspace_id, device_id) DO NOTHING",
        [workspaceId, deviceId, identityId],
      );
      return this.read(c, workspaceId);
    });
  }

  /**
   * Managers suspend anything. Anyone else may only record an automatic
   * suspension, and never of a member's last active endpoint: the seed
   * leaves that one to a manager.
   */
  async suspend(workspaceId: string, caller: string, deviceId: string, reason: SuspensionReasonName): Promise<{ record: WorkspaceRecord; changed: boolean }> {
    return tx(this.pool, async (c) => {
      const role = await this.roleOf(c, workspaceId, caller);
      if (!role) throw new PermissionDeniedError(`'${caller}' is not a member of workspace '${workspaceId}'`);
      const endpoint = await this.endpoint(c, workspaceId, deviceId);
      if (role !== "manager") {
        if (reason !== "auto") throw new PermissionDeniedError(`only a manager of workspace '${workspaceId}' suspends endpoints by choice`);
        const { rows } = await c.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM ws_endpoints WHERE workspace_id = $1 AND identity_id = $2 AND NOT suspended AND device_id <> $3",
          [workspaceId, endpoint.identity_id, deviceId],
        );
        if (!endpoint.suspended && rows[0]!.n === 0) {
          throw new FailedPreconditionError(`endpoint '${deviceId}' is the last active endpoint of '${endpoint.identity_id}': only a manager suspends it`);
        }
      }
      const { rowCount } = await c.query(
        "UPDATE ws_endpoints SET suspended = true, reason = $3 WHERE workspace_id = $1 AND device_id = $2 AND NOT suspended",
        [workspaceId, deviceId, reason],
      );
      return { record: await this.read(c, workspaceId), changed: rowCount === 1 };
    });
  }

  async resume(workspaceId: string, caller: string, deviceId: string): Promise<WorkspaceRecord> {
    return tx(this.pool, async (c) => {
      await this.requireManager(c, workspaceId, caller);
      await this.endpoint(c, workspaceId, deviceId);
      await c.query("UPDATE ws_endpoints SET suspended = false, reason = NULL WHERE workspace_id = $1 AND device_id = $2", [workspaceId, deviceId]);
      return this.read(c, workspaceId);
    });
  }

  async get(workspaceId: string, caller: string): Promise<WorkspaceRecord> {
    if (!(await this.roleOf(this.pool, workspaceId, caller))) throw new PermissionDeniedError(`'${caller}' is not a member of workspace '${workspaceId}'`);
    return this.read(this.pool, workspaceId);
  }

  /** The first of deviceIds that is a suspended endpoint of the workspace, if any. */
  async firstSuspended(workspaceId: string, deviceIds: string[]): Promise<string | undefined> {
    const { rows } = await this.pool.query<{ device_id: string }>(
      "SELECT device_id FROM ws_endpoints WHERE workspace_id = $1 AND device_id = ANY($2) AND suspended ORDER BY device_id LIMIT 1",
      [workspaceId, deviceIds],
    );
    return rows[0]?.device_id;
  }

  /** Replaces the reporter's figures for the workspace (a report is a full picture). */
  async report(workspaceId: string, identityId: string, deviceId: string, backlog: BacklogFigure[], workspaceBytes: number, nowMs: number): Promise<void> {
    await tx(this.pool, async (c) => {
      if (!(await this.roleOf(c, workspaceId, identityId))) throw new PermissionDeniedError(`'${identityId}' is not a member of workspace '${workspaceId}'`);
      await c.query("DELETE FROM ws_figures WHERE workspace_id = $1 AND reporter_device = $2", [workspaceId, deviceId]);
      if (backlog.length) {
        await c.query(
          `INSERT INTO ws_figures (workspace_id, reporter_device, identity_id, outstanding_changes, outstanding_bytes, oldest_age_seconds, reported_at_ms)
           SELECT $1, $2, i, n, b, a, $7 FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::float8[]) AS t(i, n, b, a)`,
          [workspaceId, deviceId, backlog.map((b) => b.identityId), backlog.map((b) => b.outstandingChanges), backlog.map((b) => b.outstandingBytes), backlog.map((b) => b.oldestAgeSeconds), nowMs],
        );
      }
      await c.query("UPDATE ws_workspaces SET size_bytes = $2 WHERE id = $1", [workspaceId, workspaceBytes]);
    });
  }

  /** Per workspace and member: the most outstanding changes and the oldest age any endpoint reported. */
  async figures(): Promise<Array<{ workspaceId: string; identityId: string; outstandingChanges: number; oldestAgeSeconds: number }>> {
    const { rows } = await this.pool.query<{ workspace_id: string; identity_id: string; n: number; a: number }>(
      `SELECT workspace_id, identity_id, sum(outstanding_changes)::bigint AS n, max(oldest_age_seconds) AS a
         FROM ws_figures GROUP BY workspace_id, identity_id ORDER BY workspace_id, identity_id`,
    );
    return rows.map((r) => ({ workspaceId: r.workspace_id, identityId: r.identity_id, outstandingChanges: r.n, oldestAgeSeconds: r.a }));
  }

  async suspendedCounts(): Promise<Array<{ workspaceId: string; suspended: number }>> {
    const { rows } = await this.pool.query<{ workspace_id: string; n: number }>(
      "SELECT workspace_id, count(*) FILTER (WHERE suspended)::int AS n FROM ws_endpoints GROUP BY workspace_id",
    );
    return rows.map((r) => ({ workspaceId: r.workspace_id, suspended: r.n }));
  }

  private async requireManager(c: PoolClient, workspaceId: string, identityId: string): Promise<void> {
    const role = await this.roleOf(c, workspaceId, identityId);
    if (role !== "manager") throw new PermissionDeniedError(`'${identityId}' is not a manager of workspace '${workspaceId}'`);
  }

  private async roleOf(c: Pick<Pool, "query">, workspaceId: string, identityId: string): Promise<WorkspaceRoleName | undefined> {
    const ws = await c.query("SELECT 1 FROM ws_workspaces WHERE id = $1", [workspaceId]);
    if (!ws.rowCount) throw new NotFoundError(`unknown workspace '${workspaceId}'`);
    const { rows } = await c.query<{ role: WorkspaceRoleName }>("SELECT role FROM ws_members WHERE workspace_id = $1 AND identity_id = $2", [workspaceId, identityId]);
    return rows[0]?.role;
  }

  private async endpoint(c: PoolClient, workspaceId: string, deviceId: string): Promise<{ identity_id: string; suspended: boolean }> {
    const { rows } = await c.query<{ identity_id: string; suspended: boolean }>(
      "SELECT identity_id, suspended FROM ws_endpoints WHERE workspace_id = $1 AND device_id = $2 FOR UPDATE",
      [workspaceId, deviceId],
    );
    if (!rows[0]) throw new NotFoundError(`device '${deviceId}' is not an endpoint of workspace '${workspaceId}'`);
    return rows[0];
  }

  private async read(c: Pick<Pool, "query">, workspaceId: string): Promise<WorkspaceRecord> {
    const members = await c.query<{ identity_id: string; role: WorkspaceRoleName }>(
      "SELECT identity_id, role FROM ws_members WHERE workspace_id = $1 ORDER BY identity_id",
      [workspaceId],
    );
    const endpoints = await c.query<{ device_id: string; identity_id: string; suspended: boolean; reason: SuspensionReasonName | null }>(
      "SELECT device_id, identity_id, suspended, reason FROM ws_endpoints WHERE workspace_id = $1 ORDER BY device_id",
      [workspaceId],
    );
    return {
      id: workspaceId,
      members: members.rows.map((m) => ({
        identityId: m.identity_id,
        role: m.role,
        endpoints: endpoints.rows
          .filter((e) => e.identity_id === m.identity_id)
          .map((e) => ({ deviceId: e.device_id, suspended: e.suspended, reason: e.reason ?? undefined })),
      })),
    };
  }
}
