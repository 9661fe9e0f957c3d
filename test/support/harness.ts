/**
 * One harness for integration tests: fresh databases on the real Postgres,
 * the real NATS server, and relay instances started in this process on
 * ephemeral ports. Everything registered here is torn down by cleanup().
 *
 *   const h = new Harness();  after(() => h.cleanup());
 *   const db = await h.database("relay");
 *   const a = await h.relay({ databaseUrl: db });
 */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { NatsBus } from "../../services/common/bus/nats.js";
import type { Bus } from "../../services/common/bus/types.js";
import { systemClock, type Clock } from "../../services/common/clock.js";
import { generateKeyPair, publicKeyFromPem, type KeyPair } from "../../services/common/crypto.js";
import { createPool } from "../../services/common/db.js";
import { startGrpcServer, type GrpcServerHandle } from "../../services/common/grpc.js";
import { logger } from "../../services/common/log.js";
import type { RelayKey } from "../../services/relay/keys.js";
import { RelayService, type RelayOptions } from "../../services/relay/service.js";
import { RelayClient, type DeviceCredentials } from "../../client/relay.js";

export const PG_ADMIN_URL = process.env.PARLEY_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const NATS_URL = process.env.PARLEY_TEST_NATS_URL ?? "127.0.0.1:4222";

export function dbUrl(name: string): string {
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

/** gRPC metadata carrying `authorization: Bearer <token>` (none without a token), for raw clients. */
export function bearer(token: string | undefined): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token) m.set("authorization", `Bearer ${token}`);
  return m;
}

export function newRelayKey(): RelayKey {
  const pair = generateKeyPair();
  return { privateKeyPem: pair.privateKeyPem, publicKey: publicKeyFromPem(pair.privateKeyPem) };
}

export interface RelayInstance {
  address: string;
  service: RelayService;
  grpc: GrpcServerHandle;
  /** Graceful stop: streams end with UNAVAILABLE, then the server shuts down. */
  stop(): Promise<void>;
}

export const DEFAULT_RELAY_OPTIONS: RelayOptions = {
  relayId: "relay-test",
  adminToken: "test-admin-token",
  retentionMs: 30 * 86_400_000,
  sessionTtlMs: 15 * 60_000,
  challengeTtlMs: 60_000,
  limits: { maxMessageBytes: 64 * 1024, maxQueueMessages: 10_000, maxQueueBytes: 64 * 1024 * 1024, maxBatchMessages: 1000, maxRecipients: 100 },
};

export class Harness {
  private readonly cleanups: Array<() => Promise<unknown> | unknown> = [];
  readonly log = logger("test");

  defer(fn: () => Promise<unknown> | unknown): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        console.error("cleanup failed:", err);
      }
    }
    this.cleanups.length = 0;
  }

  /** A new, empty database; dropped at cleanup. Returns its URL. */
  async database(prefix: string): Promise<string> {
    const name = `t_${prefix}_${randomBytes(5).toString("hex")}`;
    const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    this.defer(async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    });
    return dbUrl(name);
  }

  async nats(): Promise<Bus> {
    const bus = await NatsBus.connect({ servers: NATS_URL, name: "parley-test" });
    this.defer(() => bus.close());
    return bus;
  }

  async relay(opts: { databaseUrl: string; bus: Bus; key: RelayKey; clock?: Clock; options?: Partial<RelayOptions> }): Promise<RelayInstance> {
    const pool = createPool(opts.databaseUrl);
    const service = await RelayService.create({ ...DEFAULT_RELAY_OPTIONS, ...opts.options }, { pool, bus: opts.bus, clock: opts.clock ?? systemClock, log: this.log, key: opts.key });
    const grpc = await startGrpcServer({ host: "127.0.0.1", port: 0, services: service.services });
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await service.stop();
      await grpc.shutdown(2000);
      await pool.end();
    };
    this.defer(stop);
    return { address: `127.0.0.1:${grpc.port}`, service, grpc, stop };
  }

  /** A client; closed at cleanup. */
  client(addresses: string[], device?: DeviceCredentials, relayPublicKey?: Uint8Array): RelayClient {
    const c = RelayClient.create({ addresses, device, relayPublicKey, deadlineMs: 5000 });
    this.defer(() => c.close());
    return c;
  }

  /** Registers an identity with one device and returns the device's credentials (and the keys). */
  async identityWithDevice(address: string[], identityId: string, deviceId: string): Promise<DeviceCredentials & { identityKeys: KeyPair; deviceKeys: KeyPair }> {
    const identityKeys = generateKeyPair();
    const deviceKeys = generateKeyPair();
    const c = this.client(address);
    await c.registerIdentity(identityId, identityKeys);
    await c.registerDevice(identityId, identityKeys.privateKeyPem, deviceId, deviceKeys.publicKey);
    return { identityId, deviceId, privateKeyPem: deviceKeys.privateKeyPem, identityKeys, deviceKeys };
  }

  /** Adds another device to an identity made by identityWithDevice. */
  async addDevice(address: string[], identityId: string, identityKeys: KeyPair, deviceId: string): Promise<DeviceCredentials> {
    const deviceKeys = generateKeyPair();
    await this.client(address).registerDevice(identityId, identityKeys.privateKeyPem, deviceId, deviceKeys.publicKey);
    return { identityId, deviceId, privateKeyPem: deviceKeys.privateKeyPem };
  }
}

export const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;
