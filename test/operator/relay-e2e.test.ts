// End to end: the operator manages a relay pair whose relays are real
// `parley relay` processes on this machine (reached through the addresses the
// test gives it in parley.dev/admin-address), and a kubectl switchover happens
// while senders keep sending. Every message a sender saw acknowledged is
// fetched afterwards from the new primary: nothing acknowledged is lost.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RelayAdmin } from "../../client/admin.js";
import { RelayClient } from "../../client/relay.js";
import { ReplicaRole } from "../../generated/parley/v1/relay.js";
import { startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { Harness, unique } from "../support/harness.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../support/operator.js";
import { relayPair } from "../support/relay-pair.js";
import { ADMIN_TOKEN, ReplicaSet } from "../support/relay-replicas.js";
import { waitFor } from "../support/wait.js";

const NS = "e2e";
const SENDERS = 3;

describe("operator e2e: kubectl switchover of relay processes under load", () => {
  const h = new Harness();
  let cp: ControlPlane;
  let op: OperatorProcess;

  before(async () => {
    cp = await startControlPlane();
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl(["apply", "-f", CRDS_DIR]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/relayservers.parley.dev", "--timeout=30s"]);
    op = await startOperator(cp);
  });
  after(async () => {
    await op?.proc.stop("SIGKILL").catch(() => {});
    await h.cleanup();
    await cp?.stop();
  });

  test("a standalone RelayServer's status carries its relay's queue totals", async () => {
    const set = new ReplicaSet(h, unique("solo"));
    await set.fresh();
    const solo = await set.process("solo", "standalone");
    const sender = await h.identityWithDevice([solo.address], unique("ann"), unique("ann-dev"));
    const receiver = await h.identityWithDevice([solo.address], unique("ben"), unique("ben-dev"));
    const client = RelayClient.create({ addresses: [solo.address], device: sender });
    h.defer(() => client.close());
    for (let i = 0; i < 5; i++) await client.send({ messageId: `m${i}`, to: [{ deviceId: receiver.deviceId }], payload: Buffer.from(`m${i}`) });

    const apply = (obj: unknown) => cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(obj) });
    await apply({ apiVersion: "v1", kind: "Secret", metadata: { name: "solo-admin", namespace: NS }, stringData: { token: ADMIN_TOKEN } });
    await apply({
      apiVersion: "parley.dev/v1alpha1", kind: "RelayServer",
      metadata: { name: "solo", namespace: NS, annotations: { "parley.dev/admin-address": solo.address } },
      spec: { database: { secretRef: { name: "solo-db" } } },
    });
    await relayPair(cp, NS).markReady("solo", 1);
    const status = await waitFor("queue totals in the status", async () => {
      const s = await relayPair(cp, NS).status("solo");
      return s.queues?.depth === 5 ? s : undefined;
    }, 30_000, 200);
    assert.ok((status.queues?.oldestAgeSeconds ?? -1) >= 0);
    assert.equal(status.currentPrimary, "solo");
  });

  test("every acknowledged message is on the new primary after the switchover", async () => {
    const set = new ReplicaSet(h, unique("e2e"));
    await set.fresh();
    const east = await set.process("east", "primary");
    const west = await set.process("west", "secondary");
    const pair = relayPair(cp, NS);
    await pair.create({ primary: ["east", east.address], secondary: ["west", west.address], failoverDelay: "30s", switchoverDelay: "5s", relayId: set.relayId });
    await pair.markReady("east", 1);
    await pair.markReady("west", 1);
    await waitFor("east primary and healthy", async () => (await pair.condition("east", "PrimaryHealthy"))?.status === "True", 20_000, 100);

    // Clients know both addresses (as they would know a Service that moves): the SDK moves on at UNAVAILABLE.
    const addresses = [east.address, west.address];
    const receiverCreds = await h.identityWithDevice([east.address], unique("bob"), unique("bob-dev"));
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => h.identityWithDevice([east.address], unique(`s${i}`), unique(`s${i}-dev`))));
    const acked = new Set<string>();
    let sending = true;
    const sendLoops = senders.map(async (creds, s) => {
      const client = RelayClient.create({ addresses, device: creds, deadlineMs: 3000, maxAttempts: 3 });
      try {
        for (let i = 0; sending; i++) {
          const messageId = `s${s}-${i}`;
          // Retried with the same id until acknowledged (or the test stops sending).
          while (sending) {
            try {
              await client.send({ messageId, to: [{ deviceId: receiverCreds.deviceId }], payload: Buffer.from(messageId) });
              acked.add(messageId);
              break;
            } catch {
              await new Promise((r) => setTimeout(r, 20));
            }
          }
        }
      } finally {
        client.close();
      }
    });
    h.defer(async () => {
      sending = false;
      await Promise.allSettled(sendLoops);
    });

    await waitFor("load on east", () => acked.size >= 30, 20_000, 10);
    const beforeSwitch = acked.size;
    await cp.kubectl(["patch", "relayserver", "east", "-n", NS, "--subresource=status", "--type=merge", "-p", '{"status":{"targetPrimary":"west"}}']);
    await waitFor("currentPrimary west", async () => (await pair.status("east")).currentPrimary === "west", 60_000, 100);
    const atSwitch = acked.size;
    // West serves the senders now.
    await waitFor("sends acknowledged by west", () => acked.size >= atSwitch + 30, 20_000, 10);
    sending = false;
    await Promise.all(sendLoops);
    assert.ok(beforeSwitch >= 30);

    const westAdmin = RelayAdmin.create(west.address, ADMIN_TOKEN);
    const eastAdmin = RelayAdmin.create(east.address, ADMIN_TOKEN);
    h.defer(() => (westAdmin.close(), eastAdmin.close()));
    assert.equal((await westAdmin.replicationStatus()).role, ReplicaRole.REPLICA_ROLE_PRIMARY);
    assert.equal((await eastAdmin.replicationStatus()).role, ReplicaRole.REPLICA_ROLE_SECONDARY);
    assert.equal(await pair.selectorOf("east"), "west");

    // Fetched from the new primary alone.
    const received = new Set<string>();
    const receiver = RelayClient.create({ addresses: [west.address], device: receiverCreds, deadlineMs: 5000 });
    h.defer(() => receiver.close());
    await receiver.inbox((m) => void received.add(m.messageId));
    const lost = [...acked].filter((id) => !received.has(id));
    assert.deepEqual(lost, [], `${lost.length} of ${acked.size} acknowledged messages missing on the new primary`);

    // The old primary follows and converges on the same queues.
    const sums = await westAdmin.queueChecksums();
    await waitFor("east converged", async () => (await eastAdmin.replicationStatus()).appliedStreamSeq >= sums.streamSeq, 15_000, 50);
    const events = (await pair.events("east")).map((e) => e.reason);
    assert.deepEqual(events.filter((r) => r === "SwitchoverStarted" || r === "SwitchedOver"), ["SwitchoverStarted", "SwitchedOver"]);
  });
});
