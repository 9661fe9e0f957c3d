/**
 * The compliance service as a process on the real Postgres and NATS, fed by
 * real channel and file services: one conversation with posts, edits,
 * deletes, joins/leaves, a topic change and uploads comes out as exactly
 * the expected XML (valid against the XSD), CSV and Actiance-style XML
 * through the shipped stylesheets, and an EML; the manifest's hashes hold;
 * a file deleted before the export is still archived; pickup removes a batch.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ParleyClientError } from "../../client/errors.js";
import { uploadFile } from "../../client/files.js";
import { ComplianceAdmin } from "../../client/compliance.js";
import { ChatPool, roomName } from "../support/chat.js";
import { ComplianceUnderTest, STYLESHEETS, testStream, xsdErrors } from "../support/compliance.js";
import { Harness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";


describe("compliance export", () => {
  const h = new Harness();
  const stream = testStream();
  const archiveDir = mkdtempSync(join(tmpdir(), "parley-compliance-archive-"));
  const work = mkdtempSync(join(tmpdir(), "parley-compliance-src-"));
  let pool: ChatPool;
  let filesUrl: string;
  let compliance: ComplianceUnderTest;
  let alice: Awaited<ReturnType<ChatPool["user"]>>;
  let bob: Awaited<ReturnType<ChatPool["user"]>>;
  let carol: Awaited<ReturnType<ChatPool["user"]>>;

  before(async () => {
    h.defer(() => rmSync(archiveDir, { recursive: true, force: true }));
    h.defer(() => rmSync(work, { recursive: true, force: true }));
    pool = await ChatPool.create(h);
    filesUrl = (await pool.files("files-c", undefined, 0, { complianceStream: stream, complianceArchiveDir: archiveDir })).url;
    const ch = await pool.channel("ch-c", { complianceStream: stream, fileServiceUrls: [filesUrl] });
    alice = await pool.user("alice", { channel: ch.address });
    bob = await pool.user("bob", { channel: ch.address });
    carol = await pool.user("carol", { channel: ch.address });
    compliance = await ComplianceUnderTest.start(h, { stream, archiveDir, args: ["--xslt", join(STYLESHEETS, "csv.xsl"), "--xslt-extension", "csv", "--eml", "true"] });
  });
  after(() => h.cleanup());

  it("writes one conversation as the exact XML, CSV, Actiance XML and EML, with the attachments and a manifest", async () => {
    const room = roomName("audit");
    const hard = "Tom & Jerry <b>\"bold\"</b> 'x' > 😀 𝄞";
    const control = "bell\u0007 and form feed\u000c end";
    await alice.chat.createRoom(room, { topic: "Q&A <launch>" });
    await bob.chat.join(room);
    await carol.chat.join(room);
    const m1 = await alice.chat.post(room, hard);
    await bob.chat.post(room, `@${alice.id} reply\r\nsecond line`, { replyTo: Number(m1.seq) });
    await alice.chat.edit(room, Number(m1.seq), "edited ✓");
    await carol.chat.post(room, control);
    await carol.chat.leave(room);
    await alice.chat.updateRoom(room, { topic: "after <the> launch" });

    const keptBody = randomBytes(5000);
    const keptPath = join(work, "plan ü 𝄞 <v2>&.txt");
    writeFileSync(keptPath, keptBody);
    const kept = await uploadFile(alice.chat, room, keptPath, { contentType: "text/plain", filesUrl });
    await alice.chat.post(room, "the plan", { attachments: [kept] });
    const goneBody = randomBytes(3000);
    const gonePath = join(work, "secret.bin");
    writeFileSync(gonePath, goneBody);
    const gone = await uploadFile(bob.chat, room, gonePath, { contentType: "application/octet-stream", filesUrl });
    const m5 = await bob.chat.post(room, "oops", { attachments: [gone] });
    await bob.chat.delete(room, Number(m5.seq));
    // The message's file leaves shared storage; the archived copy must stay.
    await waitFor("the deleted message's file to leave storage", () => !existsSync(join(pool.storageDir, "objects", room, gone.fileId)), 15_000);

    // 1 created + 2 joined + 2 posts + edit + post + left + updated + 2 uploads + 2 posts + delete = 14
    await waitFor("14 staged records", async () => (await compliance.admin.status()).stagedRecords >= 14, 15_000);
    const result = await compliance.admin.exportNow();
    assert.equal(result.conversations, 1);
    assert.equal(result.records, 14);
    const batch = result.batchId;
    assert.match(batch, /^\d{8}T\d{9}Z-[0-9a-f]{8}$/);

    const xml = compliance.read(`${batch}_${room}.xml`);
    assert.equal(xsdErrors(xml), "", "the export is valid against the XSD");
    const keptName = `${batch}_${room}_${kept.fileId}_plan_u_v2_.txt`;
    const goneName = `${batch}_${room}_${gone.fileId}_secret.bin`;
    const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
    const names = new Map([[alice.id, "ALICE"], [bob.id, "BOB"], [carol.id, "CAROL"], [room, "ROOM"], [batch, "BATCH"], [kept.fileId, "KEPT"], [gone.fileId, "GONE"]]);
    const normal = (s: string) => {
      let out = s.replace(/ (at|start|end|createdAt|editedAt)="[^"]+"/g, ' $1="T"').replace(/ id="(mem|room):[^"]+"/g, ' id="$1:*"').replace(/ messageId="[^"]+"/g, ' messageId="M"');
      for (const [from, to] of names) out = out.split(from).join(to);
      return out;
    };
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    assert.equal(normal(xml), `<?xml version="1.0" encoding="UTF-8"?>
<conversation xmlns="urn:parley:compliance:1" batch="BATCH" room="ROOM" start="T" end="T" events="14">
  <room type="open" archived="false" createdBy="ALICE" createdAt="T">
    <topic>after &lt;the&gt; launch</topic>
    <description></description>
  </room>
  <participants when="start"/>
  <events>
    <roomChange event="created" at="T" id="room:*" actor="ALICE" type="open" archived="false" createdBy="ALICE" createdAt="T">
      <topic>Q&amp;A &lt;launch&gt;</topic>
      <description></description>
    </roomChange>
    <membership event="joined" at="T" id="mem:*" actor="BOB" user="BOB" role="member"/>
    <membership event="joined" at="T" id="mem:*" actor="CAROL" user="CAROL" role="member"/>
    <message event="posted" at="T" id="msg:ROOM:1" actor="ALICE" messageId="M" seq="1" eventSeq="1" author="ALICE" createdAt="T">
      <text>Tom &amp; Jerry &lt;b&gt;"bold"&lt;/b&gt; 'x' &gt; 😀 𝄞</text>
    </message>
    <message event="posted" at="T" id="msg:ROOM:2" actor="BOB" messageId="M" seq="2" eventSeq="2" author="BOB" replyTo="1" createdAt="T">
      <text>@ALICE reply&#13;
second line</text>
      <mention user="ALICE"/>
    </message>
    <message event="edited" at="T" id="msg:ROOM:3" actor="ALICE" messageId="M" seq="1" eventSeq="3" author="ALICE" createdAt="T" editedAt="T">
      <text>edited ✓</text>
    </message>
    <message event="posted" at="T" id="msg:ROOM:4" actor="CAROL" messageId="M" seq="4" eventSeq="4" author="CAROL" createdAt="T">
      <text encoding="base64">${b64(control)}</text>
    </message>
    <membership event="left" at="T" id="mem:*" actor="CAROL" user="CAROL" role="member"/>
    <roomChange event="updated" at="T" id="room:*" actor="ALICE" type="open" archived="false" createdBy="ALICE" createdAt="T">
      <topic>after &lt;the&gt; launch</topic>
      <description></description>
    </roomChange>
    <file event="uploaded" at="T" id="file:ROOM:KEPT" actor="ALICE" fileId="KEPT" contentType="text/plain" size="5000" sha256="${sha(keptBody)}" uploadedBy="ALICE" archivedAs="${normal(keptName)}">
      <name>plan ü 𝄞 &lt;v2&gt;&amp;.txt</name>
    </file>
    <message event="posted" at="T" id="msg:ROOM:5" actor="ALICE" messageId="M" seq="5" eventSeq="5" author="ALICE" createdAt="T">
      <text>the plan</text>
      <attachment fileId="KEPT" contentType="text/plain" size="5000" sha256="${sha(keptBody)}">
        <name>plan ü 𝄞 &lt;v2&gt;&amp;.txt</name>
      </attachment>
    </message>
    <file event="uploaded" at="T" id="file:ROOM:GONE" actor="BOB" fileId="GONE" contentType="application/octet-stream" size="3000" sha256="${sha(goneBody)}" uploadedBy="BOB" archivedAs="${normal(goneName)}">
      <name>secret.bin</name>
    </file>
    <message event="posted" at="T" id="msg:ROOM:6" actor="BOB" messageId="M" seq="6" eventSeq="6" author="BOB" createdAt="T">
      <text>oops</text>
      <attachment fileId="GONE" contentType="application/octet-stream" size="3000" sha256="${sha(goneBody)}">
        <name>secret.bin</name>
      </attachment>
    </message>
    <message event="deleted" at="T" id="msg:ROOM:7" actor="BOB" messageId="M" seq="6" eventSeq="7" author="BOB" createdAt="T" deleted="true">
      <text></text>
      <attachment fileId="GONE" contentType="application/octet-stream" size="3000" sha256="${sha(goneBody)}">
        <name>secret.bin</name>
      </attachment>
    </message>
  </events>
  <participants when="end">
    <participant user="ALICE" role="owner"/>
    <participant user="BOB" role="member"/>
  </participants>
</conversation>
`);

    // The attachments, byte for byte, including the one whose message was deleted.
    assert.deepEqual(readFileSync(join(compliance.outputDir, keptName)), keptBody);
    assert.deepEqual(readFileSync(join(compliance.outputDir, goneName)), goneBody);
    assert.equal(existsSync(join(archiveDir, room, kept.fileId)), false, "the archive area is emptied once the batch is durable");

    // CSV through the shipped stylesheet (written by the service) …
    const csv = compliance.read(`${batch}_${room}.xslt.csv`).split("\r\n");
    assert.equal(csv[0], `"time","room","kind","event","actor","user","seq","text_encoding","text"`);
    assert.equal(csv.filter((l) => /^"\d{4}-\d\d-\d\dT/.test(l)).length, 14, "one row per event");
    assert.ok(csv[4]!.endsWith(`"message","posted","${alice.id}","${alice.id}","1","","Tom & Jerry <b>""bold""</b> 'x' > 😀 𝄞"`), csv[4]);
    assert.ok(csv[5]!.endsWith(`"2","","@${alice.id} reply`) && csv[6] === `second line"`, "a line break inside a quoted field");
    assert.ok(csv.some((l) => l.endsWith(`"message","posted","${carol.id}","${carol.id}","4","base64","${b64(control)}"`)));
    // … and the Actiance-style one, run here on the same export.
    const actiance = execFileSync("xsltproc", ["--nonet", join(STYLESHEETS, "actiance.xsl"), "-"], { input: xml }).toString();
    assert.match(actiance, new RegExp(`<RoomID>${room}</RoomID>`));
    assert.equal(actiance.match(/<Message Action="Post">/g)?.length, 5);
    assert.equal(actiance.match(/<Message Action="Edit">/g)?.length, 1);
    assert.equal(actiance.match(/<Message Action="Delete">/g)?.length, 1);
    assert.equal(actiance.match(/<ParticipantEntered>/g)?.length, 2);
    assert.equal(actiance.match(/<ParticipantLeft>/g)?.length, 1);
    assert.equal(actiance.match(/<Presence>AtEnd<\/Presence>/g)?.length, 2);
    assert.match(actiance, /<Content>Tom &amp; Jerry &lt;b&gt;"bold"&lt;\/b&gt; 'x' &gt; 😀 𝄞<\/Content>/);
    assert.match(actiance, /<FileName>plan ü 𝄞 &lt;v2&gt;&amp;.txt<\/FileName>/);

    // EML: headers, a transcript, the XML and both attachments as base64 parts.
    const eml = compliance.read(`${batch}_${room}.eml`);
    const [head, ...rest] = eml.split("\r\n\r\n");
    assert.match(head!, new RegExp(`^Message-ID: <${batch}\\.${room}@parley\\.invalid>$`, "m"));
    assert.match(head!, /^Content-Type: multipart\/mixed; boundary="(=_parley_[0-9a-f]+)"$/m);
    const boundary = /boundary="([^"]+)"/.exec(head!)![1]!;
    const parts = rest.join("\r\n\r\n").split(`--${boundary}`).slice(1, -1);
    assert.equal(parts.length, 4, "transcript, XML, two attachments");
    const body = (p: string) => Buffer.from(p.split("\r\n\r\n")[1]!.replace(/\r\n/g, ""), "base64");
    assert.match(body(parts[0]!).toString("utf8"), new RegExp(`${alice.id}: Tom & Jerry`));
    assert.equal(body(parts[1]!).toString("utf8"), xml);
    assert.deepEqual(body(parts[2]!), keptBody);
    assert.match(parts[2]!, /filename\*=UTF-8''plan%20%C3%BC%20%F0%9D%84%9E%20%3Cv2%3E%26\.txt/);
    assert.deepEqual(body(parts[3]!), goneBody);
    assert.ok(eml.split("\r\n").every((l) => l.length <= 998), "no line over RFC 5322's limit");

    // The manifest, written last, names every file with its SHA-256.
    const [manifest] = compliance.manifests().filter((m) => m.batch === batch);
    assert.deepEqual(manifest!.files.map((f) => f.name).sort(), [`${batch}_${room}.eml`, `${batch}_${room}.xml`, `${batch}_${room}.xslt.csv`, goneName, keptName].sort());
    for (const f of manifest!.files) assert.equal(f.sha256, sha(readFileSync(join(compliance.outputDir, f.name))), f.name);

    const status = await compliance.admin.status();
    assert.equal(status.stagedRecords, 0);
    assert.equal(status.lastBatchId, batch);
    assert.equal(status.batchesAwaitingPickup, 1);
    assert.equal(status.errors, 0, status.lastError);
    const metrics = await (await fetch(`http://127.0.0.1:${compliance.httpPort}/metrics`)).text();
    assert.match(metrics, /^parley_compliance_files_written_total\{kind="xml"\} 1$/m);
    assert.match(metrics, /^parley_compliance_files_written_total\{kind="attachment"\} 2$/m);
  });

  it("carries who is present into the next batch, and removes batches once picked up (marker file or API)", async () => {
    const room = roomName("next");
    await alice.chat.createRoom(room);
    await bob.chat.join(room);
    await waitFor("2 staged", async () => (await compliance.admin.status()).stagedRecords >= 2, 15_000);
    const first = await compliance.admin.exportNow();
    await bob.chat.post(room, "later");
    await waitFor("1 staged", async () => (await compliance.admin.status()).stagedRecords >= 1, 15_000);
    const second = await compliance.admin.exportNow();
    const xml = compliance.read(`${second.batchId}_${room}.xml`);
    assert.equal(xsdErrors(xml), "");
    const start = /<participants when="start">([\s\S]*?)<\/participants>/.exec(xml)![1]!;
    assert.match(start, new RegExp(`<participant user="${alice.id}" role="owner"/>`));
    assert.match(start, new RegExp(`<participant user="${bob.id}" role="member"/>`));

    // Marker file: gone at the next clean (every export cleans first).
    writeFileSync(join(compliance.outputDir, `${first.batchId}.picked-up`), "");
    await compliance.admin.exportNow();
    assert.equal(compliance.files().some((f) => f.startsWith(first.batchId)), false, "every file of the picked-up batch is gone");
    // API.
    const ack = await compliance.admin.acknowledgePickup(second.batchId);
    assert.equal(ack.filesRemoved, 3, "the XML, the CSV and the EML");
    assert.equal(compliance.files().some((f) => f.startsWith(second.batchId)), false);
  });

  it("refuses bad admin calls precisely and changes nothing", async () => {
    const before = compliance.files();
    await assert.rejects(compliance.admin.acknowledgePickup("../../etc"), (e: ParleyClientError) => e.codeName === "INVALID_ARGUMENT" && /not a batch id/.test(e.message));
    await assert.rejects(compliance.admin.acknowledgePickup("20200101T000000000Z-00000000"), (e: ParleyClientError) => e.codeName === "NOT_FOUND");
    const wrong = ComplianceAdmin.create(compliance.address, "wrong-token");
    await assert.rejects(wrong.status(), (e: ParleyClientError) => e.codeName === "UNAUTHENTICATED");
    wrong.close();
    assert.deepEqual(compliance.files(), before);
  });
});
