/**
 * Replication for stores that know nothing about it (the workspace
 * directory): a Pool stand-in whose transactions record their writing
 * statements, with parameters, and hand them to the journal just before
 * COMMIT. A secondary replays them in order on the same state, so they must
 * be deterministic — every value they write comes from a parameter (clock
 * readings included), never from now() or random().
 *
 *   const store = new WorkspaceStore(journalingPool(pool, replica));
 */
import type { Pool, PoolClient } from "../../common/db.js";
import type { Journal, StatementRecord } from "./changes.js";

const WRITES = /^\s*(INSERT|UPDATE|DELETE|WITH)\b/i;

/** Parameters as JSON: byte arrays travel as { b64 }. */
export function encodeParams(params: unknown[] | undefined): unknown[] {
  return (params ?? []).map(function enc(v: unknown): unknown {
    if (v instanceof Uint8Array) return { b64: Buffer.from(v).toString("base64") };
    if (Array.isArray(v)) return v.map(enc);
    return v;
  });
}

export function decodeParams(params: unknown[]): unknown[] {
  return params.map(function dec(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(dec);
    if (v && typeof v === "object" && "b64" in v) return Buffer.from((v as { b64: string }).b64, "base64");
    return v;
  });
}

function journalingClient(client: PoolClient, journal: Journal): PoolClient {
  let statements: StatementRecord[] = [];
  const query = async (text: unknown, params?: unknown[]) => {
    const sql = typeof text === "string" ? text : (text as { text: string }).text;
    if (/^\s*BEGIN\b/i.test(sql)) statements = [];
    // The journal sees the transaction's statements last, and may still veto the commit.
    if (/^\s*COMMIT\b/i.test(sql) && statements.length) {
      const ops = [{ t: "stmts" as const, list: statements }];
      statements = [];
      await journal.record(client, ops);
    }
    if (/^\s*ROLLBACK\b/i.test(sql)) statements = [];
    const result = await client.query(sql, params);
    if (WRITES.test(sql) && (result.rowCount ?? 0) > 0) statements.push({ sql, params: encodeParams(params) });
    return result;
  };
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop === "query") return query;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

export function journalingPool(pool: Pool, journal: Journal): Pool {
  const wrapped = {
    connect: async () => journalingClient(await pool.connect(), journal),
    /** One statement outside a transaction: a write still gets its own journaled transaction. */
    query: async (text: string, params?: unknown[]) => {
      if (!WRITES.test(text)) return pool.query(text, params);
      const c = journalingClient(await pool.connect(), journal);
      try {
        await c.query("BEGIN");
        const r = await c.query(text, params);
        await c.query("COMMIT");
        return r;
      } catch (err) {
        await c.query("ROLLBACK").catch(() => undefined);
        throw err;
      } finally {
        c.release();
      }
    },
  };
  return wrapped as unknown as Pool;
}
