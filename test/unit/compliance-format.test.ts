/** The compliance export's pure parts: presence across a conversation, XML escaping, EML headers, batch names, unparsable events. */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { ComplianceRecord } from "../../services/common/compliance.js";
import { toStaged, UNPARSED_ROOM } from "../../services/compliance/collector.js";
import { buildConversation } from "../../services/compliance/conversation.js";
import { encodeHeader } from "../../services/compliance/eml.js";
import { batchTimeMs, newBatchId, OutputDir, safeName } from "../../services/compliance/output.js";
import type { StagedRecord } from "../../services/compliance/store.js";
import { attr, conversationXml, textElement } from "../../services/compliance/xml.js";

const T = Date.UTC(2026, 10, 22, 8, 0, 0);
let seq = 0;
const rec = (kind: string, extra: Partial<ComplianceRecord> = {}, atMs = T + seq): StagedRecord => ({
  record: { v: 1, id: `e${++seq}`, source: "channel/a", kind, roomId: "r", actor: "alice", atMs, ...extra } as ComplianceRecord,
  streamSeq: seq,
});
const member = (userId: string, role = 1) => ({ member: { userId, role } }) as Partial<ComplianceRecord>;
const post = (author: string) => ({ actor: author, message: { roomId: "r", seq: 1, eventSeq: 1, messageId: "m", author, text: "hi", replyTo: 0, mentions: [], attachments: [], createdAtMs: T, editedAtMs: 0, deleted: false } }) as Partial<ComplianceRecord>;

describe("conversation presence", () => {
  it("moves from the previous batch's end through joins, role changes, leaves and kicks", () => {
    const { conversation, after } = buildConversation("b", "r", { participants: [{ userId: "alice", role: 3 }, { userId: "bob", role: 1 }] }, [
      rec("membership.joined", member("carol")),
      rec("membership.role", member("bob", 2)),
      rec("membership.kicked", member("carol", 0)),
      rec("membership.left", { actor: "alice", ...member("alice", 0) }),
      rec("membership.invited", member("dave")),
    ]);
    assert.deepEqual(conversation.atStart, [{ userId: "alice", role: 3 }, { userId: "bob", role: 1 }]);
    assert.deepEqual(conversation.atEnd, [{ userId: "bob", role: 2 }]);
    assert.deepEqual(after.participants, conversation.atEnd);
  });

  it("counts a poster never seen joining as present from the start, and a creator from the creation", () => {
    const { conversation } = buildConversation("b", "r", { participants: [] }, [
      rec("room.created", { actor: "owner", room: { roomId: "r", type: 1, topic: "t" } as never }),
      rec("message.posted", post("old-member")),
      rec("membership.joined", member("newbie")),
      rec("message.posted", post("newbie")),
    ]);
    assert.deepEqual(conversation.atStart, [{ userId: "old-member", role: 1 }]);
    assert.deepEqual(conversation.atEnd.map((p) => p.userId), ["newbie", "old-member", "owner"]);
    assert.equal(conversation.room?.topic, "t");
  });

  it("orders events by time, then by stream position", () => {
    const late = rec("membership.joined", member("x"), T + 100);
    const early = rec("membership.joined", member("y"), T + 50);
    const tie = { ...rec("membership.joined", member("z"), T + 50), streamSeq: early.streamSeq - 1 };
    const { conversation } = buildConversation("b", "r", { participants: [] }, [late, early, tie]);
    assert.deepEqual(conversation.events.map((e) => e.member?.userId), ["z", "y", "x"]);
    assert.equal(conversation.startMs, T + 50);
    assert.equal(conversation.endMs, T + 100);
  });
});

describe("XML text", () => {
  it("escapes markup and keeps carriage returns as references", () => {
    assert.equal(textElement("text", `a & b < c > "d" 'e'\r\n`, ""), `<text>a &amp; b &lt; c &gt; "d" 'e'&#13;\n</text>\n`);
  });

  it("writes text XML cannot carry as base64, losing nothing", () => {
    for (const s of ["bell\u0007", "nul\u0000", "\uFFFE", "\uFFFF", "esc\u001b[0m"]) {
      const el = textElement("text", s, "");
      const m = /^<text encoding="base64">([A-Za-z0-9+/=]*)<\/text>\n$/.exec(el);
      assert.ok(m, el);
      assert.equal(Buffer.from(m[1]!, "base64").toString("utf8"), s);
    }
    assert.equal(textElement("text", "tab\tand 😀 𝄞", ""), "<text>tab\tand 😀 𝄞</text>\n", "tabs and astral characters are plain text");
  });

  it("never lets an attribute break out, whatever the value", () => {
    assert.equal(attr(`x" onload="y`), "x&quot; onload=&quot;y");
    assert.equal(attr("a\tb\nc\rd<&"), "a&#9;b&#10;c&#13;d&lt;&amp;");
    assert.equal(attr("nul\u0000"), "nul\uFFFD");
  });

  it("an event kind this version does not know is kept whole", () => {
    const { conversation } = buildConversation(newBatchId(T), "r", { participants: [] }, [rec("poll.created", { actor: "alice" })]);
    const xml = conversationXml(conversation);
    assert.match(xml, /<other event="created" at="[^"]+" id="e\d+" actor="alice" kind="poll\.created">\n\s+<json>\{.*"kind":"poll\.created".*\}<\/json>/);
  });
});

