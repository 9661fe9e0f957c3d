/** Two lookup replicas over live channel instances: least-loaded assignment, agreement, dropping and the resumed-instance rule. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ChatClient, LiveSession } from "../../client/chat.js";
import type { LookupService } from "../../services/lookup/service.js";
import { ChatPool, type ChannelInstance } from "../support/chat.js";
import { Harness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

describe("lookup replicas", () => {
  const h = new Harness();
  let pool: ChatPool;
  let l1: { address: string; service: LookupService };
  let l2: { address: string; service: LookupService };
  before(async () => {
    pool = await ChatPool.create(h);
    l1 = await pool.lookup(1000);
    l2 = await pool.lookup(1000);
  });
  after(() => h.cleanup());

  /** Sessions each replica believes an instance has (from the last report). */
  const sessionsSeen = (l: { service: LookupService }, id: string) => l.service.table.states().find((s) => s.report?.instanceId === id && s.live)?.report?.sessions;
  const reported = (id: string, n: number) => waitFor(`${id} reports ${n} sessions to both lookups`, () => sessionsSeen(l1, id) === n && sessionsSeen(l2, id) === n, 5000);

  /** Opens a live session through lookup and waits until the instance serving it is known. */
  async function connect(chat: ChatClient): Promise<{ live: LiveSession; instance: () => string | undefined }> {
    let instance: string | undefined;
    const live = chat.live({ onEvent: () => undefined, onConnected: (id) => (instance = id) });
    h.defer(() => live.close());
    await waitFor("session ready", () => instance);
    return { live, instance: () => instance };
  }

  it("assigns new sessions to the least-loaded live instance, both replicas alike, and evens out after a resume", async () => {
    const a: ChannelInstance = await pool.channel("lk-a");
    let b: ChannelInstance = await pool.channel("lk-b");
    await reported("lk-a", 0);
    await reported("lk-b", 0);
    const user = await pool.user("u", { lookup: [l1.address, l2.address] });
    const viaL2 = await pool.user("v", { lookup: [l2.address] });
    // Both replicas agree: same reports, same deterministic choice.
    assert.equal((await user.chat.assign()).instanceId, (await viaL2.chat.assign()).instanceId);
    assert.equal((await user.chat.assign()).instanceId, "lk-a"); // tie: lowest id

    const sessions: Array<{ live: LiveSession; instance: () => string | undefined }> = [];
    const counts = { "lk-a": 0, "lk-b": 0 } as Record<string, number>;
    for (let i = 0; i < 4; i++) {
      const u = await pool.user(`s${i}`, { lookup: [i % 2 ? l2.address : l1.address] });
      const s = await connect(u.chat);
      sessions.push(s);
      counts[s.instance()!]++;
      await reported(s.instance()!, counts[s.instance()!]!);
    }
    assert.deepEqual(counts, { "lk-a": 2, "lk-b": 2 });

    // B goes away: its sessions re-ask lookup and land on A; B is dropped.
    await b.stop();
    await reported("lk-a", 4);
    await waitFor("lk-b dropped", () => !l1.service.table.states().some((s) => s.report?.instanceId === "lk-b" && s.live) && !l2.service.table.states().some((s) => s.report?.instanceId === "lk-b" && s.live), 5000);
    assert.ok(sessions.every((s) => s.instance() === "lk-a"));

    // B resumes empty: it gets every new session until it matches A; A keeps its sessions.
    b = await pool.channel("lk-b");
    await reported("lk-b", 0);
    const picks: string[] = [];
    for (let i = 0; i < 4; i++) {
      const u = await pool.user(`n${i}`, { lookup: [l1.address, l2.address] });
      const s = await connect(u.chat);
      picks.push(s.instance()!);
      await reported("lk-b", i + 1);
    }
    assert.deepEqual(picks, ["lk-b", "lk-b", "lk-b", "lk-b"]);
    assert.equal(sessionsSeen(l1, "lk-a"), 4);
    const next = await pool.user("next", { lookup: [l1.address] });
    assert.equal((await next.chat.assign()).instanceId, "lk-a"); // balanced 4–4: tie goes to the lowest id
    await a.stop();
    await b.stop();
  });

  it("answers UNAVAILABLE when no instance is live, and assigns as soon as one reports", async () => {
    const lonely = await pool.lookup(300);
    const u = await pool.user("x", { lookup: [lonely.address] });
    await assert.rejects(u.chat.assign(), /no live channel instance has reported/);
    await pool.channel("lk-c");
    await waitFor("lk-c assigned", async () => (await u.chat.assign().catch(() => undefined))?.instanceId === "lk-c", 5000, 50);
  });
});
