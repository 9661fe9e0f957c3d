/**
 * The seed's two scenarios (Fred, Jane and Mary), played day by day on a
 * simulated clock with real relays (Postgres + NATS): alerts, the relay's
 * purge, catch-up from peers' queues, and the queues freed afterwards.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { DAY, HOUR, ManualClock } from "../../services/common/clock.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { MB, NOON, SyncNet, type Peer } from "../support/sync.js";

const day = (t: number) => new Date(t).toISOString().slice(0, 10);

async function relays(h: Harness, clock: ManualClock, n: number): Promise<RelayInstance[]> {
  const bus = await h.nats();
  const out: RelayInstance[] = [];
  for (let i = 0; i < n; i++) out.push(await h.relay({ databaseUrl: await h.database("wsync"), bus, key: newRelayKey(), clock, options: { relayId: unique("relay") } }));
  return out;
}

/** Fred creates the workspace (with 150 MB of files, so over the 100 MB limit) and invites Jane and Mary. */
async function teamTask(net: SyncNet, fred: Peer, jane: Peer, mary: Peer, roles: { jane: "manager" | "participant"; mary: "manager" | "participant" }) {
  const ws = unique("team-task");
  fred.engine.createWorkspace(ws, "Team Task");
  await fred.engine.change(ws, "files/plans.zip", "plans", { fileBytes: 150 * MB });
  jane.engine.join(fred.engine.invite(ws, "jane", roles.jane));
  await net.settle();
  mary.engine.join(fred.engine.invite(ws, "mary", roles.mary));
  await net.settle();
  for (const p of [fred, jane, mary]) assert.deepEqual(p.engine.content(ws), fred.engine.content(ws));
  return ws;
}

const outgoingFor = (p: Peer, ws: string, endpoint: string) => p.engine.status(ws).outgoing.find((o) => o.endpointId === endpoint);

