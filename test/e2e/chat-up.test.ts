/**
 * `parley up` runs the chat pool too: rooms, posts, search and attachments
 * through its one gRPC port and HTTP port; and the compliance service, which
 * archives the conversation on `parley compliance export`.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runParley, startParley, type Proc } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

describe("parley up with chat", () => {
  const dir = mkdtempSync(join(tmpdir(), "parley-up-chat-"));
  chmodSync(dir, 0o755); // the embedded Postgres runs as an unprivileged user when we are root
  let up: Proc;
  let address = "";
  let adminToken = "";
  const alice = ["--profile", join(dir, "alice")];
  const bob = ["--profile", join(dir, "bob")];
  const ok = async (args: string[]) => {
    const r = await runParley(args);
    assert.equal(r.code, 0, `parley ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    up = startParley(["up", "--data-dir", join(dir, "data"), "--grpc-port", "0", "--http-port", "0"]);
    address = (await up.waitForOutput(/gRPC\s+(\S+)/, 90_000))[1]!;
    adminToken = (await up.waitForOutput(/PARLEY_ADMIN_TOKEN=(\S+)/))[1]!;
  });
  after(async () => {
    await up?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves rooms, messages, search and files with no extra flags", async () => {
    await ok(["--relay", address, ...alice, "identity", "create", "alice"]);
    await ok([...alice, "device", "add", "alice-laptop"]);
    await ok(["--relay", address, ...bob, "identity", "create", "bob"]);
    await ok([...bob, "device", "add", "bob-phone"]);
    await ok([...alice, "rooms", "create", "general", "--topic", "all things"]);
    await ok([...bob, "rooms", "join", "general"]);
    await ok([...alice, "post", "general", "welcome @bob"]);
    assert.match(await ok([...bob, "rooms", "unread"]), /general\t1 unread\t1 mentions/);
    assert.match(await ok([...bob, "search", "welcome"]), /general #1 .* alice: welcome @bob/);
    const src = join(dir, "hello.txt");
    writeFileSync(src, "hello file\n");
    const fileId = /as (\S+); posted/.exec(await ok([...alice, "upload", "general", src]))![1]!;
    await ok([...bob, "download", "general", fileId, "-o", join(dir, "got.txt")]);
    assert.equal(readFileSync(join(dir, "got.txt"), "utf8"), "hello file\n");
  });

  it("archives the conversation and its attachment for compliance", async () => {
    const admin = async (args: string[]) => {
      const r = await runParley([...alice, "compliance", ...args], { PARLEY_ADMIN_TOKEN: adminToken });
      assert.equal(r.code, 0, `parley compliance ${args.join(" ")} failed: ${r.stderr}`);
      return r.stdout;
    };
    await waitFor("the conversation staged", async () => /staged ([1-9]\d*) records/.test(await admin(["status"])), 15_000);
    const out = await admin(["export"]);
    const batch = /^batch (\S+): 1 conversation\(s\)/m.exec(out)?.[1];
    assert.ok(batch, out);
    const outDir = join(dir, "data", "compliance", "out");
    const xml = readFileSync(join(outDir, `${batch}_general.xml`), "utf8");
    assert.match(xml, /<text>welcome @bob<\/text>/);
    const archived = /archivedAs="([^"]+)"/.exec(xml)![1]!;
    assert.equal(readFileSync(join(outDir, archived), "utf8"), "hello file\n");
    assert.match(await admin(["status"]), new RegExp(`last export .* \\(batch ${batch}\\); 1 batch\\(es\\) awaiting pickup`));
    assert.match(await admin(["ack", batch!]), new RegExp(`batch ${batch} removed`));
    const r = await runParley([...alice, "compliance", "ack", "not-a-batch"], { PARLEY_ADMIN_TOKEN: adminToken });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^parley: batch_id 'not-a-batch' is not a batch id .*\(INVALID_ARGUMENT\)\n$/);
  });
});
