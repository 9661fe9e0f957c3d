/**
 * Postgres access: a pool, versioned migrations applied at start, and a
 * transaction helper that retries on deadlock and serialization failures.
 *
 *   const pool = createPool(url);
 *   await migrate(pool, "relay", relayMigrations);
 *   const n = await tx(pool, async (c) => (await c.query("...")).rowCount);
 */
import pg from "pg";

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Queryable = Pick<pg.Pool, "query">;

// bigint columns come back as numbers: every bigint Parley stores (sequences,
// counts, byte totals, epoch milliseconds) stays far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export function createPool(connectionString: string, max = 10): Pool {
  const pool = new pg.Pool({ connectionString, max, idleTimeoutMillis: 30_000 });
  // An idle client losing its server (Postgres restart) must not crash the process.
  pool.on("error", () => undefined);
  return pool;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Applies the migrations not yet recorded for this service, each in its own
 * transaction, under an advisory lock so that instances starting together
 * apply each migration once.
 */
export async function migrate(pool: Pool, service: string, migrations: Migration[]): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query("SELECT pg_advisory_lock(hashtext($1))", [`parley-migrate-${service}`]);
    await client.query(`CREATE TABLE IF NOT EXISTS parley_schema_migrations (
      service text NOT NULL, version int NOT NULL, name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))`);
    const { rows } = await client.query<{ version: number }>("SELECT version FROM parley_schema_migrations WHERE service = $1", [service]);
    const done = new Set(rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await client.query("BEGIN");
      try {
        await client.query(m.sql);
        await client.query("INSERT INTO parley_schema_migrations (service, version, name) VALUES ($1, $2, $3)", [service, m.version, m.name]);
        await client.query("COMMIT");
        applied.push(m.version);
      } catch (err) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${service}/${m.version} (${m.name}) failed: ${(err as Error).message}`);
      }
    }
    return applied;
  } finally {
    await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`parley-migrate-${service}`]).catch(() => undefined);
    client.release();
  }
}

const RETRYABLE = new Set(["40001", "40P01"]);

/** Runs fn in a transaction; retries the whole of it on deadlock/serialization failure. */
export async function tx<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      const code = (err as { code?: string }).code;
      if (code && RETRYABLE.has(code) && attempt < attempts) continue;
      throw err;
    } finally {
      client.release();
    }
  }
}

/** Creates a database if it does not exist (the server's admin connection). */
export async function ensureDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid database name '${name}'`);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (!rowCount) {
      await client.query(`CREATE DATABASE ${name}`).catch((err: { code?: string }) => {
        if (err.code !== "42P04") throw err; // created meanwhile by a sibling
      });
    }
  } finally {
    await client.end();
  }
}

/** Readiness of a service on its database: undefined when a trivial query answers. */
export function databaseReadiness(pool: Pool, what: string): () => Promise<string | undefined> {
  return async () => {
    try {
      await pool.query("SELECT 1");
      return undefined;
    } catch (err) {
      return `${what} unreachable: ${(err as Error).message}`;
    }
  };
}