describe("workspace sync: seed scenario 1", () => {
  const h = new Harness();
  after(() => h.cleanup());

  it("alerts Jane on January 31, never Mary; the relay purges on February 4; Fred catches up from peers on March 1", async () => {
    const clock = new ManualClock(NOON(2026, 12, 31));
    const [relay] = await relays(h, clock, 1);
    const net = new SyncNet(h, clock, [relay!]);
    const fred = await net.endpoint("fred", "fred-pc", [relay!]);
    const jane = await net.endpoint("jane", "jane-pc", [relay!]);
    const mary = await net.endpoint("mary", "mary-pc", [relay!]);
    const ws = await teamTask(net, fred, jane, mary, { jane: "manager", mary: "participant" });

    // January 1: Fred goes on holiday without a connection.
    fred.online = false;
    let maryFirstSeq = 0;
    let janeAlertDay: string | undefined;
    let janeQueueAtAlert = 0;
    for (let t = NOON(2027, 1, 1); t <= NOON(2027, 2, 28); t += DAY) {
      clock.set(t);
      if (t >= NOON(2027, 1, 5)) {
        const r = await mary.engine.change(ws, `mary/${day(t)}`, `Mary's update of ${day(t)}`);
        if (!maryFirstSeq) maryFirstSeq = r.seq;
        assert.deepEqual(r.alerts, [], `Mary is a participant: no alert (${day(t)})`);
      }
      if (t >= NOON(2027, 1, 10)) {
        const r = await jane.engine.change(ws, `jane/${day(t)}`, `Jane's update of ${day(t)}`);
        if (r.alerts.length && !janeAlertDay) {
          janeAlertDay = day(t);
          assert.deepEqual(r.alerts.map((a) => a.memberId), ["fred"]);
          assert.equal(r.alerts[0]!.oldestQueuedAtMs, NOON(2027, 1, 10));
          // "Suspend Members": Fred is offered with the space his changes take; Jane chooses not to.
          const choices = jane.engine.suspendChoices(ws).filter((c) => c.stale);
          assert.deepEqual(choices.map((c) => c.memberId), ["fred"]);
          assert.ok(choices[0]!.bytes > 0);
          janeQueueAtAlert = outgoingFor(jane, ws, "fred-pc")!.outstanding;
        }
      }
      await net.settle();
      // The relay's clear interval runs on its own, late in the day.
      clock.set(t + 6 * HOUR);
      await relay!.service.retention.runOnce();
      const fredQueue = await relay!.service.store.readEntries({ kind: "device", id: "fred-pc" }, 0, 100_000);
      const holdsMaryFirst = fredQueue.some((e) => e.senderDevice === "mary-pc" && JSON.parse(Buffer.from(e.payload).toString()).changes?.some((c: { seq: number }) => c.seq === maryFirstSeq));
      if (t >= NOON(2027, 1, 5) && t < NOON(2027, 2, 4)) assert.ok(holdsMaryFirst, `Fred's relay queue still holds Mary's first change on ${day(t)}`);
      if (t >= NOON(2027, 2, 4)) assert.ok(!holdsMaryFirst, `Fred's relay purged Mary's first change by ${day(t)}`);
      assert.deepEqual(mary.engine.alerts(ws), []);
      assert.equal(fred.engine.status(ws).members.find((m) => m.memberId === "fred")!.endpoints[0]!.suspended, false, "a single-computer member is never suspended automatically");
    }
    assert.equal(janeAlertDay, "2027-01-31");
    assert.deepEqual(jane.engine.alerts(ws).map((a) => [a.memberId, day(a.raisedAtMs)]), [["fred", "2027-01-31"]]);
    // Not suspended: Jane's queue for Fred kept growing; the purged changes still exist in the members' local queues.
    assert.ok(outgoingFor(jane, ws, "fred-pc")!.outstanding > janeQueueAtAlert);
    assert.equal(outgoingFor(mary, ws, "fred-pc")!.oldestQueuedAtMs, NOON(2027, 1, 5));

    // March 1: Fred connects and stays online until there is nothing left to receive.
    clock.set(NOON(2027, 3, 1));
    fred.online = true;
    await net.settle();
    const requests = fred.engine.events(ws, "gap-request");
    assert.ok(requests.length >= 1, "the first update Fred received told him he was missing earlier changes");
    assert.ok(["jane-pc", "mary-pc"].includes(requests[0]!.detail.peer));
    assert.ok(requests[0]!.detail.ranges.some((r: { origin: string; from: number }) => r.origin === "mary-pc" && r.from <= maryFirstSeq), "the purged changes are among those fetched");
    const served = [...jane.engine.events(ws, "served"), ...mary.engine.events(ws, "served")].filter((e) => e.detail.to === "fred-pc");
    // Purged by the relay: Mary's 25 changes of January 5–29 and Jane's 20 of January 10–29.
    assert.ok(served.reduce((n, e) => n + e.detail.changes, 0) >= 45, "peers served Fred's missing changes from their queues");
    for (const p of [jane, mary]) assert.deepEqual(fred.engine.content(ws), p.engine.content(ws));
    assert.deepEqual(fred.engine.status(ws).missing, []);
    // Synchronised: Jane's and Mary's queues for Fred are freed, and Jane's alert is gone.
    assert.equal(outgoingFor(jane, ws, "fred-pc"), undefined);
    assert.equal(outgoingFor(mary, ws, "fred-pc"), undefined);
    assert.deepEqual(jane.engine.alerts(ws), []);
  });

  it("alerts Mary once she is promoted to manager before the situation is resolved", async () => {
    const clock = new ManualClock(NOON(2026, 12, 31));
    const [relay] = await relays(h, clock, 1);
    const net = new SyncNet(h, clock, [relay!]);
    const fred = await net.endpoint("fred", "fred-pc", [relay!]);
    const jane = await net.endpoint("jane", "jane-pc", [relay!]);
    const mary = await net.endpoint("mary", "mary-pc", [relay!]);
    const ws = await teamTask(net, fred, jane, mary, { jane: "manager", mary: "participant" });
    fred.online = false;
    const maryAlerts: string[] = [];
    for (let t = NOON(2027, 1, 5); t <= NOON(2027, 2, 3); t += DAY) {
      clock.set(t);
      if (t === NOON(2027, 1, 28)) await jane.engine.setRole(ws, "mary", "manager");
      await net.settle();
      const r = await mary.engine.change(ws, `mary/${day(t)}`, "update");
      if (r.alerts.length) maryAlerts.push(day(t));
      await net.settle();
    }
    // Mary's oldest change (January 5) passed 21 days on January 26, but she was a participant until January 28.
    assert.equal(maryAlerts[0], "2027-01-28");
    assert.deepEqual(mary.engine.alerts(ws).map((a) => a.memberId), ["fred"]);
    assert.deepEqual(jane.engine.alerts(ws), [], "Jane made no change: no alert");
  });
});

