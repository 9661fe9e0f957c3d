/** `parley workspace …` against `parley up`: create, invite, join, change, sync, show, status. */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runParley, startParley, type Proc } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

describe("workspace sync from the command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "parley-ws-"));
  chmodSync(dir, 0o755); // the embedded Postgres runs unprivileged when we are root
  let up: Proc;
  const alice = () => ["--profile", join(dir, "alice")];
  const bob = () => ["--profile", join(dir, "bob")];
  const ok = async (args: string[]) => {
    const r = await runParley(args);
    assert.equal(r.code, 0, `parley ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    up = startParley(["up", "--data-dir", join(dir, "data"), "--grpc-port", "0", "--http-port", "0"]);
    const relay = (await up.waitForOutput(/gRPC\s+(\S+)/, 90_000))[1]!;
    await ok(["--relay", relay, ...alice(), "identity", "create", "alice"]);
    await ok([...alice(), "device", "add", "alice-laptop"]);
    await ok(["--relay", relay, ...bob(), "identity", "create", "bob"]);
    await ok([...bob(), "device", "add", "bob-desk"]);
  });
  after(async () => {
    await up?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("shares changes between a manager and an invited participant, both ways", async () => {
    assert.match(await ok([...alice(), "workspace", "create", "team", "--name", "Team Task"]), /created workspace 'team'/);
    const invitation = join(dir, "bob.invite.json");
    await ok([...alice(), "workspace", "invite", "team", "bob", "--role", "participant", "--out", invitation]);
    assert.match(await ok([...bob(), "workspace", "join", invitation]), /joined workspace 'team' as participant/);

    assert.match(await ok([...alice(), "workspace", "change", "team", "todo/1", "write the spec"]), /change \d+ made/);
    // Alice stays online, so Bob can fetch from her whatever reached him out of order.
    const online = startParley([...alice(), "workspace", "sync", "--follow"]);
    try {
      // "synchronised" only means no known gap: sync until Alice's change is here.
      await waitFor("alice's change at bob", async () => {
        const synced = await ok([...bob(), "workspace", "sync"]);
        const shown = await runParley([...bob(), "workspace", "show", "team", "todo/1"]);
        return /team: synchronised/.test(synced) && shown.code === 0 ? shown.stdout : undefined;
      }, 60_000, 200);
    } finally {
      await online.stop("SIGINT");
    }
    assert.equal(await ok([...bob(), "workspace", "show", "team", "todo/1"]), "todo/1\twrite the spec\n");

    await ok([...bob(), "workspace", "change", "team", "todo/2", "review it"]);
    await ok([...bob(), "workspace", "sync"]);
    const content = await waitFor("bob's change at alice", async () => {
      await ok([...alice(), "workspace", "sync"]);
      const shown = JSON.parse(await ok([...alice(), "workspace", "show", "team", "--json"]));
      return shown["todo/2"] ? shown : undefined;
    }, 60_000, 200);
    assert.deepEqual(content, { "todo/1": "write the spec", "todo/2": "review it" });

    const status = JSON.parse(await ok([...alice(), "workspace", "status", "team", "--json"]));
    assert.deepEqual(status.members.map((m: { memberId: string; role: string }) => [m.memberId, m.role]).sort(), [["alice", "manager"], ["bob", "participant"]]);
    assert.deepEqual(status.missing, []);
    assert.deepEqual(JSON.parse(await ok([...alice(), "workspace", "alerts", "team"])), []);
  });

  it("names the problem on bad input", async () => {
    const r = await runParley([...bob(), "workspace", "show", "team", "nope"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "parley: workspace 'team' has no item 'nope' here\n");
    const bad = await runParley([...alice(), "workspace", "invite", "team", "carol", "--role", "boss"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /^parley: .*role/);
  });
});