describe("batch names and file names", () => {
  it("start with the UTC time, sort by time, and parse back", () => {
    const a = newBatchId(T);
    const b = newBatchId(T + 1);
    assert.match(a, /^20261122T080000000Z-[0-9a-f]{8}$/);
    assert.ok(a < b);
    assert.equal(batchTimeMs(a), T);
  });

  it("makes any file name safe for every file system", () => {
    assert.equal(safeName("../../etc/passwd"), "etc_passwd");
    assert.equal(safeName("plan ü 𝄞 <v2>&.txt"), "plan_u_v2_.txt");
    assert.equal(safeName("..."), "file");
    assert.equal(safeName("x".repeat(100)).length, 64);
  });
});

describe("EML headers", () => {
  it("encode non-ASCII text as RFC 2047 words of at most 75 characters", () => {
    assert.equal(encodeHeader("plain subject"), "plain subject");
    const enc = encodeHeader("Raum Über ".repeat(8) + "😀");
    const words = enc.split("\r\n ");
    assert.ok(words.length > 1);
    for (const w of words) {
      assert.match(w, /^=\?UTF-8\?B\?[A-Za-z0-9+/=]+\?=$/);
      assert.ok(w.length <= 75, w);
    }
    const decoded = words.map((w) => Buffer.from(w.slice(10, -2), "base64").toString("utf8")).join("");
    assert.equal(decoded, "Raum Über ".repeat(8) + "😀");
  });
});

describe("collection of an event that is not a record", () => {
  it("is kept raw in the _unparsed conversation, not dropped", () => {
    const bad = toStaged({ data: new TextEncoder().encode("{not json"), seq: 42, msgId: "", subject: "parley.compliance.chat.message.posted" }, T);
    assert.equal(bad.valid, false);
    assert.equal(bad.staged.record.roomId, UNPARSED_ROOM);
    assert.equal(bad.staged.record.id, "unparsed:42");
    assert.equal((bad.staged.record as unknown as { raw: string }).raw, "{not json");
    const good = toStaged({ data: new TextEncoder().encode(JSON.stringify({ v: 1, id: "x", roomId: "r", kind: "message.posted", atMs: T, actor: "a" })), seq: 1, msgId: "x", subject: "s" }, T);
    assert.equal(good.valid, true);
  });
});

describe("the output directory's cleaning", () => {
  it("removes picked-up batches and batches past the retention, whole, and stale temp files; keeps the rest", async () => {
    const dir = mkdtempSync(join(tmpdir(), "parley-out-"));
    try {
      const out = new OutputDir(dir);
      const day = 86_400_000;
      const now = T + 30 * day;
      const write = async (batch: string) => {
        const f = await out.write(`${batch}_room.xml`, "<x/>", { kind: "xml", room: "room" });
        await out.writeManifest(batch, [f], now);
      };
      const old = newBatchId(now - 8 * day);
      const picked = newBatchId(now - day);
      const fresh = newBatchId(now - day);
      for (const b of [old, picked, fresh]) await write(b);
      writeFileSync(join(dir, `${picked}.picked-up`), "");
      writeFileSync(join(dir, ".stale.tmp"), "");
      utimesSync(join(dir, ".stale.tmp"), new Date(now - 2 * 3_600_000), new Date(now - 2 * 3_600_000));
      writeFileSync(join(dir, ".recent.tmp"), "");
      utimesSync(join(dir, ".recent.tmp"), new Date(now), new Date(now));

      const { batches } = await out.clean(now, 7 * day);
      assert.deepEqual(batches.sort(), [old, picked].sort());
      assert.deepEqual(readdirSync(dir).sort(), [".recent.tmp", `${fresh}.manifest.json`, `${fresh}_room.xml`].sort());
      assert.deepEqual(await out.batches(), [fresh]);
      await assert.rejects(out.removeBatch("../x"), /not a batch id/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