describe("workspace sync: seed scenario 2", () => {
  const h = new Harness();
  after(() => h.cleanup());

  it("hub-synchronised participants get no alert; Fred fetches Mary's changes from Jane, the one online", async () => {
    const clock = new ManualClock(NOON(2026, 12, 31));
    const [main, hub] = await relays(h, clock, 2);
    const net = new SyncNet(h, clock, [main!, hub!]);
    const fred = await net.endpoint("fred", "fred-pc", [main!]);
    // Jane's and Mary's device queues live on the site's hub first, then on the Internet relay.
    const jane = await net.endpoint("jane", "jane-pc", [hub!, main!], { directory: main });
    const mary = await net.endpoint("mary", "mary-pc", [hub!, main!], { directory: main });
    const ws = await teamTask(net, fred, jane, mary, { jane: "participant", mary: "participant" });

    // January 1: Jane and Mary have no Internet access; they stay synchronised through the hub.
    jane.reach = new Set([hub!.address]);
    mary.reach = new Set([hub!.address]);
    for (let t = NOON(2027, 1, 1); t <= NOON(2027, 2, 14); t += DAY) {
      clock.set(t);
      for (const p of [jane, mary]) assert.deepEqual((await p.engine.change(ws, `${p.memberId}/${day(t)}`, "update")).alerts, []);
      if (t === NOON(2027, 2, 1)) {
        // Fred is not aware of their changes: his own change raises no alert.
        assert.deepEqual((await fred.engine.change(ws, "fred/2027-02-01", "update")).alerts, []);
      }
      await net.settle();
      assert.deepEqual(jane.engine.content(ws), mary.engine.content(ws), `hub keeps Jane and Mary synchronised (${day(t)})`);
    }
    for (const p of [fred, jane, mary]) assert.deepEqual(p.engine.alerts(ws), []);
    assert.equal(Object.keys(fred.engine.content(ws)).filter((k) => k.startsWith("mary/")).length, 0);

    // February 15: Jane connects to the Internet; Fred is online.
    clock.set(NOON(2027, 2, 15));
    jane.reach = new Set([hub!.address, main!.address]);
    await net.settle();
    const requests = fred.engine.events(ws, "gap-request");
    assert.ok(requests.length >= 1);
    assert.ok(requests.every((r) => r.detail.peer === "jane-pc"), "Fred asks Jane, who is online, not Mary");
    assert.ok(requests[0]!.detail.ranges.some((r: { origin: string }) => r.origin === "mary-pc"));
    const servedByJane = jane.engine.events(ws, "served").filter((e) => e.detail.to === "fred-pc");
    assert.ok(servedByJane.reduce((n, e) => n + e.detail.changes, 0) >= 45, "Mary's changes came from Jane's copy");
    assert.deepEqual(mary.engine.events(ws, "served").filter((e) => e.detail.to === "fred-pc"), []);
    for (const p of [jane, mary]) assert.deepEqual(fred.engine.content(ws), p.engine.content(ws));
    // Synchronised: Jane's and Mary's queues for Fred are cleared (Mary learns it through the hub).
    assert.equal(outgoingFor(jane, ws, "fred-pc"), undefined);
    assert.equal(outgoingFor(mary, ws, "fred-pc"), undefined);
  });
});
