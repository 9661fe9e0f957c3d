/** `parley up` runs the chat pool too: rooms, posts, search and attachments through its one gRPC port and HTTP port. */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runParley, startParley, type Proc } from "../support/processes.js";

describe("parley up with chat", () => {
  const dir = mkdtempSync(join(tmpdir(), "parley-up-chat-"));
  chmodSync(dir, 0o755); // the embedded Postgres runs as an unprivileged user when we are root
  let up: Proc;
  let address = "";
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
});
