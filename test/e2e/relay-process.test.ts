/** `parley relay` as real processes: SIGTERM finishes in-flight work, clients move to the other instance, nothing acknowledged is lost. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Harness, NATS_URL, unique } from "../support/harness.js";
import { startParley, type Proc } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

describe("relay processes", () => {
  const h = new Harness();
  const dir = mkdtempSync(join(tmpdir(), "parley-relay-"));
  const procs: Proc[] = [];
  let databaseUrl = "";

  const startRelay = async (name: string): Promise<{ proc: Proc; grpc: string; http: string }> => {
    const proc = startParley(
      ["relay", "--database-url", databaseUrl, "--nats-url", NATS_URL, "--relay-id", "relay-e2e", "--relay-key-file", join(dir, "key.pem"), "--create-key", "true",
        "--grpc-port", "0", "--http-port", "0", "--host", "127.0.0.1", "--admin-token", "e2e-token", "--shutdown-grace", "5s"],
      { PARLEY_LOG_LEVEL: "info" },
    );
    procs.push(proc);
    const m = await proc.waitForOutput(/"grpcPort":(\d+),"httpPort":(\d+),"msg":"relay ready"/, 60_000);
    return { proc, grpc: `127.0.0.1:${m[1]}`, http: `http://127.0.0.1:${m[2]}` };
  };

  before(async () => {
    databaseUrl = await h.database("relaye2e");
  });
  after(async () => {
    for (const p of procs) await p.stop("SIGKILL").catch(() => undefined);
    await h.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses to start on bad configuration, naming every problem", async () => {
    const p = startParley(["relay", "--database-url", "postgres://x/y", "--grpc-port", "99999", "--max-message-bytes", "lots", "--retentoin", "1d"]);
    const { code } = await p.exited;
    assert.equal(code, 2);
    assert.match(p.output, /--grpc-port: expected an integer ≥ 0 ≤ 65535, got '99999'/);
    assert.match(p.output, /--max-message-bytes: expected a size like 65536, 64KiB, 1MiB or 1GB, got 'lots'/);
    assert.match(p.output, /unknown option --retentoin/);
  });

  it("drains on SIGTERM: in-flight sends complete, streams move to the other instance, nothing acknowledged is lost", async () => {
    const first = await startRelay("a");
    // The second instance reuses the key the first one created.
    const second = await startRelay("b");
    const alice = await h.identityWithDevice([first.grpc], unique("alice"), unique("a-dev"));
    const bob = await h.identityWithDevice([first.grpc], unique("bob"), unique("b-dev"));
    const sender = h.client([first.grpc, second.grpc], alice);
    const receiver = h.client([first.grpc, second.grpc], bob);

    const got: string[] = [];
    const ctl = new AbortController();
    const inbox = receiver.inbox((m) => void got.push(Buffer.from(m.payload).toString()), { follow: true, signal: ctl.signal });
    const acked: string[] = [];
    let stop = false;
    const sending = (async () => {
      for (let i = 0; !stop || i < 200; i++) {
        const id = `m-${i}`;
        await sender.send({ messageId: id, to: [{ deviceId: bob.deviceId }], payload: Buffer.from(id) });
        acked.push(id);
        if (i > 2000) break;
      }
    })();
    await waitFor("traffic flowing", () => got.length >= 50, 20_000);
    assert.equal((await fetch(`${first.http}/readyz`)).status, 200);
    const exit = await first.proc.stop("SIGTERM");
    assert.equal(exit.code, 0, first.proc.output.slice(-3000));
    stop = true;
    await sending;
    await waitFor("every acknowledged message delivered", () => got.length >= acked.length, 30_000);
    ctl.abort();
    await inbox;
    assert.deepEqual(got, acked, "delivered exactly the acknowledged messages, in order");
    assert.match(first.proc.output, /"signal":"SIGTERM","msg":"shutting down"/);
  });
});
