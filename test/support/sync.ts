/**
 * Workspace-sync test rig: endpoints (each with its own SQLite store in a
 * temporary directory and its own relay clients) on real relays, all on one
 * ManualClock, and a pump that runs the online endpoints until the network
 * is quiet — so a scenario is played day by day without sleeping.
 *
 *   const net = new SyncNet(h, clock);
 *   const fred = await net.endpoint("fred", "fred-pc", [relay]);
 *   net.offline(fred);  await net.settle();
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ManualClock } from "../../services/common/clock.js";
import { generateKeyPair, type KeyPair } from "../../services/common/crypto.js";
import { WorkspaceEngine, type EngineOptions } from "../../client/sync/engine.js";
import { SyncStore } from "../../client/sync/store.js";
import { RelayTransport, type SyncTransport } from "../../client/sync/transport.js";
import type { Harness, RelayInstance } from "./harness.js";

export interface Peer {
  name: string;
  memberId: string;
  engine: WorkspaceEngine;
  store: SyncStore;
  transport: RelayTransport;
  /** Relay addresses this endpoint can reach now (all of its relays unless cut off). */
  reach: Set<string>;
  online: boolean;
}

export class SyncNet {
  private readonly identities = new Map<string, KeyPair>();
  private readonly registered = new Set<string>();
  readonly peers: Peer[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), "parley-sync-"));

  constructor(
    private readonly h: Harness,
    readonly clock: ManualClock,
    readonly allRelays: RelayInstance[],
  ) {
    h.defer(() => {
      for (const p of this.peers) {
        p.transport.close();
        p.store.close();
      }
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  /** A new endpoint (device) of memberId whose device queue lives on `home` relays; registered on every relay. */
  async endpoint(memberId: string, deviceId: string, home: RelayInstance[], opts: { directory?: RelayInstance; wrap?: (t: SyncTransport) => SyncTransport; engine?: Partial<EngineOptions> } = {}): Promise<Peer> {
    let keys = this.identities.get(memberId);
    if (!keys) this.identities.set(memberId, (keys = generateKeyPair()));
    const device = generateKeyPair();
    for (const r of this.allRelays) {
      const c = this.h.client([r.address]);
      if (!this.registered.has(`${r.address}/${memberId}`)) await c.registerIdentity(memberId, keys);
      this.registered.add(`${r.address}/${memberId}`);
      await c.registerDevice(memberId, keys.privateKeyPem, deviceId, device.publicKey);
    }
    const reach = new Set(this.allRelays.map((r) => r.address));
    const peer = {} as Peer;
    const transport = RelayTransport.create({
      device: { identityId: memberId, deviceId, privateKeyPem: device.privateKeyPem },
      relays: home.map((r) => r.address),
      clock: this.clock,
      reachable: (a) => peer.online && peer.reach.has(a),
      directoryRelay: (opts.directory ?? home[0]!).address,
    });
    const store = SyncStore.open(join(this.dir, `${deviceId}.sqlite`));
    const engine = WorkspaceEngine.create({ store, transport: opts.wrap ? opts.wrap(transport) : transport, clock: this.clock, ...opts.engine });
    Object.assign(peer, { name: deviceId, memberId, engine, store, transport, reach, online: true });
    this.peers.push(peer);
    return peer;
  }

  /** Pumps every online endpoint, round after round, until a whole round moves nothing. */
  async settle(peers: Peer[] = this.peers, maxRounds = 40): Promise<number> {
    for (let round = 1; round <= maxRounds; round++) {
      let moved = 0;
      for (const p of peers) if (p.online) moved += await p.engine.pump();
      if (moved === 0) return round;
    }
    throw new Error(`the network did not settle in ${maxRounds} rounds`);
  }
}

/**
 * Scenario dates are played in 2027: RelayClient renews its session by the
 * wall clock, so simulated dates ahead of it keep sessions from being renewed
 * on every call (the transport renews them by the simulated clock).
 */
export const NOON = (y: number, m: number, d: number) => Date.UTC(y, m - 1, d, 12);
export const MB = 1024 * 1024;
