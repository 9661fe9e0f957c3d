/**
 * The relay's web admin page in headless Chromium (Debian's `chromium`,
 * driven by playwright-core): sign-in, the figures the gRPC stats report,
 * and maintenance actions (with their confirmation step) that change what
 * the next stats call returns. CSRF and token checks are probed directly.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { RelayAdmin } from "../../client/admin.js";
import { startHttpServer, type HttpServerHandle } from "../../services/common/http.js";
import { Harness, unique } from "../support/harness.js";
import { ADMIN_TOKEN, ReplicaSet } from "../support/relay-replicas.js";

const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

describe("relay web admin page (headless Chromium)", () => {
  const h = new Harness();
  let browser: Browser;
  let page: Page;
  let http: HttpServerHandle;
  let admin: RelayAdmin;
  let base = "";
  let people: Array<Awaited<ReturnType<Harness["identityWithDevice"]>>> = [];

  before(async () => {
    const set = new ReplicaSet(h, unique("web"));
    await set.fresh();
    const relay = await set.inProcess("a", "primary");
    http = await startHttpServer({ host: "127.0.0.1", port: 0, log: h.log, readiness: [], routes: [relay.service.adminPage()] });
    h.defer(() => http.close());
    base = `http://127.0.0.1:${http.port}`;
    admin = RelayAdmin.create(relay.address, ADMIN_TOKEN);
    h.defer(() => admin.close());
    people = await Promise.all(Array.from({ length: 4 }, (_, i) => h.identityWithDevice([relay.address], unique(`p${i}`), unique(`p${i}-dev`))));
    for (const [i, from] of people.entries()) {
      const to = people[(i + 1) % people.length]!;
      await h.client([relay.address], from).sendBatch(Array.from({ length: 3 + 4 * i }, (_, j) => ({ to: [{ deviceId: to.deviceId }], payload: Buffer.from(`m${i}-${j}`) })));
    }
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
    h.defer(() => browser.close());
    page = await (await browser.newContext()).newPage();
  });
  after(() => h.cleanup());

  const figure = async (table: string, name: string) => (await page.locator(`#${table} [data-figure="${name}"]`).innerText()).trim();

  it("asks for the admin token and refuses a wrong one", async () => {
    await page.goto(`${base}/admin`);
    await page.fill("input[name=token]", "not-the-token");
    await page.click("button[type=submit]");
    assert.match(await page.locator("[role=alert]").innerText(), /not the admin token/);
    await page.fill("input[name=token]", ADMIN_TOKEN);
    await page.click("button[type=submit]");
    assert.equal(new URL(page.url()).pathname, "/admin");
    const cookie = (await page.context().cookies()).find((c) => c.name === "parley_admin");
    assert.ok(cookie?.httpOnly, "the session cookie is HttpOnly");
    assert.equal(cookie?.sameSite, "Strict");
  });

  it("shows the figures the gRPC stats report", async () => {
    await page.goto(`${base}/admin`);
    const stats = await admin.stats({ top: 10 });
    assert.equal(await figure("totals", "queues"), String(stats.queues));
    assert.equal(await figure("totals", "depth"), String(stats.depth));
    assert.equal(await figure("totals", "bytes"), String(stats.bytes));
    assert.equal(await figure("totals", "devices"), String(stats.devices));
    assert.equal(await figure("totals", "purged-messages"), String(stats.purgedMessages));
    assert.equal(await figure("replication", "role"), "primary");
    const rows = await page.locator("#top-depth tbody tr").evaluateAll((trs) =>
      trs.map((tr) => [tr.getAttribute("data-queue"), tr.querySelector('[data-figure="depth"]')!.textContent]),
    );
    assert.deepEqual(rows, stats.top.map((q) => [`device:${q.queue!.target!.value}`, String(q.depth)]));
  });

  it("purges a queue after confirmation, and the next stats call shows it", async () => {
    const before = await admin.stats({ top: 10 });
    const fullest = before.top[0]!;
    await page.goto(`${base}/admin`);
    await page.locator("#top-depth tbody tr").first().locator("button").click();
    assert.match(await page.locator("#confirm-text").innerText(), new RegExp(`Delete every message queued for device '${fullest.queue!.target!.value}'`));
    await page.click("#confirm");
    assert.match(await page.locator("[role=status]").innerText(), new RegExp(`purged ${fullest.depth} message\\(s\\)`));
    const afterStats = await admin.stats({ top: 10 });
    assert.equal(afterStats.depth, before.depth - fullest.depth);
    assert.equal(afterStats.purgedMessages, before.purgedMessages + fullest.depth);
    assert.equal(await figure("totals", "depth"), String(afterStats.depth));
  });

  it("suspends and resumes a device after confirmation", async () => {
    const device = people[0]!.deviceId;
    for (const [verb, suspended] of [["suspend", 1], ["resume", 0]] as const) {
      await page.goto(`${base}/admin`);
      await page.fill("input[name=device]", device);
      await page.click(`button[value=${verb}]`);
      await page.click("#confirm");
      assert.match(await page.locator("[role=status]").innerText(), new RegExp(`device '${device}' is ${suspended ? "suspended" : "active"}`));
      assert.equal((await admin.stats()).suspendedDevices, suspended);
    }
    // A wrong device id is reported on the page and changes nothing.
    await page.goto(`${base}/admin`);
    await page.fill("input[name=device]", "no-such-device");
    await page.click("button[value=suspend]");
    await page.click("#confirm");
    assert.match(await page.locator("[role=alert]").innerText(), /unknown device 'no-such-device'/);
  });

  it("refuses a POST without the CSRF token, and requests without the admin token", async () => {
    const cookie = (await page.context().cookies()).find((c) => c.name === "parley_admin")!;
    const forged = await fetch(`${base}/admin/do`, {
      method: "POST",
      headers: { cookie: `parley_admin=${cookie.value}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ action: "purge-age", age: "1s" }),
      redirect: "manual",
    });
    assert.equal(forged.status, 403);
    assert.equal((await fetch(`${base}/admin`, { headers: { authorization: "Bearer wrong" } })).status, 401);
    const viaBearer = await fetch(`${base}/admin`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(viaBearer.status, 200);
    assert.match(await viaBearer.text(), /data-figure="depth"/);
  });
});
