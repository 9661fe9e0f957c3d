/** Two file instances on one storage directory, tokens from a channel instance: transfers, deletion with the message and by retention, and every refusal with its HTTP code. */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { downloadFile, FileTransferError, uploadFile } from "../../client/files.js";
import { ParleyClientError } from "../../client/errors.js";
import { DAY, ManualClock } from "../../services/common/clock.js";
import { COMPLIANCE_STREAM, type ComplianceRecord } from "../../services/common/compliance.js";
import { FileTokens } from "../../services/common/file-tokens.js";
import { ChatPool, FILE_SECRET, roomName } from "../support/chat.js";
import { Harness } from "../support/harness.js";
import { waitFor } from "../support/wait.js";

describe("file service", () => {
  const h = new Harness();
  let pool: ChatPool;
  let f1: string;
  let f2: string;
  let alice: Awaited<ReturnType<ChatPool["user"]>>;
  let bob: Awaited<ReturnType<ChatPool["user"]>>;
  let room: string;
  const tokens = new FileTokens(FILE_SECRET, { now: () => Date.now() });
  const fid = () => randomBytes(16).toString("base64url");

  before(async () => {
    pool = await ChatPool.create(h);
    f1 = (await pool.files("files-1")).url;
    f2 = (await pool.files("files-2")).url;
    const ch = await pool.channel("ch-files", { fileServiceUrls: [f1, f2] });
    alice = await pool.user("alice", { channel: ch.address });
    bob = await pool.user("bob", { channel: ch.address });
    room = roomName("files");
    await alice.chat.createRoom(room);
    await bob.chat.join(room);
  });
  after(() => h.cleanup());

  it("uploads through one instance and downloads through the other, with its SHA-256, ranges and safe headers", async () => {
    const src = join(pool.storageDir, "..", `${fid()}.txt`);
    const body = randomBytes(300_000);
    writeFileSync(src, body);
    h.defer(() => import("node:fs/promises").then((fs) => fs.rm(src, { force: true })));
    const att = await uploadFile(alice.chat, room, src, { filesUrl: f1 });
    assert.equal(att.size, body.length);
    assert.equal(att.sha256, createHash("sha256").update(body).digest("hex"));
    const m = await alice.chat.post(room, "see attached", { attachments: [att] });
    const out = `${src}.out`;
    h.defer(() => import("node:fs/promises").then((fs) => fs.rm(out, { force: true })));
    const got = await downloadFile(bob.chat, room, att.fileId, out, { filesUrl: f2 });
    assert.equal(got.sha256, att.sha256);
    assert.deepEqual(await readFile(out), body);

    const t = await bob.chat.downloadToken(room, att.fileId);
    const part = await fetch(`${f2}${t.path}`, { headers: { authorization: `Bearer ${t.token}`, range: "bytes=100-199" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 100-199/${body.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), body.subarray(100, 200));
    assert.equal(part.headers.get("content-disposition")?.startsWith("attachment;"), true);
    assert.equal(part.headers.get("x-content-type-options"), "nosniff");
    const bad = await fetch(`${f2}${t.path}`, { headers: { authorization: `Bearer ${t.token}`, range: `bytes=${body.length}-` } });
    assert.equal(bad.status, 416);

    // The upload is in the compliance stream.
    const bus = await h.nats();
    const seen: ComplianceRecord[] = [];
    await bus.consume({ stream: COMPLIANCE_STREAM, durable: `t-${room}`, filterSubject: "parley.compliance.chat.file.uploaded" }, (msg) => {
      seen.push(JSON.parse(new TextDecoder().decode(msg.data)) as ComplianceRecord);
      msg.ack();
    });
    h.defer(() => bus.deleteConsumer(COMPLIANCE_STREAM, `t-${room}`)); // stops it; a test's durable is not left on the stream
    const rec = await waitFor("file.uploaded record", () => seen.find((r) => r.file?.fileId === att.fileId));
    assert.equal(rec.file?.sha256, att.sha256);

    // Deleting the message deletes the file from shared storage.
    await alice.chat.delete(room, m.seq);
    await waitFor("file removed", () => !existsSync(join(pool.storageDir, "objects", room, att.fileId)), 10_000);
    const gone = await fetch(`${f1}${t.path}`, { headers: { authorization: `Bearer ${t.token}` } });
    assert.equal(gone.status, 404);
  });

  it("never serves a stored file as HTML", async () => {
    const t = await alice.chat.uploadToken(room, "x.html", "text/html", 30);
    const put = await fetch(`${f1}${t.path}`, { method: "PUT", headers: { authorization: `Bearer ${t.token}`, "content-type": "text/html", "x-parley-filename": "../../evil\".html" }, body: "<script>alert(1)</script>" });
    assert.equal(put.status, 201);
    await alice.chat.post(room, "html", { attachments: [{ fileId: t.fileId, name: "evil.html", contentType: "text/html", size: 25, sha256: "" }] });
    const d = await alice.chat.downloadToken(room, t.fileId);
    const res = await fetch(`${f2}${d.path}`, { headers: { authorization: `Bearer ${d.token}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.match(res.headers.get("content-disposition") ?? "", /^attachment; filename="evil_?\.html"/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.match(res.headers.get("content-security-policy") ?? "", /sandbox/);
  });

  it("removes files older than the retention: their downloads get 404, newer files stay", async () => {
    // A file instance whose clock the test moves: the upload time and the retention cutoff come from it.
    const clock = new ManualClock(Date.now() - 3 * DAY);
    const ret = await pool.files("files-retention", clock, DAY);
    const upload = async (name: string, body: string) => {
      const t = await alice.chat.uploadToken(room, name, "text/plain", body.length);
      const res = await fetch(`${ret.url}${t.path}`, { method: "PUT", headers: { authorization: `Bearer ${t.token}`, "content-type": "text/plain" }, body });
      assert.equal(res.status, 201);
      const att = { fileId: t.fileId, name, contentType: "text/plain", size: body.length, sha256: "" };
      await alice.chat.post(room, name, { attachments: [att] });
      return att.fileId;
    };
    const download = async (fileId: string) => {
      const t = await bob.chat.downloadToken(room, fileId);
      const res = await fetch(`${f2}${t.path}`, { headers: { authorization: `Bearer ${t.token}` } });
      return { status: res.status, text: await res.text() };
    };
    const old = await upload("old.txt", "three days old");
    clock.set(Date.now());
    const fresh = await upload("new.txt", "just now");
    assert.deepEqual(await download(old), { status: 200, text: "three days old" });

    assert.equal(await ret.service.purge(), 1, "only the file older than a day");
    assert.equal(existsSync(join(pool.storageDir, "objects", room, old)), false);
    assert.equal((await download(old)).status, 404);
    assert.deepEqual(await download(fresh), { status: 200, text: "just now" });
    assert.equal(await ret.service.purge(), 0);
  });

  it("refuses expired, forged, wrong-room, wrong-file and wrong-operation tokens, traversal, and oversize uploads", async () => {
    const file = fid();
    const path = `/v1/files/${room}/${file}`;
    const put = (url: string, token: string | undefined, body: string | Buffer = "data") =>
      fetch(url, { method: "PUT", headers: token ? { authorization: `Bearer ${token}` } : {}, body });
    const get = (url: string, token?: string) => fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const expect = async (res: Promise<Response>, status: number, re: RegExp) => {
      const r = await res;
      const text = await r.text();
      assert.equal(r.status, status, text);
      assert.match(text, re);
    };
    const up = tokens.issue({ op: "upload", room, file, sub: alice.id, maxBytes: 1024 * 1024 }, 60_000).token;
    const past = new FileTokens(FILE_SECRET, { now: () => Date.now() - 600_000 }).issue({ op: "upload", room, file, sub: alice.id }, 60_000).token;
    const forged = new FileTokens("another-secret-entirely-0123456789", { now: () => Date.now() }).issue({ op: "upload", room, file, sub: alice.id }, 60_000).token;
    const [p, payload, mac] = up.split(".");
    const tampered = `${p}.${Buffer.from(Buffer.from(payload!, "base64url").toString().replace(room, "other")).toString("base64url")}.${mac}`;

    await expect(put(`${f1}${path}`, undefined), 401, /token is required/);
    await expect(put(`${f1}${path}`, past), 401, /expired/);
    await expect(put(`${f1}${path}`, forged), 401, /signature is not valid/);
    await expect(put(`${f1}${path}`, tampered), 401, /signature is not valid/);
    await expect(put(`${f1}${path}`, "garbage"), 401, /malformed/);
    await expect(put(`${f1}/v1/files/otherroom/${file}`, up), 403, /for room/);
    await expect(put(`${f1}/v1/files/${room}/${fid()}`, up), 403, /another file/);
    await expect(get(`${f1}${path}`, up), 403, /allows upload, not download/);
    await expect(get(`${f1}/v1/files/..%2F..%2Fetc/passwd`, up), 400, /not a valid room id/);
    await expect(get(`${f1}/v1/files/${room}/..%2F..%2F..%2Fetc%2Fpasswd`, up), 400, /not a valid file id/);
    await expect(get(`${f1}/v1/files/${room}/${file}/extra`, up), 400, /must be/);
    await expect(put(`${f1}${path}`, up, Buffer.alloc(1024 * 1024 + 1)), 413, /larger than/);
    // Nothing was stored by any of these; the genuine token still works once.
    assert.equal(existsSync(join(pool.storageDir, "objects", room, file)), false);
    assert.equal((await put(`${f2}${path}`, up)).status, 201);
    await expect(put(`${f1}${path}`, up), 409, /already uploaded/);
    const down = tokens.issue({ op: "download", room, file, sub: alice.id }, 60_000).token;
    await expect(put(`${f1}${path}`, down), 403, /allows download, not upload/);

    // The channel issues download tokens only for files of messages in rooms the user may read.
    await assert.rejects(bob.chat.downloadToken(room, file), (e: unknown) => e instanceof ParleyClientError && e.codeName === "NOT_FOUND");
    const outsider = await pool.user("mallory", { channel: (await pool.channel("ch-files-2", { fileServiceUrls: [f1] })).address });
    await assert.rejects(outsider.chat.uploadToken(room, "x", "text/plain", 1), (e: unknown) => e instanceof ParleyClientError && e.codeName === "PERMISSION_DENIED");
    await assert.rejects(alice.chat.uploadToken(room, "x", "text/plain", 2 * 1024 * 1024), (e: unknown) => e instanceof ParleyClientError && /file limit/.test(e.message));
    assert.ok(FileTransferError);
  });
});
