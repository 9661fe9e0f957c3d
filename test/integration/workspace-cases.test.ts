/**
 * Workspace sync beyond the seed's scenarios: a member on three computers,
 * small and legacy workspaces, a peer that goes offline while serving a
 * range, duplicated and reordered deliveries, and the relay's refusal to
 * queue for a suspended endpoint.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { DAY, MINUTE, ManualClock } from "../../services/common/clock.js";
import { contentTypeFor, encode } from "../../client/sync/messages.js";
import type { SyncTransport } from "../../client/sync/transport.js";
import { ParleyClientError } from "../../client/errors.js";
import { Harness, newRelayKey, unique, type RelayInstance } from "../support/harness.js";
import { MB, NOON, SyncNet, type Peer } from "../support/sync.js";

const day = (t: number) => new Date(t).toISOString().slice(0, 10);

describe("workspace sync: further cases", () => {
  const h = new Harness();
  after(() => h.cleanup());
  let relay: RelayInstance;
  const setup = async () => {
    const clock = new ManualClock(NOON(2026, 12, 31));
    relay ??= await h.relay({ databaseUrl: await h.database("wscase"), bus: await h.nats(), key: newRelayKey(), clock: { now: () => current.now() } });
    current = clock;
    return { clock, net: new SyncNet(h, clock, [relay]) };
  };
  let current = new ManualClock();
  const suspendedOf = (p: Peer, ws: string) => p.engine.endpoints(ws).filter((e) => e.suspended).map((e) => e.endpointId).sort();

  it("a member on three computers: two are suspended automatically, the last only by a manager; the relay refuses to queue for them; a resumed member catches up", async () => {
    const { clock, net } = await setup();
    const jane = await net.endpoint("jane3", "jane3-pc", [relay]);
    const fred = [await net.endpoint("fred3", "fred3-pc", [relay]), await net.endpoint("fred3", "fred3-laptop", [relay]), await net.endpoint("fred3", "fred3-home", [relay])];
    const ws = unique("three");
    jane.engine.createWorkspace(ws, "Three computers");
    await jane.engine.change(ws, "files/big", "big", { fileBytes: 120 * MB });
    const inv = jane.engine.invite(ws, "fred3", "participant");
    for (const f of fred) f.engine.join(inv);
    await net.settle();
    // The laptop leaves on January 1, the home computer on January 3, the pc on January 5.
    const leaves: Record<string, number> = { "fred3-laptop": NOON(2027, 1, 1), "fred3-home": NOON(2027, 1, 3), "fred3-pc": NOON(2027, 1, 5) };
    const suspendedOn: Record<string, string> = {};
    let alertDay: string | undefined;
    for (let t = NOON(2027, 1, 1); t <= NOON(2027, 1, 30); t += DAY) {
      clock.set(t);
      for (const f of fred) if (t >= leaves[f.name]!) f.online = false;
      const r = await jane.engine.change(ws, `jane/${day(t)}`, "update");
      if (r.alerts.length && !alertDay) alertDay = day(t);
      await net.settle();
      for (const e of suspendedOf(jane, ws)) suspendedOn[e] ??= day(t);
    }
    // Each passes 21 days: laptop on Jan 22, home on Jan 24; the pc is the last one and stays.
    assert.deepEqual(suspendedOn, { "fred3-laptop": "2027-01-22", "fred3-home": "2027-01-24" });
    assert.deepEqual(jane.engine.events(ws, "suspended").map((e) => e.detail.reason), ["auto", "auto"]);
    // Jane's alert comes when the last computer passes 21 days (January 26); she must suspend it herself.
    assert.equal(alertDay, "2027-01-26");
    assert.deepEqual(jane.engine.suspendChoices(ws).map((c) => c.endpointIds), [["fred3-pc"]]);
    const queueBefore = jane.engine.status(ws).outgoing.find((o) => o.endpointId === "fred3-pc")!;
    assert.ok(queueBefore.bytes > 0);
    assert.deepEqual(await jane.engine.suspend(ws, { memberId: "fred3" }), ["fred3-pc"]);
    assert.deepEqual(jane.engine.status(ws).outgoing, [], "suspending recovered the queue's disk space");
    await jane.engine.pump();
    await jane.engine.change(ws, "after-suspension", "x");
    assert.deepEqual(jane.engine.alerts(ws), [], "no alerts about a suspended member");

    // The relay refuses to queue workspace changes for the suspended endpoints, naming one.
    const raw = await jane.transport.client(relay.address);
    await assert.rejects(
      raw.send({ to: [{ deviceId: "fred3-laptop" }], payload: Buffer.from("{}"), contentType: contentTypeFor(ws) }),
      (e: unknown) => e instanceof ParleyClientError && e.code === grpc.status.FAILED_PRECONDITION && /fred3-laptop/.test(e.message),
    );

    // Resumed, Fred's pc catches up (from a snapshot: peers dropped what only he lacked).
    clock.set(NOON(2027, 2, 2));
    assert.deepEqual((await jane.engine.resume(ws, "fred3")).sort(), ["fred3-home", "fred3-laptop", "fred3-pc"]);
    await jane.engine.change(ws, "resumed", "welcome back");
    fred[0]!.online = true;
    await net.settle();
    clock.advance(MINUTE);
    await net.settle();
    assert.deepEqual(fred[0]!.engine.content(ws), jane.engine.content(ws));
    assert.equal(fred[0]!.engine.value(ws, "resumed"), "welcome back");
  });

  it("a workspace under 100 MB: no automatic suspension and no alert, except in legacy mode", async () => {
    const { clock, net } = await setup();
    const jane = await net.endpoint("jane4", "jane4-pc", [relay]);
    const fredPc = await net.endpoint("fred4", "fred4-pc", [relay]);
    const fredLaptop = await net.endpoint("fred4", "fred4-laptop", [relay]);
    const small = unique("small");
    const legacy = unique("legacy");
    jane.engine.createWorkspace(small, "Small");
    jane.engine.createWorkspace(legacy, "Small legacy", { legacy: true });
    for (const ws of [small, legacy]) {
      const inv = jane.engine.invite(ws, "fred4", "participant");
      fredPc.engine.join(inv);
      fredLaptop.engine.join(inv);
    }
    await net.settle();
    fredPc.online = fredLaptop.online = false;
    const alerts: Record<string, string[]> = { [small]: [], [legacy]: [] };
    for (let t = NOON(2027, 1, 1); t <= NOON(2027, 1, 25); t += DAY) {
      clock.set(t);
      for (const ws of [small, legacy]) if ((await jane.engine.change(ws, `d/${day(t)}`, "x")).alerts.length) alerts[ws]!.push(day(t));
      await net.settle();
    }
    assert.deepEqual(alerts[small], []);
    assert.equal(alerts[legacy]![0], "2027-01-22");
    for (const ws of [small, legacy]) assert.deepEqual(suspendedOf(jane, ws), []);
  });

  it("a peer going offline in the middle of serving a range: the rest comes from another peer", async () => {
    const { clock, net } = await setup();
    let cut = false;
    // Jane's link drops after her first answer message while serving.
    const flaky = (t: SyncTransport): SyncTransport => ({
      get endpointId() { return t.endpointId; },
      get memberId() { return t.memberId; },
      get relays() { return t.relays; },
      receive: (hd) => t.receive(hd),
      directory: () => t.directory(),
      close: () => t.close(),
      send: async (ms) => {
        if (!cut || !ms.some((m) => JSON.parse(Buffer.from(m.payload).toString()).reply)) return t.send(ms);
        const r = await t.send(ms.slice(0, 1));
        jane.online = false;
        return { ...r, unreachable: ms.slice(1).map((_, i) => i + 1) };
      },
    });
    const fred = await net.endpoint("fred5", "fred5-pc", [relay]);
    const jane = await net.endpoint("jane5", "jane5-pc", [relay], { wrap: flaky, engine: { maxMessageBytes: 2000 } });
    const mary = await net.endpoint("mary5", "mary5-pc", [relay]);
    const ws = unique("flaky");
    fred.engine.createWorkspace(ws, "Flaky");
    jane.engine.join(fred.engine.invite(ws, "jane5", "manager"));
    await net.settle();
    mary.engine.join(fred.engine.invite(ws, "mary5", "participant"));
    await net.settle();
    fred.online = false;
    for (let i = 0; i < 60; i++) await jane.engine.change(ws, `k${i}`, `value ${i}`);
    await net.settle();
    await relay.service.store.purgeQueue({ kind: "device", id: "fred5-pc" });
    // Only Jane is online when Fred returns; her newest change shows him the gap.
    mary.online = false;
    await jane.engine.change(ws, "last", "z");
    fred.online = true;
    cut = true;
    await net.settle();
    assert.equal(jane.online, false, "Jane went offline while serving");
    const partial = Object.keys(fred.engine.content(ws)).length;
    assert.ok(partial > 1 && partial < 61, `Fred got part of the range (${partial} keys)`);
    // Mary comes online; Jane's answer is overdue, so Fred asks Mary for the rest.
    mary.online = true;
    clock.advance(MINUTE);
    await net.settle();
    assert.deepEqual(fred.engine.events(ws, "gap-request").map((e) => e.detail.peer), ["jane5-pc", "mary5-pc"]);
    assert.deepEqual(fred.engine.content(ws), mary.engine.content(ws));
    assert.deepEqual(fred.engine.status(ws).missing, []);
  });

  it("duplicated and reordered deliveries are harmless", async () => {
    const { net } = await setup();
    const fred = await net.endpoint("fred6", "fred6-pc", [relay]);
    const jane = await net.endpoint("jane6", "jane6-pc", [relay]);
    const ws = unique("dup");
    fred.engine.createWorkspace(ws, "Dup");
    jane.engine.join(fred.engine.invite(ws, "jane6", "manager"));
    await net.settle();
    fred.online = false;
    for (let i = 1; i <= 5; i++) await jane.engine.change(ws, "x", `v${i}`);
    await jane.engine.change(ws, "y", "only once");
    // Inject the same changes again into Fred's queue: reversed, and each twice.
    const log = jane.store.logRange(ws, "jane6-pc", 1, 100, 100);
    const envelope = { ws, from: "jane6-pc", vector: jane.store.applied(ws), known: {} };
    const copies = [...log].reverse().flatMap((c) => [c, c]);
    await jane.transport.send(copies.map((c) => ({ endpointId: "fred6-pc", relays: [relay.address], contentType: contentTypeFor(ws), payload: encode({ t: "changes", ...envelope, changes: [c] }) })));
    fred.online = true;
    await net.settle();
    assert.equal(fred.engine.value(ws, "x"), "v5", "the last write wins whatever the delivery order");
    assert.deepEqual(fred.engine.content(ws), jane.engine.content(ws));
    assert.equal(fred.engine.status(ws).vector["jane6-pc"], jane.engine.status(ws).vector["jane6-pc"]);
    assert.equal(jane.engine.status(ws).outgoing.length, 0);
  });
});
