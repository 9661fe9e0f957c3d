/**
 * Rebuilding a relay replica whose database was lost: from the change stream
 * alone, and — when the stream was trimmed — from a peer's snapshot plus the
 * rest of the stream (through `parley relay rebuild`). Every queue is
 * compared with the snapshot taken before the database was dropped.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import pg from "pg";
import { RelayAdmin } from "../../client/admin.js";
import { ReplicaRole } from "../../generated/parley/v1/relay.js";
import { Harness, PG_ADMIN_URL, unique } from "../support/harness.js";
import { runParley } from "../support/processes.js";
import { ADMIN_TOKEN, ReplicaSet } from "../support/relay-replicas.js";
import { waitFor } from "../support/wait.js";

async function dropAndRecreate(databaseUrl: string): Promise<void> {
  const name = new URL(databaseUrl).pathname.slice(1);
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    await c.query(`DROP DATABASE ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

describe("relay rebuild", () => {
  const h = new Harness();
  after(() => h.cleanup());

  it("rebuilds a dropped database from the stream, then from a peer once the stream is trimmed", async () => {
    const set = new ReplicaSet(h, unique("ha"));
    await set.fresh();
    const a = await set.inProcess("a", "primary");
    let b = await set.inProcess("b", "secondary");
    const adminA = RelayAdmin.create(a.address, ADMIN_TOKEN);
    h.defer(() => adminA.close());

    // Traffic over many queues: sends to devices and identities, acks, a purge, a suspension.
    const people = await Promise.all(Array.from({ length: 6 }, (_, i) => h.identityWithDevice([a.address], unique(`p${i}`), unique(`p${i}-dev`))));
    const load = async (round: number) => {
      for (const [i, from] of people.entries()) {
        const client = h.client([a.address], from);
        const to = people[(i + 1) % people.length]!;
        await client.sendBatch(Array.from({ length: 15 }, (_, j) => ({
          messageId: `r${round}-${i}-${j}`,
          to: j % 3 ? [{ deviceId: to.deviceId }] : [{ deviceId: to.deviceId }, { identityId: to.identityId }],
          payload: Buffer.from(`round ${round} from ${i} #${j} `.repeat(1 + (j % 4))),
        })));
      }
    };
    await load(1);
    await h.client([a.address], people[0]!).ack(5, 0);
    await adminA.purgeQueue({ identityId: people[2]!.identityId });
    await adminA.suspend(people[3]!.deviceId);

    const snapshot = await adminA.queueChecksums();
    assert.ok(snapshot.queues.length >= 10);
    const adminB = () => {
      const admin = RelayAdmin.create(b.address, ADMIN_TOKEN);
      h.defer(() => admin.close());
      return admin;
    };
    await waitFor("secondary caught up", async () => (await adminB().replicationStatus()).appliedStreamSeq === snapshot.streamSeq);

    // 1. The database is lost; the stream still holds everything: replay it.
    await b.stop();
    await dropAndRecreate(b.databaseUrl);
    b = await set.inProcess("b", "secondary", b.databaseUrl);
    const fromStream = await adminB().rebuild({ peerAddress: a.address, fromScratch: true });
    assert.equal(fromStream.source, "stream");
    assert.equal(fromStream.verified, true, JSON.stringify(fromStream.mismatches));
    assert.equal(fromStream.queuesChecked, snapshot.queues.length);
    assert.deepEqual(await adminB().queueChecksums(), snapshot);

    // 2. More traffic, then the stream's retention drops all but its newest messages.
    await adminA.resume(people[3]!.deviceId);
    await load(2);
    const later = await adminA.queueChecksums();
    const stream = await set.changeStream();
    await stream.trimBefore(later.streamSeq - 1);
    await b.stop();
    await dropAndRecreate(b.databaseUrl);
    b = await set.inProcess("b", "secondary", b.databaseUrl);
    const stuck = await adminB().replicationStatus();
    assert.equal(stuck.role, ReplicaRole.REPLICA_ROLE_SYNCING);
    assert.match(stuck.needsRebuild, /no longer holds message 1 .*rebuild from a peer/);
    // Without a peer the rebuild says what it needs and changes nothing.
    await assert.rejects(adminB().rebuild({ fromScratch: true }), /name a peer relay/);

    const profile = mkdtempSync(join(tmpdir(), "parley-rebuild-"));
    const cli = await runParley(["--profile", profile, "--relay", b.address, "relay", "rebuild", "--peer", a.address, "--from-scratch", "--json"], { PARLEY_ADMIN_TOKEN: ADMIN_TOKEN }, 60_000);
    assert.equal(cli.code, 0, cli.stderr + cli.stdout);
    const report = JSON.parse(cli.stdout) as { source: string; verified: boolean; copiedEntries: number };
    assert.equal(report.source, "peer");
    assert.equal(report.verified, true);
    assert.ok(report.copiedEntries > 0);
    assert.deepEqual(await adminB().queueChecksums(), later);
    const after = await adminB().replicationStatus();
    assert.equal(after.role, ReplicaRole.REPLICA_ROLE_SECONDARY);
    assert.equal(after.needsRebuild, "");
  });
});
