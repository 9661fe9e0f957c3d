/**
 * Property: random workspaces, random online/offline schedules and random
 * changes (with the relay purging as days pass); once everyone is online
 * long enough, all endpoints hold the same content and every outgoing queue
 * is empty. A small seeded generator; the seed is printed, and
 * PARLEY_PROPERTY_SEED=<n> replays a run.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { DAY, MINUTE, ManualClock } from "../../services/common/clock.js";
import { Harness, newRelayKey, unique } from "../support/harness.js";
import { NOON, SyncNet, type Peer } from "../support/sync.js";

/** mulberry32: tiny, seedable, good enough to pick schedules. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), chance: (p: number) => next() < p };
}

describe("workspace sync: convergence property", () => {
  const h = new Harness();
  after(() => h.cleanup());

  const runs = Number(process.env.PARLEY_PROPERTY_RUNS ?? 2);
  for (let run = 0; run < runs; run++) {
    const seed = Number(process.env.PARLEY_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31)) + run;
    it(`converges with empty queues (seed ${seed})`, async () => {
      console.log(`workspace property seed ${seed}`);
      const r = rng(seed);
      const clock = new ManualClock(NOON(2027, 1, 1));
      const relay = await h.relay({ databaseUrl: await h.database("wsprop"), bus: await h.nats(), key: newRelayKey(), clock, options: { relayId: unique("relay"), retentionMs: 5 * DAY } });
      const net = new SyncNet(h, clock, [relay]);
      const members = 2 + r.int(3);
      const peers: Peer[] = [];
      for (let m = 0; m < members; m++) {
        const endpoints = 1 + (r.chance(0.3) ? 1 : 0);
        for (let e = 0; e < endpoints; e++) peers.push(await net.endpoint(`m${m}-${seed}`, `m${m}e${e}-${seed}`, [relay]));
      }
      const ws = unique("prop");
      const creator = peers[0]!;
      creator.engine.createWorkspace(ws, "Property");
      const invitations = new Map<string, ReturnType<typeof creator.engine.invite>>();
      for (const p of peers.slice(1)) {
        if (p.memberId === creator.memberId) continue;
        if (!invitations.has(p.memberId)) invitations.set(p.memberId, creator.engine.invite(ws, p.memberId, r.chance(0.5) ? "manager" : "participant"));
      }
      for (const p of peers.slice(1)) {
        p.engine.join(p.memberId === creator.memberId ? { ...creator.engine.invite(ws, creator.memberId, "manager") } : invitations.get(p.memberId)!);
        await net.settle();
      }
      const days = 8 + r.int(6);
      for (let d = 0; d < days; d++) {
        clock.advance(DAY);
        for (const p of peers) p.online = r.chance(0.55);
        for (const p of peers) {
          if (!p.online) continue;
          for (let c = r.int(3); c > 0; c--) await p.engine.change(ws, `k${r.int(6)}`, `${p.name}@${d}.${c}`);
        }
        await net.settle();
        await relay.service.retention.runOnce();
      }
      // Everyone online long enough: overdue requests to peers that were offline are retried.
      for (const p of peers) p.online = true;
      for (let i = 0; i < 4; i++) {
        await net.settle();
        clock.advance(MINUTE);
      }
      const content = creator.engine.content(ws);
      for (const p of peers) {
        assert.deepEqual(p.engine.content(ws), content, `${p.name} converged`);
        assert.deepEqual(p.engine.status(ws).missing, [], `${p.name} misses nothing`);
        assert.deepEqual(p.engine.status(ws).outgoing, [], `${p.name}'s outgoing queue is empty`);
      }
    });
  }
});
