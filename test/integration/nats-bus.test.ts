/**
 * NatsBus against real nats-server: the shared Bus contract on the shared
 * server (NATS_URL, default 127.0.0.1:4222), then outage behaviour on a
 * throw-away server of our own that the test kills and restarts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsBus } from "../../services/common/bus/index.js";
import { busContract, uniqueSuffix, waitFor } from "../support/bus-contract.js";

const NATS_URL = process.env.NATS_URL ?? "127.0.0.1:4222";
const NATS_SERVER = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";

busContract("NatsBus", (onError) => NatsBus.connect({ servers: NATS_URL, name: "bus-contract-test", onError }));

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("NatsBus notifications between connections", () => {
  it("reaches its own subscribers and another connection's, each once, and none after unsubscribe", async () => {
    const a = await NatsBus.connect({ servers: NATS_URL, name: "bus-echo-a" });
    const b = await NatsBus.connect({ servers: NATS_URL, name: "bus-echo-b" });
    try {
      const subject = `test.echo.${uniqueSuffix()}`;
      const got = { a: [] as string[], aWildcard: [] as string[], b: [] as string[] };
      const subA = a.subscribe(subject, (m) => void got.a.push(dec(m.data)));
      a.subscribe(`${subject.split(".").slice(0, 2).join(".")}.>`, (m) => void got.aWildcard.push(dec(m.data)));
      b.subscribe(subject, (m) => void got.b.push(dec(m.data)));
      await a.flush();
      await b.flush();
      a.publish(subject, enc("from a"));
      b.publish(subject, enc("from b"));
      const all = () => got.a.length + got.aWildcard.length + got.b.length;
      await waitFor(() => all() >= 6, "each message at every subscriber", 5_000);
      subA.unsubscribe();
      a.publish(subject, enc("after"));
      await waitFor(() => got.b.length >= 3 && got.aWildcard.length >= 3, "the last message at the others", 5_000);
      await a.flush();
      await b.flush();
      assert.deepEqual(got.a.sort(), ["from a", "from b"]);
      assert.deepEqual(got.aWildcard.sort(), ["after", "from a", "from b"]);
      assert.deepEqual(got.b.sort(), ["after", "from a", "from b"]);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

async function freePort(): Promise<number> {
  const srv = createServer().listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: "127.0.0.1", port });
    sock.once("connect", () => { sock.destroy(); resolve(true); });
    sock.once("error", () => resolve(false));
  });
}

/** A private nats-server with JetStream whose store survives restarts. */
class ThrowawayServer {
  private proc?: ChildProcess;
  private readonly killOnExit = () => this.proc?.kill("SIGKILL");
  constructor(readonly port: number, readonly dir: string) {
    process.once("exit", this.killOnExit); // never leave a server behind, even on a crash
  }

  async start(): Promise<void> {
    const proc = spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.dir], { stdio: "ignore" });
    this.proc = proc;
    const deadline = Date.now() + 10_000;
    while (!(await accepts(this.port))) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error("nats-server did not start listening");
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, "exit");
    proc.kill("SIGKILL");
    await exited;
  }

  async dispose(): Promise<void> {
    await this.kill();
    process.off("exit", this.killOnExit);
    await rm(this.dir, { recursive: true, force: true });
  }
}

describe("NatsBus outages", () => {
  let server: ThrowawayServer;

  before(async () => {
    server = new ThrowawayServer(await freePort(), await mkdtemp(join(tmpdir(), "parley-nats-")));
    await server.start();
  });
  after(async () => {
    await server?.dispose();
  });

  it("fires onReconnect after a restart and keeps subscriptions and consumers working", async () => {
    const errors: unknown[] = [];
    const bus = await NatsBus.connect({ servers: `127.0.0.1:${server.port}`, name: "reconnect-test", onError: (e) => errors.push(e) });
    const stream = `RC_${uniqueSuffix()}`.toUpperCase();
    try {
      let reconnects = 0;
      const off = bus.onReconnect(() => reconnects++);
      const pings: string[] = [];
      bus.subscribe("rc.ping", (m) => pings.push(dec(m.data)));
      await bus.ensureStream({ name: stream, subjects: ["rc.durable.>"] });
      const durable: string[] = [];
      const redelivered: string[] = [];
      const c = await bus.consume({ stream, durable: "rc", ackWaitMs: 2000 }, (m) => {
        if (m.deliveries > 1) redelivered.push(dec(m.data));
        else durable.push(dec(m.data));
        m.ack();
      });
      await bus.publishDurable("rc.durable.a", enc("before"), { msgId: "before" });
      await waitFor(() => durable.length === 1, "delivery before the outage");

      await server.kill();
      await server.start();
      await waitFor(() => reconnects >= 1, "the onReconnect listener", 15_000);

      bus.publish("rc.ping", enc("after"));
      await waitFor(() => pings.includes("after"), "core delivery after reconnect");
      await bus.publishDurable("rc.durable.b", enc("after"), { msgId: "after" });
      await waitFor(() => durable.includes("after"), "durable delivery after reconnect", 15_000);
      // At-least-once: an ack the killed server never stored brings 'before' back,
      // but only as a redelivery, never as a new first delivery, and nothing is lost.
      assert.deepEqual(durable, ["before", "after"]);
      assert.ok(redelivered.every((p) => p === "before"), `redelivered: ${redelivered.join(",")}`);

      off();
      await c.stop();
      assert.ok(await bus.deleteStream(stream));
    } finally {
      await bus.close();
    }
  });
});

describe("NatsBus consumer supervision", () => {
  it("recreates a durable consumer deleted under it and keeps consuming", async () => {
    const errors: unknown[] = [];
    const bus = await NatsBus.connect({ servers: NATS_URL, name: "supervision-test", onError: (e) => errors.push(e) });
    const admin = await connect({ servers: NATS_URL, name: "supervision-admin" });
    const stream = `SUP_${uniqueSuffix()}`.toUpperCase();
    const subject = `sup.${stream.toLowerCase()}`;
    try {
      await bus.ensureStream({ name: stream, subjects: [`${subject}.>`] });
      const got: string[] = [];
      const c = await bus.consume({ stream, durable: "sup" }, (m) => {
        got.push(dec(m.data));
        m.ack();
      });
      await bus.publishDurable(`${subject}.m`, enc("one"), { msgId: "one" });
      await waitFor(() => got.includes("one"), "first delivery");

      await (await jetstreamManager(admin)).consumers.delete(stream, "sup");
      await waitFor(() => errors.length > 0, "the consumer loss to be reported");
      await bus.publishDurable(`${subject}.m`, enc("two"), { msgId: "two" });
      // The recreated consumer starts from the stream's beginning: at-least-once.
      await waitFor(() => got.includes("two"), "delivery after the consumer was recreated", 15_000);
      assert.deepEqual(got.filter((d) => d === "two"), ["two"]);
      await c.stop();
    } finally {
      await bus.deleteStream(stream);
      await admin.close();
      await bus.close();
    }
  });
});
