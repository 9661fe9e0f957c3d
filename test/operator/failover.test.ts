// Relay pair failover driven by the operator, against a real apiserver and
// real relays (in this process, on real Postgres + NATS, reached through the
// parley.dev/admin-address annotation). The test plays the deployment
// controller. Cases in order on one pair (east primary, west secondary):
// status of a healthy pair; kubectl-only switchover; a bad targetPrimary;
// the kubectl parley plugin; automatic failover after failoverDelay.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RelayAdmin } from "../../client/admin.js";
import { ReplicaRole } from "../../generated/parley/v1/relay.js";
import { startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { Harness, unique } from "../support/harness.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../support/operator.js";
import { relayPair } from "../support/relay-pair.js";
import { ADMIN_TOKEN, ReplicaSet } from "../support/relay-replicas.js";
import { waitFor } from "../support/wait.js";

const NS = "ha";
const FAILOVER_DELAY_S = 3;

describe("operator: relay failover against a real apiserver", () => {
  const h = new Harness();
  let cp: ControlPlane;
  let op: OperatorProcess;
  let pair: ReturnType<typeof relayPair>;
  const admin: Record<string, RelayAdmin> = {};
  const role = async (name: string) => (await admin[name]!.replicationStatus()).role;

  before(async () => {
    cp = await startControlPlane();
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl(["apply", "-f", CRDS_DIR]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/relayservers.parley.dev", "--timeout=30s"]);
    pair = relayPair(cp, NS);
    const set = new ReplicaSet(h, unique("opha"));
    await set.fresh();
    const east = await set.inProcess("east", "primary");
    const west = await set.inProcess("west", "secondary");
    for (const [name, r] of [["east", east], ["west", west]] as const) {
      admin[name] = RelayAdmin.create(r.address, ADMIN_TOKEN);
      h.defer(() => admin[name]!.close());
    }
    op = await startOperator(cp);
    await pair.create({ primary: ["east", east.address], secondary: ["west", west.address], failoverDelay: `${FAILOVER_DELAY_S}s`, relayId: set.relayId });
    await pair.markReady("east", 1);
    await pair.markReady("west", 1);
  });
  after(async () => {
    await op?.proc.stop("SIGKILL").catch(() => {});
    await h.cleanup();
    await cp?.stop();
  });

  test("a healthy pair: east is primary, both client Services select it, status shows queues and lag", async () => {
    const status = await waitFor("east's pair status", async () => {
      const s = await pair.status("east");
      return s.queues && s.replicationLagSeconds !== undefined && s.conditions?.some((c) => c.type === "PrimaryHealthy" && c.status === "True") && s;
    }, 20_000, 100);
    assert.equal(status.currentPrimary, "east");
    assert.equal(status.targetPrimary, "east");
    assert.equal(status.queues?.depth, 0);
    assert.equal(status.replicationLagSeconds, 0);
    assert.equal((await pair.condition("east", "Paired"))?.status, "True");
    assert.equal((await pair.condition("east", "Switchover"))?.reason, "Idle");
    assert.equal(await pair.selectorOf("east"), "east");
    await waitFor("west mirrors the primary", async () => (await pair.status("west")).currentPrimary === "east" && (await pair.selectorOf("west")) === "east", 10_000, 100);
    assert.equal(await pair.selectorOf("west-replica"), "west");
    // One relay, one key: the secondary serves with its primary's (clients pin it).
    assert.deepEqual((await pair.getJson("secret", "west-key")).data, (await pair.getJson("secret", "east-key")).data);
    assert.equal(await role("east"), ReplicaRole.REPLICA_ROLE_PRIMARY);
    assert.equal(await role("west"), ReplicaRole.REPLICA_ROLE_SECONDARY);
  });

  test("kubectl alone switches over: the relays swap roles, the Services follow, timestamps and Events are recorded", async () => {
    const before = (await pair.status("east")).currentPrimaryTimestamp!;
    const requestedAt = new Date();
    await cp.kubectl(["patch", "relayserver", "east", "-n", NS, "--subresource=status", "--type=merge", "-p", '{"status":{"targetPrimary":"west"}}']);
    const status = await waitFor("currentPrimary west", async () => {
      const s = await pair.status("east");
      return s.currentPrimary === "west" && s;
    }, 60_000, 100);
    assert.equal(status.targetPrimary, "west");
    assert.ok(status.currentPrimaryTimestamp! > before, `currentPrimaryTimestamp moved (${before} → ${status.currentPrimaryTimestamp})`);
    assert.ok(new Date(status.currentPrimaryTimestamp!).getTime() >= Math.floor(requestedAt.getTime() / 1000) * 1000);
    assert.equal(await pair.selectorOf("east"), "west");
    await waitFor("west's Service follows", async () => (await pair.selectorOf("west")) === "west" && (await pair.status("west")).currentPrimary === "west", 10_000, 100);
    assert.equal(await role("west"), ReplicaRole.REPLICA_ROLE_PRIMARY);
    assert.equal(await role("east"), ReplicaRole.REPLICA_ROLE_SECONDARY);
    const switchover = await pair.condition("east", "Switchover");
    assert.equal(switchover?.reason, "Completed");
    assert.match(switchover?.message ?? "", /^west promoted \(epoch \d+, change \d+\); east demoted; Service east selects west$/);
    const events = (await pair.events("east")).filter((e) => new Date(e.eventTime).getTime() >= requestedAt.getTime() - 1000);
    assert.deepEqual(events.map((e) => `${e.type}/${e.reason}`), ["Normal/SwitchoverStarted", "Normal/SwitchedOver"]);
    assert.match(events[0]!.note, /^switchover from east to west: demoting east$/);
  });

  test("a targetPrimary outside the pair is reported in a condition and an Event, and nothing changes", async () => {
    const before = await pair.status("east");
    await cp.kubectl(["patch", "relayserver", "east", "-n", NS, "--subresource=status", "--type=merge", "-p", '{"status":{"targetPrimary":"north"}}']);
    const c = await waitFor("Switchover InvalidTarget", async () => {
      const s = await pair.condition("east", "Switchover");
      return s?.reason === "InvalidTarget" && s;
    }, 10_000, 100);
    assert.equal(c.status, "False");
    assert.equal(c.message, 'status.targetPrimary "north" is not a member of this pair (east, west); set it to "east" to switch over');
    const warning = await waitFor("InvalidTargetPrimary Event", async () => (await pair.events("east")).find((e) => e.reason === "InvalidTargetPrimary"), 10_000, 100);
    assert.equal(warning.type, "Warning");
    assert.match(warning.note, /nothing was changed$/);
    const after = await pair.status("east");
    assert.equal(after.currentPrimary, "west");
    assert.equal(after.currentPrimaryTimestamp, before.currentPrimaryTimestamp);
    assert.equal(await pair.selectorOf("east"), "west");
    assert.equal(await role("west"), ReplicaRole.REPLICA_ROLE_PRIMARY);
    // Withdrawn: back at rest, the complaint is gone.
    await cp.kubectl(["patch", "relayserver", "east", "-n", NS, "--subresource=status", "--type=merge", "-p", '{"status":{"targetPrimary":"west"}}']);
    await waitFor("Switchover Idle", async () => (await pair.condition("east", "Switchover"))?.reason === "Idle", 10_000, 100);
  });

  test("kubectl parley promote switches back and waits for it; bad requests get a clear error", async () => {
    const out = await pair.plugin(["promote", "east"]);
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trim().split("\n");
    assert.equal(lines[0], "relayserver/east: targetPrimary set to east (currentPrimary west)");
    assert.match(lines.at(-1)!, /^east is primary \(since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/);
    assert.equal((await pair.status("east")).currentPrimary, "east");
    assert.equal(await pair.selectorOf("east"), "east");
    assert.equal(await role("east"), ReplicaRole.REPLICA_ROLE_PRIMARY);

    const again = await pair.plugin(["promote", "east"]);
    assert.equal(again.code, 2);
    assert.equal(again.stderr.trim(), 'error: relayserver "east" is already the primary of its pair (east, west)');
    const unknown = await pair.plugin(["promote", "nosuch"]);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr.trim(), `error: relayserver "nosuch" not found in namespace "${NS}"`);
    await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "parley.dev/v1alpha1", kind: "RelayServer", metadata: { name: "solo", namespace: NS }, spec: { database: { secretRef: { name: "solo-db" } } } }) });
    const solo = await pair.plugin(["promote", "solo"]);
    assert.equal(solo.code, 2);
    assert.match(solo.stderr.trim(), /^error: relayserver "solo" is not paired: it has role standalone and no spec\.secondary/);
    assert.equal((await pair.status("east")).currentPrimary, "east");
  });

  test(`the primary unhealthy for failoverDelay (${FAILOVER_DELAY_S}s): the operator fails over to the secondary`, async () => {
    const eventsBefore = (await pair.events("east")).length;
    const unhealthyAt = Date.now();
    await pair.markReady("east", 0);
    const unhealthy = await waitFor("PrimaryHealthy False", async () => {
      const c = await pair.condition("east", "PrimaryHealthy");
      return c?.status === "False" && c;
    }, 10_000, 50);
    assert.equal(unhealthy.reason, "NoReadyInstances");
    assert.equal(unhealthy.message, "east: Deployment east has no ready instances");
    const status = await waitFor("failed over to west", async () => {
      const s = await pair.status("east");
      return s.currentPrimary === "west" && s;
    }, 60_000, 100);
    // Not before failoverDelay (timestamps have one-second resolution).
    const since = new Date(unhealthy.lastTransitionTime).getTime();
    assert.ok(new Date(status.currentPrimaryTimestamp!).getTime() >= since + (FAILOVER_DELAY_S - 1) * 1000, `failover at ${status.currentPrimaryTimestamp}, unhealthy since ${unhealthy.lastTransitionTime}`);
    assert.ok(since >= Math.floor(unhealthyAt / 1000) * 1000);
    assert.equal(status.targetPrimary, "west");
    assert.equal(await pair.selectorOf("east"), "west");
    assert.equal(await role("west"), ReplicaRole.REPLICA_ROLE_PRIMARY);
    const events = (await pair.events("east")).slice(eventsBefore).map((e) => `${e.type}/${e.reason}: ${e.note}`);
    assert.match(events[0] ?? "", /^Warning\/FailoverStarted: primary east has been unhealthy for \d+s \(failoverDelay 3s\): Deployment east has no ready instances; promoting west$/);
    assert.match(events.at(-1) ?? "", /^Normal\/FailedOver: west promoted/);
    await waitFor("PrimaryHealthy True (west)", async () => (await pair.condition("east", "PrimaryHealthy"))?.status === "True", 10_000, 100);
    // Counted: the kubectl switchover, the plugin's, and this failover.
    assert.equal(await op.metric("parley_operator_relay_switchovers_total", { kind: "switchover", result: "promoted" }), 2);
    assert.equal(await op.metric("parley_operator_relay_switchovers_total", { kind: "failover", result: "promoted" }), 1);
  });
});
