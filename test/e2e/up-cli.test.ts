/** `parley up` through the CLI: two devices exchange messages; data survives a restart; errors are one clear line. */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runParley, startParley, type Proc } from "../support/processes.js";

describe("parley up, driven by the CLI", () => {
  const dir = mkdtempSync(join(tmpdir(), "parley-up-"));
  // As root, the embedded Postgres runs as an unprivileged user that must reach the data dir.
  chmodSync(dir, 0o755);
  let up: Proc;
  let relay = "";
  let adminToken = "";
  const alice = ["--profile", join(dir, "alice")];
  const bob = ["--profile", join(dir, "bob")];

  const start = async () => {
    up = startParley(["up", "--data-dir", join(dir, "data"), "--grpc-port", "0", "--http-port", "0"]);
    relay = (await up.waitForOutput(/gRPC\s+(\S+)/, 90_000))[1]!;
    adminToken = (await up.waitForOutput(/PARLEY_ADMIN_TOKEN=(\S+)/))[1]!;
  };
  const ok = async (args: string[]) => {
    const r = await runParley(args, { PARLEY_ADMIN_TOKEN: adminToken });
    assert.equal(r.code, 0, `parley ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };

  before(start);
  after(async () => {
    await up?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("registers two identities with a device each, and they exchange messages both ways", async () => {
    await ok(["--relay", relay, ...alice, "identity", "create", "alice"]);
    await ok([...alice, "device", "add", "alice-laptop"]);
    await ok(["--relay", relay, ...bob, "identity", "create", "bob"]);
    await ok([...bob, "device", "add", "bob-phone"]);

    assert.match(await ok([...alice, "send", "--to", "identity:bob", "hello bob"]), /^sent \S+ to 1 queue\(s\)/);
    await ok([...alice, "send", "--to", "device:bob-phone", "--id", "m-2", "second"]);
    assert.match(await ok([...alice, "send", "--to", "device:bob-phone", "--id", "m-2", "second"]), /^already sent m-2/);

    const lines = (await ok([...bob, "inbox", "--json"])).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((m) => [m.senderIdentityId, m.queue, m.text]).sort(), [["alice", "device", "second"], ["alice", "identity", "hello bob"]]);

    await ok([...bob, "send", "--to", "device:alice-laptop", "hi alice"]);
    assert.match(await ok([...alice, "inbox"]), /bob\/bob-phone → device: hi alice/);
    // Acked: nothing left for either.
    assert.equal(await ok([...bob, "inbox"]), "");
  });

  it("keeps queued messages and registrations across a restart", async () => {
    await ok([...alice, "send", "--to", "device:bob-phone", "kept across restart"]);
    const stopped = await up.stop("SIGTERM");
    assert.equal(stopped.code, 0, up.output);
    await start();
    assert.match(await ok(["--relay", relay, ...bob, "inbox"]), /kept across restart/);
  });

  it("streams live messages with inbox --follow", async () => {
    const follow = startParley([...bob, "--relay", relay, "inbox", "--follow"]);
    try {
      // The stream is open once a first message arrives; send until one does.
      await ok(["--relay", relay, ...alice, "send", "--to", "identity:bob", "live one"]);
      await follow.waitForOutput(/live one/);
      await ok([...alice, "send", "--to", "identity:bob", "live two"]);
      await follow.waitForOutput(/live two/);
    } finally {
      const r = await follow.stop("SIGINT");
      assert.equal(r.code, 0, follow.output);
    }
  });

  it("runs the admin commands with the admin token", async () => {
    await ok([...alice, "send", "--to", "device:bob-phone", "for stats"]);
    const stats = JSON.parse(await ok([...bob, "relay", "stats", "--json"]));
    assert.ok(stats.depth >= 1);
    assert.equal(stats.identities, 2);
    assert.match(await ok([...bob, "relay", "purge", "--device", "bob-phone"]), /^purged 1 message\(s\)/);
    assert.match(await ok([...bob, "relay", "suspend", "bob-phone"]), /is suspended/);
    const refused = await runParley([...alice, "send", "--to", "device:bob-phone", "nope"]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, "parley: device 'bob-phone' is suspended: nothing is queued for it (FAILED_PRECONDITION)\n");
    assert.match(await ok([...bob, "relay", "resume", "bob-phone"]), /is active/);
  });

  it("reports bad input as one line naming the problem, with a non-zero exit", async () => {
    const cases: Array<[string[], RegExp, number]> = [
      [[...alice, "send", "--to", "person:bob", "x"], /^parley: --to 'person:bob' must look like device:ID or identity:ID\n$/, 2],
      [[...alice, "send", "--to", "device:nobody", "x"], /^parley: unknown device 'nobody' \(NOT_FOUND\)\n$/, 1],
      [[...bob, "relay", "stats"], /^parley: the admin token is missing/, 2],
      [["--profile", join(dir, "empty"), "inbox"], /^parley: no device in profile .*run 'parley device add NAME' first\n$/, 1],
      [["up", "--grpc-port", "http"], /^parley: invalid configuration:\n {2}--grpc-port: expected an integer ≥ 0 ≤ 65535, got 'http'\n$/, 2],
      [["relay", "--database-url", "mysql://x", "--retention", "soon"], /--database-url: expected a URL \(postgres, postgresql\), got \(hidden\)\n {2}--retention: expected a duration/, 2],
    ];
    for (const [args, re, code] of cases) {
      const r = await runParley(args, { PARLEY_ADMIN_TOKEN: "" });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
  });
});
