/**
 * MemoryBus: the shared Bus contract, plus what only an in-process bus can
 * show cheaply — message ages on a ManualClock and the absence of outages.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ManualClock, MINUTE } from "../../services/common/clock.js";
import { MemoryBus, subjectMatches, type DurableMessage } from "../../services/common/bus/index.js";
import { busContract, waitFor } from "../support/bus-contract.js";

busContract("MemoryBus", async (onError) => new MemoryBus({ onError }));

const enc = (s: string) => new TextEncoder().encode(s);

describe("MemoryBus specifics", () => {
  it("matches subjects like NATS", () => {
    assert.ok(subjectMatches("a.*.c", "a.b.c"));
    assert.ok(!subjectMatches("a.*.c", "a.b.x.c"));
    assert.ok(subjectMatches("a.>", "a.b.c"));
    assert.ok(!subjectMatches("a.>", "a"));
    assert.ok(subjectMatches("a.b", "a.b"));
    assert.ok(!subjectMatches("a.b", "a.b.c"));
    assert.ok(!subjectMatches("a.*", "a"));
  });

  it("drops messages older than maxAgeMs and forgets msgIds after the window", async () => {
    const clock = new ManualClock();
    const bus = new MemoryBus({ clock });
    await bus.ensureStream({ name: "AGED", subjects: ["aged.>"], maxAgeMs: 10 * MINUTE, duplicateWindowMs: MINUTE });
    assert.equal((await bus.publishDurable("aged.x", enc("old"), { msgId: "a" })).seq, 1);
    clock.advance(2 * MINUTE);
    // Outside the duplicate window the same msgId is a new message.
    assert.deepEqual(await bus.publishDurable("aged.x", enc("again"), { msgId: "a" }), { stream: "AGED", seq: 2, duplicate: false });
    clock.advance(9 * MINUTE); // seq 1 is now 11 minutes old, seq 2 is 9
    const got: DurableMessage[] = [];
    const c = await bus.consume({ stream: "AGED", durable: "d" }, (m) => { got.push(m); m.ack(); });
    await waitFor(() => got.length === 1, "the surviving message");
    await bus.flush();
    assert.deepEqual(got.map((m) => m.seq), [2]);
    await c.stop();
    await bus.close();
  });

  it("stores core publishes on stream subjects, as JetStream does", async () => {
    const bus = new MemoryBus();
    await bus.ensureStream({ name: "CORE", subjects: ["core.>"] });
    await assert.rejects(bus.ensureStream({ name: "OVERLAP", subjects: ["core.x"] }), /overlap/);
    bus.publish("core.a", enc("n"));
    const ack = await bus.publishDurable("core.b", enc("d"), { msgId: "x" });
    assert.equal(ack.seq, 2);
    await bus.close();
  });

  it("never reports a reconnect and rejects use after close", async () => {
    const bus = new MemoryBus();
    let fired = 0;
    const off = bus.onReconnect(() => fired++);
    bus.subscribe("x.y", () => {});
    bus.publish("x.y", enc("1"));
    await bus.flush();
    off();
    assert.equal(fired, 0);
    assert.throws(() => bus.publish("x.*", enc("2")), /invalid publish subject/);
    await bus.close();
    assert.throws(() => bus.publish("x.y", enc("2")), /closed/);
  });
});
