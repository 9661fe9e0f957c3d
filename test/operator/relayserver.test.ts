// The operator against a real kube-apiserver: the CRDs' validation, a
// RelayServer's whole life (create, update, drift, pause, delete), recovery
// after an apiserver crash, and leader election between two replicas. One
// control plane (with the garbage collector) and one operator process serve
// the cases in order; the leader-election case adds a second replica.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { buildRelayDeployment } from "../../operator/specs/relay.js";
import type { RelayServer } from "../../operator/api/types.js";
import { GC_CONTROLLERS, namespaceTools, startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../support/operator.js";
import { waitFor } from "../support/wait.js";

const NS = "ops";
const LEASE_MS = 8000;
const MANAGED = "app.kubernetes.io/managed-by=parley-operator";

/** Whether something listens on the URL's port. */
const accepts = (url: URL) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });

describe("operator: RelayServer against a real apiserver", () => {
  let cp: ControlPlane;
  let op: OperatorProcess;
  const extra: OperatorProcess[] = [];

  before(async () => {
    cp = await startControlPlane({ controllers: GC_CONTROLLERS });
    await cp.kubectl(["create", "namespace", NS]);
  });
  after(async () => {
    for (const p of [op, ...extra]) await p?.proc.stop("SIGKILL").catch(() => {});
    await cp?.stop();
  });

  const { kubectl, getJson, tryGet, apply } = namespaceTools(() => cp, NS);
  const relay = (name: string, spec: Record<string, unknown> = {}) => ({
    apiVersion: "parley.dev/v1alpha1",
    kind: "RelayServer",
    metadata: { name, namespace: NS },
    spec: { database: { secretRef: { name: `${name}-db` } }, ...spec },
  });
  const condition = (cr: RelayServer, type: string) => cr.status?.conditions?.find((c) => c.type === type);
  const managedNames = async (instance: string) =>
    (await cp.kubectl(["get", "deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets", "-n", NS, "-l", instance ? `${MANAGED},app.kubernetes.io/instance=${instance}` : MANAGED, "-o", "name"]))
      .split("\n").filter(Boolean).sort();
  /** Plays the deployment controller and kubelet: all replicas updated, ready and available. */
  const markDeploymentReady = async (name: string) => {
    const d = await getJson("deployment", name);
    const n = d.spec.replicas;
    const status = { observedGeneration: d.metadata.generation, replicas: n, updatedReplicas: n, readyReplicas: n, availableReplicas: n };
    await kubectl("patch", "deployment", name, "-n", NS, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status }));
  };

  test("the CRDs install and the schema rejects invalid specs with a clear message", async () => {
    await kubectl("apply", "-f", CRDS_DIR);
    await kubectl("wait", "--for=condition=Established", "crd/relayservers.parley.dev", "crd/chatpools.parley.dev", "crd/compliancesinks.parley.dev", "--timeout=30s");
    await waitFor("parley.dev in discovery", async () => (await kubectl("api-resources", "--api-group=parley.dev")).includes("compliancesinks"), 15_000, 200);

    const rejects = (obj: unknown, message: RegExp) => assert.rejects(apply(obj), message);
    await rejects({ ...relay("bad"), spec: {} }, /spec\.database: Required value/);
    await rejects(relay("bad", { replicas: 0 }), /spec\.replicas: Invalid value: 0: spec\.replicas in body should be greater than or equal to 1/);
    await rejects(relay("bad", { role: "primary", secondary: "bad" }), /The RelayServer "bad" is invalid: spec\.secondary: Invalid value: spec\.secondary must name another RelayServer, not this one/);
    await rejects(relay("bad", { secondary: "other" }), /spec\.secondary names the standby of a primary: set spec\.role to primary, or remove spec\.secondary/);
    await rejects(relay("bad", { failoverDelay: "soon" }), /spec\.failoverDelay: Invalid value: "soon": spec\.failoverDelay in body should match/);
    await rejects(relay("bad", { failoverDelay: "500ms", switchoverDelay: "100ms" }), /failoverDelay must be at least 1s/);
    await rejects(relay("bad", { failoverDelay: "5s", switchoverDelay: "1m" }), /spec\.switchoverDelay must not be longer than spec\.failoverDelay/);
    await rejects(relay("bad", { role: "leader" }), /spec\.role: Unsupported value: "leader": supported values: "standalone", "primary", "secondary"/);

    const pool = (channel: unknown) => ({ apiVersion: "parley.dev/v1alpha1", kind: "ChatPool", metadata: { name: "p", namespace: NS }, spec: { database: { secretRef: { name: "db" } }, channel } });
    await rejects(pool({ minInstances: 5, maxInstances: 2 }), /spec\.channel\.minInstances must be less than or equal to spec\.channel\.maxInstances/);
    const sink = (spec: Record<string, unknown>) => ({
      apiVersion: "parley.dev/v1alpha1", kind: "ComplianceSink", metadata: { name: "s", namespace: NS },
      spec: { chatPools: ["p"], stagingDatabase: { secretRef: { name: "db" } }, output: { size: "1Gi" }, ...spec },
    });
    await rejects(sink({ format: { type: "xslt" } }), /spec\.format\.xsltConfigMapRef is required when type is xslt and only allowed then/);
    await rejects(sink({ output: { size: "1Gi", existingClaim: "pvc" } }), /spec\.output: set exactly one of existingClaim \(an existing PVC\) or size \(a new PVC\)/);
    await rejects(sink({ chatPools: [] }), /spec\.chatPools: Invalid value: 0: spec\.chatPools in body should have at least 1 items/);

    // Nothing invalid was stored; a valid pool gets the defaults and supports /scale.
    assert.equal((await kubectl("get", "relayservers,chatpools,compliancesinks", "-n", NS, "-o", "name")).trim(), "");
    await apply(pool(undefined));
    assert.deepEqual((await getJson("chatpool", "p")).spec.channel, { minInstances: 2, maxInstances: 10, targetUsersPerInstance: 500 });
    await kubectl("scale", "chatpool", "p", "-n", NS, "--replicas=4");
    assert.equal((await getJson("chatpool", "p")).spec.channel.replicas, 4);
  });

  test("creating a RelayServer produces exactly its objects, owned by it, and a status", async () => {
    op = await startOperator(cp, ["--lease-duration", `${LEASE_MS / 1000}s`]);
    await apply(relay("alpha"));
    const expected = [
      "configmap/alpha-config",
      "deployment.apps/alpha",
      "poddisruptionbudget.policy/alpha",
      "role.rbac.authorization.k8s.io/alpha-relay",
      "rolebinding.rbac.authorization.k8s.io/alpha-relay",
      "secret/alpha-admin",
      "secret/alpha-key",
      "service/alpha",
      "serviceaccount/alpha-relay",
    ];
    await waitFor("alpha's objects", async () => (await managedNames("alpha")).length === expected.length, 20_000, 100);
    assert.deepEqual(await managedNames("alpha"), expected);

    const cr = await getJson<RelayServer>("relayserver", "alpha");
    const deployment = await getJson("deployment", "alpha");
    assert.deepEqual(deployment.metadata.ownerReferences, [{ apiVersion: "parley.dev/v1alpha1", kind: "RelayServer", name: "alpha", uid: cr.metadata.uid, controller: true, blockOwnerDeletion: true }]);
    const want = buildRelayDeployment(cr) as any;
    assert.deepEqual(deployment.spec.template.spec.containers[0].env, want.spec.template.spec.containers[0].env);
    assert.equal(deployment.spec.template.spec.containers[0].image, "ghcr.io/parley/parley:latest");
    const managedFields = JSON.parse(await kubectl("get", "deployment", "alpha", "-n", NS, "-o", "json", "--show-managed-fields")).metadata.managedFields;
    assert.deepEqual(managedFields.filter((f: any) => f.operation === "Apply").map((f: any) => f.manager), ["parley-operator"]);
    const secret = await getJson("secret", "alpha-key");
    assert.equal(secret.immutable, true);
    assert.match(Buffer.from(secret.data["private.pem"], "base64").toString(), /^-----BEGIN PRIVATE KEY-----/);

    const provisioning = await waitFor("status Provisioning", async () => {
      const r = await getJson<RelayServer>("relayserver", "alpha");
      return r.status?.phase === "Provisioning" && r;
    }, 10_000, 100);
    assert.equal(provisioning.status?.observedGeneration, 1);
    assert.equal(provisioning.status?.currentPrimary, "alpha");
    assert.deepEqual(
      provisioning.status?.conditions?.map(({ type, status, reason, observedGeneration }) => ({ type, status, reason, observedGeneration })),
      [
        { type: "Ready", status: "False", reason: "InstancesNotReady", observedGeneration: 1 },
        { type: "Progressing", status: "True", reason: "RollingOut", observedGeneration: 1 },
        { type: "Degraded", status: "False", reason: "Reconciled", observedGeneration: 1 },
      ],
    );

    await markDeploymentReady("alpha");
    const ready = await waitFor("status Ready", async () => {
      const r = await getJson<RelayServer>("relayserver", "alpha");
      return r.status?.phase === "Ready" && r;
    }, 10_000, 100);
    assert.equal(condition(ready, "Ready")?.status, "True");
    assert.equal(condition(ready, "Ready")?.message, "1 of 1 relay instances ready");
    assert.equal(condition(ready, "Progressing")?.status, "False");
    assert.match(await kubectl("get", "relayserver", "alpha", "-n", NS), /alpha\s+True\s+Ready\s+alpha\s+1\s+/);
    assert.ok((await op.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "success" })) > 0);
    assert.equal((await op.http("/readyz")).status, 200);
  });

  test("updating the spec updates the Deployment and observedGeneration; the key is kept", async () => {
    const keyBefore = (await getJson("secret", "alpha-key")).data;
    await kubectl("patch", "relayserver", "alpha", "-n", NS, "--type=merge", "-p", JSON.stringify({ spec: { replicas: 2, image: "registry.local/parley:2", retention: "7d" } }));
    const deployment = await waitFor("Deployment follows the spec", async () => {
      const d = await getJson("deployment", "alpha");
      return d.spec.replicas === 2 && d.spec.template.spec.containers[0].image === "registry.local/parley:2" && d;
    }, 10_000, 100);
    assert.equal((await getJson("configmap", "alpha-config")).data.PARLEY_RELAY_RETENTION, "7d");
    assert.ok(deployment.spec.template.metadata.annotations["parley.dev/config-hash"]);
    const cr = await waitFor("observedGeneration 2", async () => {
      const r = await getJson<RelayServer>("relayserver", "alpha");
      return r.status?.observedGeneration === 2 && r;
    }, 10_000, 100);
    assert.equal(condition(cr, "Ready")?.status, "False");
    // One instance was ready before (the test played the kubelet); the second is not yet.
    assert.equal(condition(cr, "Ready")?.message, "1 of 2 relay instances ready");
    assert.deepEqual((await getJson("secret", "alpha-key")).data, keyBefore);
  });

  test("drift is repaired: a deleted Service comes back, an edited Deployment and ConfigMap are put right", async () => {
    const oldUid = (await getJson("service", "alpha")).metadata.uid;
    await kubectl("delete", "service", "alpha", "-n", NS);
    await waitFor("Service recreated", async () => {
      const s = await tryGet("service", "alpha");
      return s !== undefined && s.metadata.uid !== oldUid;
    }, 10_000, 100);

    await kubectl("scale", "deployment", "alpha", "-n", NS, "--replicas=5");
    await kubectl("patch", "configmap", "alpha-config", "-n", NS, "--type=merge", "-p", '{"data":{"PARLEY_RELAY_RETENTION":"1d"}}');
    await waitFor("Deployment back to 2 replicas", async () => (await getJson("deployment", "alpha")).spec.replicas === 2, 10_000, 100);
    await waitFor("ConfigMap restored", async () => (await getJson("configmap", "alpha-config")).data.PARLEY_RELAY_RETENTION === "7d", 10_000, 100);
  });

  test("the pause annotation stops reconciling until it is removed", async () => {
    await kubectl("annotate", "relayserver", "alpha", "-n", NS, "parley.dev/paused=true");
    await waitFor("phase Paused", async () => (await getJson<RelayServer>("relayserver", "alpha")).status?.phase === "Paused", 10_000, 100);
    const paused = await op.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "paused" });
    await kubectl("delete", "service", "alpha", "-n", NS);
    // The deletion queues the owner; once that reconcile has run (paused), the Service must still be gone.
    await waitFor("a paused reconcile after the deletion", async () => (await op.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "paused" })) > paused, 10_000, 100);
    assert.equal(await tryGet("service", "alpha"), undefined);
    const cr = await getJson<RelayServer>("relayserver", "alpha");
    assert.equal(condition(cr, "Progressing")?.reason, "Paused");

    await kubectl("annotate", "relayserver", "alpha", "-n", NS, "parley.dev/paused-");
    await waitFor("Service recreated after unpausing", () => tryGet("service", "alpha"), 10_000, 100);
  });

  test("a failing step is reported as Degraded with the apiserver's reason, and retried until it succeeds", async () => {
    // An immutable Secret without a key where the relay key belongs: the KeySecret step cannot apply.
    await kubectl("create", "secret", "generic", "broken-key", "-n", NS, "--from-literal=unrelated=x");
    await kubectl("patch", "secret", "broken-key", "-n", NS, "--type=merge", "-p", '{"immutable":true}');
    await apply(relay("broken"));
    const degraded = await waitFor("Degraded", async () => {
      const r = await getJson<RelayServer>("relayserver", "broken");
      return condition(r, "Degraded")?.status === "True" && r;
    }, 10_000, 100);
    assert.equal(degraded.status?.phase, "Degraded");
    assert.equal(condition(degraded, "Degraded")?.reason, "KeySecretFailed");
    assert.match(condition(degraded, "Degraded")?.message ?? "", /^KeySecret: PATCH \/api\/v1\/namespaces\/ops\/secrets\/broken-key: 422 Invalid: .*field is immutable/);
    // The steps after the failing one did not run.
    assert.equal(await tryGet("deployment", "broken"), undefined);
    assert.ok((await op.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "error" })) > 0);

    await kubectl("delete", "secret", "broken-key", "-n", NS);
    await waitFor("Degraded cleared by a retry", async () => condition(await getJson<RelayServer>("relayserver", "broken"), "Degraded")?.status === "False", 20_000, 100);
    assert.ok(await tryGet("deployment", "broken"));
  });

  test("after the apiserver crashes and restarts, the watches recover and new changes are reconciled", async () => {
    const restartsBefore = await op.metric("parley_operator_watch_restarts_total", { watch: "relayservers" });
    // SIGKILL returns before the kernel has torn the old process down; the new one must find the port free.
    await cp.restartApiserver({ crash: true, whileDown: async () => void (await waitFor("the apiserver's port released", async () => !(await accepts(new URL(cp.server))), 10_000, 50)) });
    await waitFor("the relayservers watch restarted", async () => (await op.metric("parley_operator_watch_restarts_total", { watch: "relayservers" })) > restartsBefore, 30_000, 200);
    await apply(relay("beta"));
    await waitFor("beta's Deployment", () => tryGet("deployment", "beta"), 30_000, 200);
    await kubectl("delete", "service", "beta", "-n", NS);
    await waitFor("beta's Service recreated (owned watches recovered too)", () => tryGet("service", "beta"), 30_000, 200);
  });

  test("two replicas: only the leader reconciles; the standby takes over within the lease time when the leader dies", async () => {
    const standby = await startOperator(cp, ["--lease-duration", `${LEASE_MS / 1000}s`]);
    extra.push(standby);
    assert.equal(await op.metric("parley_operator_leader"), 1);
    assert.equal(await standby.metric("parley_operator_leader"), 0);
    assert.equal((await standby.http("/readyz")).status, 200);

    await apply(relay("gamma"));
    await waitFor("gamma's Deployment (by the leader)", () => tryGet("deployment", "gamma"), 10_000, 100);
    await waitFor("gamma reconciled by the leader", async () => (await op.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "success" })) > 0, 10_000, 100);
    assert.equal(await standby.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "success" }), 0);

    const holderBefore = JSON.parse(await kubectl("get", "lease", "parley-operator", "-n", "default", "-o", "json")).spec.holderIdentity;
    await op.proc.stop("SIGKILL");
    const killedAt = Date.now();
    await apply(relay("delta"));
    await waitFor("delta's Deployment (by the new leader)", () => tryGet("deployment", "delta"), LEASE_MS + 10_000, 100);
    assert.equal(await standby.metric("parley_operator_leader"), 1);
    const lease = JSON.parse(await kubectl("get", "lease", "parley-operator", "-n", "default", "-o", "json"));
    assert.notEqual(lease.spec.holderIdentity, holderBefore);
    // Taken over within the lease time: the new holder's acquireTime (its own clock, this machine's)
    // is at most one lease (plus its retry period and slack) after the old holder died.
    const tookOverMs = Date.parse(lease.spec.acquireTime) - killedAt;
    assert.ok(tookOverMs < LEASE_MS + 5000, `the standby acquired the Lease ${tookOverMs} ms after the leader died (lease ${LEASE_MS} ms)`);
    assert.equal(lease.spec.leaseTransitions, 1);

    // A graceful stop releases the Lease at once (holder cleared).
    await standby.proc.stop("SIGTERM");
    const released = JSON.parse(await kubectl("get", "lease", "parley-operator", "-n", "default", "-o", "json"));
    assert.equal(released.spec.holderIdentity, undefined);
  });

  // Last: kube-controller-manager's garbage collector notices a new CRD only at
  // its next discovery resync (every 30 s), so cascading needs the CRDs to be that old.
  test("deleting RelayServers deletes everything they own", async () => {
    await kubectl("delete", "relayservers", "--all", "-n", NS);
    await waitFor("owned objects garbage-collected", async () => (await managedNames("")).length === 0, 60_000, 250);
  });
});
