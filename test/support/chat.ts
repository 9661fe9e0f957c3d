/**
 * A chat pool for integration tests, on the real Postgres and NATS: a relay
 * (for sign-in), channel instances, lookup replicas and file instances in
 * this process on ephemeral ports, plus users with chat clients. Torn down
 * by the harness's cleanup().
 *
 *   const pool = await ChatPool.create(h);
 *   const a = await pool.channel("ch-a");  const lookup = await pool.lookup();
 *   const alice = await pool.user("alice", { lookup: [lookup.address] });
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Bus } from "../../services/common/bus/types.js";
import { systemClock, type Clock } from "../../services/common/clock.js";
import { createPool } from "../../services/common/db.js";
import { startGrpcServer } from "../../services/common/grpc.js";
import { startHttpServer } from "../../services/common/http.js";
import { ChannelService, type ChannelOptions } from "../../services/channel/service.js";
import { FilesService, type FilesOptions } from "../../services/files/service.js";
import { LookupService } from "../../services/lookup/service.js";
import type { RelayKey } from "../../services/relay/keys.js";
import { ChatClient, Role, type ServerEvent } from "../../client/chat.js";
import type { RelayClient } from "../../client/relay.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "./harness.js";

export const FILE_SECRET = "test-file-token-secret-0123456789";

export interface ChannelInstance {
  id: string;
  address: string;
  service: ChannelService;
  stop(): Promise<void>;
}

export class ChatPool {
  readonly key: RelayKey = newRelayKey();
  relay!: RelayInstance;
  chatDb!: string;
  readonly storageDir = mkdtempSync(join(tmpdir(), "parley-files-"));

  private constructor(readonly h: Harness) {
    h.defer(() => rmSync(this.storageDir, { recursive: true, force: true }));
  }

  static async create(h: Harness): Promise<ChatPool> {
    const p = new ChatPool(h);
    p.relay = await h.relay({ databaseUrl: await h.database("relay"), bus: await h.nats(), key: p.key });
    p.chatDb = await h.database("chat");
    return p;
  }

  channelOptions(id: string, over: Partial<ChannelOptions> = {}): ChannelOptions {
    return {
      instanceId: id,
      relayPublicKey: this.key.publicKey,
      fileTokenSecret: FILE_SECRET,
      fileTokenTtlMs: 60_000,
      maxFileBytes: 1024 * 1024,
      fileServiceUrls: [],
      loadReportIntervalMs: 200,
      presence: { heartbeatMs: 200, ttlMs: 700, throttleThreshold: 50, throttleMs: 300 },
      gapWaitMs: 50,
      ...over,
    };
  }

  async channel(id: string, over: Partial<ChannelOptions> = {}, bus?: Bus, clock: Clock = systemClock): Promise<ChannelInstance> {
    const pool = createPool(this.chatDb);
    const service = await ChannelService.create(this.channelOptions(id, over), { pool, bus: bus ?? (await this.h.nats()), clock, log: this.h.log });
    const grpc = await startGrpcServer({ host: "127.0.0.1", port: 0, services: service.services });
    const address = `127.0.0.1:${grpc.port}`;
    service.start(address);
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await service.stop();
      await grpc.shutdown(1000);
      await pool.end();
    };
    this.h.defer(stop);
    return { id, address, service, stop };
  }

  async lookup(dropAfterMs = 1000, clock: Clock = systemClock): Promise<{ address: string; service: LookupService; stop(): Promise<void> }> {
    const service = LookupService.create({ dropAfterMs, relayPublicKey: this.key.publicKey }, { bus: await this.h.nats(), clock, log: this.h.log });
    const grpc = await startGrpcServer({ host: "127.0.0.1", port: 0, services: service.services });
    const stop = async () => {
      service.stop();
      await grpc.shutdown(1000);
    };
    this.h.defer(stop);
    return { address: `127.0.0.1:${grpc.port}`, service, stop };
  }

  async files(id: string, clock: Clock = systemClock, retentionMs = 0, over: Partial<FilesOptions> = {}): Promise<{ url: string; service: FilesService }> {
    const service = await FilesService.create(
      { instanceId: id, storageDir: this.storageDir, fileTokenSecret: FILE_SECRET, maxFileBytes: 1024 * 1024, retentionMs, retentionIntervalMs: 3_600_000, ...over },
      { bus: await this.h.nats(), clock, log: this.h.log },
    );
    await service.start();
    const http = await startHttpServer({ host: "127.0.0.1", port: 0, routes: [service.route], readiness: [], log: this.h.log });
    this.h.defer(async () => {
      await http.close();
      await service.stop();
    });
    return { url: `http://127.0.0.1:${http.port}`, service };
  }

  /**
   * Makes count made-up users members of a room with one INSERT (a large
   * room without 10,000 sign-ins and joins); returns their ids.
   */
  async addMembers(roomId: string, count: number): Promise<string[]> {
    const db = createPool(this.chatDb, 1);
    try {
      const { rows } = await db.query<{ user_id: string }>(
        `WITH added AS (
           INSERT INTO members (room_id, user_id, role, joined_at_ms, last_read_seq)
           SELECT $1, $1 || '-member-' || i, ${Role.ROLE_MEMBER}, $3, r.last_seq FROM generate_series(1, $2::int) i, rooms r WHERE r.id = $1
           RETURNING user_id),
         counted AS (UPDATE rooms SET member_count = member_count + (SELECT count(*) FROM added) WHERE id = $1)
         SELECT user_id FROM added`,
        [roomId, count, Date.now()],
      );
      return rows.map((r) => r.user_id);
    } finally {
      await db.end();
    }
  }

  /** A registered identity with a device and a chat client (via lookup, or pinned to one channel). */
  async user(name: string, route: { lookup?: string[]; channel?: string }): Promise<{ id: string; chat: ChatClient; relay: RelayClient }> {
    const id = unique(name);
    const creds = await this.h.identityWithDevice([this.relay.address], id, `${id}-dev`);
    const relay = this.h.client([this.relay.address], creds, this.key.publicKey);
    const chat = ChatClient.create({ relay, lookup: route.lookup ?? [], channel: route.channel, deadlineMs: 5000 });
    this.h.defer(() => chat.close());
    return { id, chat, relay };
  }
}

export const roomName = (prefix: string) => unique(prefix).toLowerCase();

/** A live session recording what it receives. */
export function follow(chat: ChatClient) {
  const events: ServerEvent[] = [];
  const live = chat.live({ onEvent: (e) => void events.push(e) });
  const messages = (room: string) => events.flatMap((e) => (e.event?.$case === "message" && e.event.value.roomId === room ? [e.event.value] : []));
  /** The presence events of a room, in arrival order. */
  const presence = (room: string) => events.flatMap((e) => (e.event?.$case === "presence" && e.event.value.roomId === room ? [e.event.value] : []));
  const online = (room: string) => {
    const set = new Set<string>();
    for (const p of presence(room)) {
      if (p.full) set.clear();
      for (const u of p.online) set.add(u);
      for (const u of p.offline) set.delete(u);
    }
    return set;
  };
  const caughtUp = (room: string) => events.some((e) => e.event?.$case === "caughtUp" && e.event.value.roomId === room);
  return { live, events, messages, presence, online, caughtUp };
}
