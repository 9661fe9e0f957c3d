/**
 * The chat CLI against a pool in this test process: `parley rooms`, `post`,
 * `search`, `upload`/`download`, and the interactive `parley chat` driven in
 * a real terminal (tmux send-keys / capture-pane).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ServerEvent } from "../../client/chat.js";
import { ChatPool, roomName } from "../support/chat.js";
import { Harness } from "../support/harness.js";
import { PARLEY_CLI, runParley } from "../support/processes.js";
import { waitFor } from "../support/wait.js";

describe("chat from the command line", () => {
  const h = new Harness();
  const dir = mkdtempSync(join(tmpdir(), "parley-chat-cli-"));
  let pool: ChatPool;
  let channel = "";
  let files = "";
  let aliceId = "";
  const profile = ["--profile", join(dir, "alice")];
  const ok = async (args: string[]) => {
    const r = await runParley([...profile, ...args, ...(args[0] === "identity" || args[0] === "device" ? [] : ["--channel", channel])]);
    assert.equal(r.code, 0, `parley ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    pool = await ChatPool.create(h);
    files = (await pool.files("cli-files")).url;
    channel = (await pool.channel("cli-ch", { fileServiceUrls: [files] })).address;
    aliceId = `alice-${Date.now().toString(36)}`;
    await runParley(["--relay", pool.relay.address, ...profile, "identity", "create", aliceId]);
    await ok(["device", "add", `${aliceId}-laptop`]);
  });
  after(async () => {
    await h.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates rooms, posts, searches, uploads and downloads", async () => {
    const room = roomName("cli");
    assert.match(await ok(["rooms", "create", room, "--topic", "command line"]), new RegExp(`created ${room}\\topen`));
    assert.match(await ok(["rooms", "list"]), new RegExp(`${room}\\topen\\t1 members\\towner\\tcommand line`));
    assert.match(await ok(["post", room, "hello", "from", "the", "shell"]), /posted #1/);
    assert.match(await ok(["search", "shell"]), new RegExp(`${room} #1 .* ${aliceId}: hello from the shell`));
    const src = join(dir, "notes.txt");
    writeFileSync(src, "attached notes\n");
    const up = await ok(["upload", room, src, "--text", "see notes"]);
    const fileId = /as (\S+); posted #2/.exec(up)?.[1];
    assert.ok(fileId, up);
    const out = join(dir, "copy.txt");
    assert.match(await ok(["download", room, fileId!, "-o", out]), /downloaded notes.txt/);
    assert.equal(readFileSync(out, "utf8"), "attached notes\n");
    assert.match(await ok(["history", room]), /#2 .* see notes \[file notes.txt/);
    const bad = await runParley([...profile, "rooms", "join", "no-such-room", "--channel", channel]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /room 'no-such-room' does not exist \(NOT_FOUND\)/);
  });

  it("runs an interactive chat in a terminal: history, live messages, presence, typing", async () => {
    const room = roomName("tty");
    await ok(["rooms", "create", room]);
    await ok(["post", room, "earlier message"]);
    const bob = await pool.user("bob", { channel });
    await bob.chat.join(room);
    const session = `parley-chat-${process.pid}`;
    // A private tmux server, so other tmux users on the machine are untouched.
    const tmux = (...args: string[]) => execFileSync("tmux", ["-L", session, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40", "-e", "PARLEY_LOG_LEVEL=warn", `${process.execPath} ${PARLEY_CLI} ${profile.join(" ")} chat ${room} --channel ${channel}`);
    h.defer(() => {
      try {
        tmux("kill-server");
      } catch {
        // already gone: the chat exited and the server with it
      }
    });
    const screen = () => tmux("capture-pane", "-p", "-t", session);
    await waitFor("history on screen", () => screen().includes("earlier message"), 15_000, 50);
    // Subscribed: the room's online list comes once, on subscribing; bob must arrive after it to be an arrival.
    await waitFor("the online list on screen", () => screen().includes("* online:"), 15_000, 50);

    const events: ServerEvent[] = [];
    const live = bob.chat.live({ onEvent: (e) => void events.push(e) });
    h.defer(() => live.close());
    live.subscribe(room);
    await waitFor("bob shown online", () => new RegExp(`\\* ${bob.id} is online`).test(screen()), 10_000, 50);
    await bob.chat.post(room, "hi alice, from bob");
    await waitFor("bob's message on screen", () => screen().includes(`${bob.id}: hi alice, from bob`), 10_000, 50);

    tmux("send-keys", "-t", session, "hello b");
    await waitFor("bob sees alice typing", () => events.some((e) => e.event?.$case === "typing" && e.event.value.userId === aliceId), 10_000, 50);
    tmux("send-keys", "-t", session, "ob", "Enter");
    await waitFor("bob receives alice's line", () => events.some((e) => e.event?.$case === "message" && e.event.value.text === "hello bob" && e.event.value.author === aliceId), 10_000, 50);
    await waitFor("echoed on alice's screen", () => screen().includes(`${aliceId}: hello bob`), 10_000, 50);

    live.close();
    await waitFor("bob shown offline", () => screen().includes(`* ${bob.id} went offline`), 10_000, 50);
    tmux("send-keys", "-t", session, "/quit", "Enter");
    await waitFor("chat exited", () => {
      try {
        tmux("has-session", "-t", session);
        return false;
      } catch {
        return true;
      }
    }, 10_000, 50);
  });
});
