/**
 * The compliance service killed (SIGKILL) while collecting and again in the
 * middle of writing a batch: after restarts, every event is in exactly one
 * complete batch, none is missing, and nothing half-written is left outside
 * a manifest. And a broken XSLT is reported clearly while the default XML
 * export goes on.
 */
import assert from "node:assert/strict";
import { watch, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ChatPool, roomName } from "../support/chat.js";
import { ComplianceUnderTest, STYLESHEETS, testStream, xsdErrors } from "../support/compliance.js";
import { Harness } from "../support/harness.js";
import { waitFor, withTimeout } from "../support/wait.js";

const ROOMS = 60;
const POSTS_PER_ROOM = 4;

describe("compliance service crashes", () => {
  const h = new Harness();
  const stream = testStream();
  let pool: ChatPool;
  let alice: Awaited<ReturnType<ChatPool["user"]>>;
  let compliance: ComplianceUnderTest;

  before(async () => {
    pool = await ChatPool.create(h);
    const ch = await pool.channel("ch-crash", { complianceStream: stream });
    alice = await pool.user("alice", { channel: ch.address });
    compliance = await ComplianceUnderTest.start(h, {
      stream,
      archiveDir: "",
      args: ["--staging-batch-size", "25", "--staging-batch-delay", "50ms", "--xslt", join(STYLESHEETS, "csv.xsl"), "--xslt-extension", "csv", "--eml", "true"],
    });
  });
  after(() => h.cleanup());

  it("loses and duplicates nothing when killed mid-collection and mid-export", async () => {
    const rooms = Array.from({ length: ROOMS }, () => roomName("crash"));
    const expected = new Set<string>();
    // Posting goes on while the service is killed and restarted.
    const posting = (async () => {
      for (let i = 0; i < rooms.length; i += 10) {
        await Promise.all(rooms.slice(i, i + 10).map(async (room) => {
          await alice.chat.createRoom(room);
          for (let p = 0; p < POSTS_PER_ROOM; p++) {
            const m = await alice.chat.post(room, `message ${p} in ${room}`);
            expected.add(`msg:${room}:${m.eventSeq}`);
          }
        }));
      }
    })();

    await waitFor("some records staged", async () => (await compliance.admin.status()).stagedRecords >= 50, 60_000);
    await compliance.kill();
    await compliance.restart();
    await posting;
    const total = ROOMS * (1 + POSTS_PER_ROOM);
    await waitFor(`all ${total} records staged`, async () => (await compliance.admin.status()).stagedRecords === total, 60_000);

    // Kill it as soon as the first conversation file of the batch is in place.
    const firstFile = new Promise<void>((resolve) => {
      const w = watch(compliance.outputDir, (_e, name) => {
        if (name && !name.startsWith(".") && name.endsWith(".xml")) {
          compliance.proc.child.kill("SIGKILL");
          w.close();
          resolve();
        }
      });
    });
    const exporting = compliance.admin.exportNow().catch((err: Error) => err);
    await withTimeout("the first file of the batch", firstFile, 60_000);
    await compliance.proc.exited;
    assert.ok((await exporting) instanceof Error, "the export was cut off");
    const partial = compliance.files().filter((f) => !f.startsWith("."));
    assert.ok(partial.length >= 1, "some files of the batch were written");
    assert.equal(compliance.manifests().length, 0, "the batch was not complete when the service died");

    // At start the service writes the same batch again, whole.
    await compliance.restart();
    const batch = partial[0]!.slice(0, 28);
    await waitFor("the interrupted batch's manifest", () => compliance.manifests().some((m) => m.batch === batch), 120_000);
    await compliance.proc.waitForOutput(new RegExp(`"batchId":"${batch}".*writing again a batch`));
    assert.equal((await compliance.admin.exportNow()).batchId, "", "nothing is left staged");

    const listed = new Set(compliance.manifests().flatMap((m) => [...m.files.map((f) => f.name), `${m.batch}.manifest.json`]));
    assert.deepEqual(compliance.files().filter((f) => !f.startsWith(".") && !listed.has(f)), [], "every file belongs to a complete batch");
    const seen: string[] = [];
    let created = 0;
    for (const m of compliance.manifests()) {
      for (const f of m.files.filter((x) => x.kind === "xml")) {
        const xml = compliance.read(f.name);
        assert.equal(xsdErrors(xml), "", f.name);
        seen.push(...[...xml.matchAll(/<message [^>]* id="(msg:[^"]+)"/g)].map((x) => x[1]!));
        created += xml.match(/<roomChange event="created"/g)?.length ?? 0;
      }
    }
    assert.equal(seen.length, expected.size, "each message once");
    assert.deepEqual(new Set(seen), expected);
    assert.equal(created, ROOMS, "each room creation once");
    const kinds = compliance.manifests().flatMap((m) => m.files.map((f) => f.kind));
    assert.equal(kinds.filter((k) => k === "xml").length, ROOMS);
    assert.equal(kinds.filter((k) => k === "xslt").length, ROOMS);
    assert.equal(kinds.filter((k) => k === "eml").length, ROOMS);
  });
});

describe("compliance service with a broken stylesheet", () => {
  const h = new Harness();
  const stream = testStream();
  after(() => h.cleanup());

  it("says what is wrong with it and still writes the default XML", async () => {
    const pool = await ChatPool.create(h);
    const ch = await pool.channel("ch-xslt", { complianceStream: stream });
    const alice = await pool.user("alice", { channel: ch.address });
    const broken = join(pool.storageDir, "broken.xsl");
    writeFileSync(broken, `<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"><xsl:template match="/"><xsl:value-of select="concat(("/></xsl:template></xsl:stylesheet>`);
    const compliance = await ComplianceUnderTest.start(h, { stream, archiveDir: "", args: ["--xslt", broken] });
    const status = await compliance.admin.status();
    assert.match(status.lastError, /^xslt: stylesheet .*broken\.xsl failed \(xsltproc exit \d+\): .*; the default XML export goes on without it$/);
    assert.ok(status.errors >= 1);

    const room = roomName("xslt");
    await alice.chat.createRoom(room);
    await alice.chat.post(room, "still archived");
    await waitFor("2 staged", async () => (await compliance.admin.status()).stagedRecords >= 2, 15_000);
    const r = await compliance.admin.exportNow();
    assert.deepEqual(r.files.filter((f) => !f.endsWith(".manifest.json")), [`${r.batchId}_${room}.xml`]);
    assert.match(compliance.read(`${r.batchId}_${room}.xml`), /<text>still archived<\/text>/);
    const after = await compliance.admin.status();
    assert.ok(after.errors > status.errors, "the failed transform is counted");
    assert.match(after.lastError, new RegExp(`^xslt: room ${room}: stylesheet`));
    const metrics = await (await fetch(`http://127.0.0.1:${compliance.httpPort}/metrics`)).text();
    assert.match(metrics, /^parley_compliance_errors_total\{stage="xslt"\} [2-9]/m);
  });
});
