/**
 * The Bus contract as observable behaviour, run against MemoryBus (unit)
 * and NatsBus (integration) so both implementations stay interchangeable.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { trace } from "@opentelemetry/api";
import { extractContext, initTracing, withSpan } from "../../services/common/tracing.js";
import type { Bus, BusMessage, DurableMessage } from "../../services/common/bus/index.js";

export type TestBus = Bus & { deleteStream(name: string): Promise<boolean> };

/** Polls cond until it holds; fails with what was awaited after timeoutMs. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const uniqueSuffix = () => randomBytes(4).toString("hex");
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** open() must route handler/subscriber exceptions to onError. */
export function busContract(label: string, open: (onError: (err: unknown) => void) => Promise<TestBus>): void {
  describe(`Bus contract: ${label}`, () => {
    let bus: TestBus;
    const run = uniqueSuffix();
    const streams: string[] = [];
    let n = 0;
    const errors: unknown[] = [];
    /** A fresh stream per test, captured under its own subject prefix. */
    const newStream = async (extra: { maxAgeMs?: number; duplicateWindowMs?: number } = {}) => {
      const name = `BUSTEST_${run}_${++n}`.toUpperCase();
      const prefix = `bustest.${run}.${n}`;
      await bus.ensureStream({ name, subjects: [`${prefix}.>`], duplicateWindowMs: 60_000, ...extra });
      streams.push(name);
      return { name, prefix };
    };

    before(async () => {
      initTracing("test");
      bus = await open((err) => errors.push(err));
    });
    after(async () => {
      for (const s of streams) await bus.deleteStream(s);
      await bus.close();
    });

    it("delivers by wildcard, asynchronously, and stops after unsubscribe", async () => {
      const p = `bustest.${run}.core`;
      const star: string[] = [];
      const rest: string[] = [];
      const s1 = bus.subscribe(`${p}.*.wake`, (m) => star.push(m.subject));
      const s2 = bus.subscribe(`${p}.>`, (m) => rest.push(m.subject));
      await bus.flush();
      bus.publish(`${p}.a.wake`, enc("1"));
      assert.equal(star.length + rest.length, 0, "delivered synchronously inside publish");
      bus.publish(`${p}.a.b.wake`, enc("2"));
      bus.publish(`${p}.b.sleep`, enc("3"));
      await waitFor(() => rest.length === 3, "three messages on >");
      assert.deepEqual(star, [`${p}.a.wake`]);
      assert.deepEqual(rest, [`${p}.a.wake`, `${p}.a.b.wake`, `${p}.b.sleep`]);
      s1.unsubscribe();
      bus.publish(`${p}.c.wake`, enc("4"));
      await waitFor(() => rest.length === 4, "fourth message on >");
      await bus.flush();
      assert.deepEqual(star, [`${p}.a.wake`]);
      s2.unsubscribe();
    });

    it("round-trips headers and carries traceparent when a span is active", async () => {
      const subject = `bustest.${run}.headers`;
      const got: BusMessage[] = [];
      const sub = bus.subscribe(subject, (m) => got.push(m));
      await bus.flush();
      bus.publish(subject, enc("plain"), { "x-parley-kind": "wake" });
      const traceId = await withSpan("bus.test.publish", async (span) => {
        bus.publish(subject, enc("traced"), { "x-parley-kind": "traced" });
        return span.spanContext().traceId;
      });
      await waitFor(() => got.length === 2, "two messages");
      sub.unsubscribe();
      assert.equal(got[0]!.headers["x-parley-kind"], "wake");
      assert.equal(got[0]!.headers.traceparent, undefined);
      assert.equal(dec(got[1]!.data), "traced");
      assert.equal(got[1]!.headers["x-parley-kind"], "traced");
      assert.match(got[1]!.headers.traceparent ?? "", new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
      assert.equal(trace.getSpanContext(extractContext(got[1]!.headers))?.traceId, traceId);
    });

    it("de-duplicates durable publishes by msgId and traces them", async () => {
      const { name, prefix } = await newStream();
      const a1 = await bus.publishDurable(`${prefix}.x`, enc("a"), { msgId: "m-a" });
      const a2 = await bus.publishDurable(`${prefix}.x`, enc("a again"), { msgId: "m-a" });
      const b = await withSpan("bus.test.durable", () => bus.publishDurable(`${prefix}.y`, enc("b"), { msgId: "m-b", headers: { k: "v" } }));
      assert.deepEqual(a1, { stream: name, seq: 1, duplicate: false });
      assert.deepEqual(a2, { stream: name, seq: 1, duplicate: true });
      assert.deepEqual(b, { stream: name, seq: 2, duplicate: false });
      const got: DurableMessage[] = [];
      const c = await bus.consume({ stream: name, durable: "d" }, (m) => { got.push(m); m.ack(); });
      await waitFor(() => got.length === 2, "two stored messages");
      await c.stop();
      assert.deepEqual(got.map((m) => [m.seq, m.msgId, dec(m.data), m.deliveries]), [[1, "m-a", "a", 1], [2, "m-b", "b", 1]]);
      assert.equal(got[1]!.headers.k, "v");
      assert.match(got[1]!.headers.traceparent ?? "", /^00-[0-9a-f]{32}-/);
      await assert.rejects(bus.publishDurable(`bustest.${run}.nostream`, enc("x"), { msgId: "z" }));
    });

    it("creates and updates streams", async () => {
      // Without an explicit window the default is shortened to fit maxAgeMs.
      const { name, prefix } = await newStream({ maxAgeMs: 30_000, duplicateWindowMs: undefined });
      await bus.ensureStream({ name, subjects: [`${prefix}.>`, `${prefix}x.>`], maxAgeMs: 60_000, duplicateWindowMs: 1000 });
      const ack = await bus.publishDurable(`${prefix}x.added`, enc("1"), { msgId: "u1" });
      assert.deepEqual(ack, { stream: name, seq: 1, duplicate: false });
      await assert.rejects(bus.ensureStream({ name, subjects: [`${prefix}.>`], maxAgeMs: 1000, duplicateWindowMs: 5000 }));
    });

    it("delivers in stream order, one at a time, honouring filterSubject", async () => {
      const { name, prefix } = await newStream();
      for (let i = 1; i <= 20; i++) await bus.publishDurable(`${prefix}.${i % 2 ? "odd" : "even"}`, enc(String(i)), { msgId: `o${i}` });
      const all: number[] = [];
      const odd: number[] = [];
      let inFlight = 0;
      let maxInFlight = 0;
      const c1 = await bus.consume({ stream: name, durable: "all" }, async (m) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        await new Promise((r) => setTimeout(r, 1));
        all.push(Number(dec(m.data)));
        inFlight--;
        m.ack();
      });
      const c2 = await bus.consume({ stream: name, durable: "odd", filterSubject: `${prefix}.odd` }, (m) => {
        odd.push(m.seq);
        m.ack();
      });
      await waitFor(() => all.length === 20 && odd.length === 10, "all messages");
      await Promise.all([c1.stop(), c2.stop()]);
      assert.deepEqual(all, Array.from({ length: 20 }, (_, i) => i + 1));
      assert.deepEqual(odd, [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
      assert.equal(maxInFlight, 1);
    });

    it("redelivers after nak and after a throwing handler", async () => {
      const { name, prefix } = await newStream();
      for (let i = 1; i <= 3; i++) await bus.publishDurable(`${prefix}.m`, enc(String(i)), { msgId: `r${i}` });
      const seen: string[] = [];
      // maxAckPending 1 keeps strict order even across redeliveries.
      const c = await bus.consume({ stream: name, durable: "r", maxAckPending: 1 }, (m) => {
        seen.push(`${m.seq}/${m.deliveries}`);
        if (m.seq === 1 && m.deliveries === 1) return m.nak(50);
        if (m.seq === 2 && m.deliveries < 3) throw new Error("expected test failure");
        m.ack();
      });
      await waitFor(() => seen.includes("3/1"), "third message", 10_000);
      await c.stop();
      assert.deepEqual(seen, ["1/1", "1/2", "2/1", "2/2", "2/3", "3/1"]);
      assert.equal(errors.filter((e) => (e as Error).message === "expected test failure").length, 2);
    });

    it("resumes a durable after stop(): acked never again, unacked redelivered", async () => {
      const { name, prefix } = await newStream();
      for (let i = 1; i <= 5; i++) await bus.publishDurable(`${prefix}.m`, enc(String(i)), { msgId: `s${i}` });
      const first: number[] = [];
      const c1 = await bus.consume({ stream: name, durable: "resume", ackWaitMs: 1000 }, (m) => {
        first.push(m.seq);
        if (m.seq <= 3) m.ack(); // 4 and 5 are handled but never acked
      });
      await waitFor(() => first.length >= 5, "first five deliveries");
      await c1.stop();
      await bus.publishDurable(`${prefix}.m`, enc("6"), { msgId: "s6" });
      const second: DurableMessage[] = [];
      const c2 = await bus.consume({ stream: name, durable: "resume", ackWaitMs: 1000 }, (m) => {
        second.push(m);
        m.ack();
      });
      await waitFor(() => new Set(second.map((m) => m.seq)).size === 3, "4, 5 and 6 on resume", 10_000);
      await c2.stop();
      assert.deepEqual(first.slice(0, 5), [1, 2, 3, 4, 5]);
      assert.deepEqual([...new Set(second.map((m) => m.seq))].sort(), [4, 5, 6]);
      assert.ok(second.every((m) => m.seq > 3), "an acked message came back");
      assert.ok(second.filter((m) => m.seq < 6).every((m) => m.deliveries >= 2));
    });

    it("deletes a durable: its session stops, and the name starts again from the first message", async () => {
      const { name, prefix } = await newStream();
      for (let i = 1; i <= 3; i++) await bus.publishDurable(`${prefix}.m`, enc(String(i)), { msgId: `x${i}` });
      const first: number[] = [];
      await bus.consume({ stream: name, durable: "gone" }, (m) => { first.push(m.seq); m.ack(); });
      await waitFor(() => first.length === 3, "three deliveries");
      assert.equal(await bus.deleteConsumer(name, "gone"), true);
      assert.equal(await bus.deleteConsumer(name, "gone"), false, "already deleted");
      assert.equal(await bus.deleteConsumer(`${name}_NONE`, "gone"), false, "no such stream");
      await bus.publishDurable(`${prefix}.m`, enc("4"), { msgId: "x4" });
      await bus.flush();
      assert.deepEqual(first, [1, 2, 3], "the deleted durable's session delivers nothing more");
      const again: number[] = [];
      const c = await bus.consume({ stream: name, durable: "gone" }, (m) => { again.push(m.seq); m.ack(); });
      await waitFor(() => again.length === 4, "all four to the new durable of that name");
      await c.stop();
      assert.deepEqual(again, [1, 2, 3, 4]);
      assert.equal(await bus.deleteConsumer(name, "gone"), true);
    });

    it("stop() waits for the in-flight handler", async () => {
      const { name, prefix } = await newStream();
      await bus.publishDurable(`${prefix}.m`, enc("1"), { msgId: "w1" });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let started = false;
      let finished = false;
      const c = await bus.consume({ stream: name, durable: "w" }, async (m) => {
        started = true;
        await gate;
        m.ack();
        finished = true;
      });
      await waitFor(() => started, "handler start");
      let stopped = false;
      const stopping = c.stop().then(() => (stopped = true));
      const early = await Promise.race([stopping.then(() => "stopped"), new Promise((r) => setTimeout(r, 100, "pending"))]);
      assert.equal(early, "pending");
      release();
      await stopping;
      assert.ok(stopped && finished);
    });
  });
}
