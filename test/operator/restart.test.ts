// The operator killed (SIGKILL) in the middle of creating a RelayServer's
// objects: a fresh replica takes the Lease over and converges to exactly the
// same objects and status, keeping whatever relay key was already generated.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { RelayServer } from "../../operator/api/types.js";
import { startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../support/operator.js";
import { waitFor } from "../support/wait.js";

const NS = "restart";

describe("operator: restart mid-reconcile", () => {
  let cp: ControlPlane;
  const ops: OperatorProcess[] = [];

  before(async () => {
    cp = await startControlPlane();
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl(["apply", "-f", CRDS_DIR]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/relayservers.parley.dev", "--timeout=30s"]);
  });
  after(async () => {
    for (const op of ops) await op.proc.stop("SIGKILL").catch(() => {});
    await cp?.stop();
  });

  const names = async () =>
    (await cp.kubectl(["get", "deployments,services,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets", "-n", NS, "-l", "app.kubernetes.io/managed-by=parley-operator", "-o", "name"]))
      .split("\n").filter(Boolean).sort();

  test("a replacement operator converges to the full set of objects and the status", async () => {
    const first = await startOperator(cp, ["--lease-duration", "2s", "--lease-name", "restart-test"]);
    ops.push(first);
    await waitFor("discovery has parley.dev", async () => (await cp.kubectl(["api-resources", "--api-group=parley.dev"])).includes("relayservers"), 15_000, 200);
    await cp.kubectl(["apply", "-f", "-"], {
      input: JSON.stringify({ apiVersion: "parley.dev/v1alpha1", kind: "RelayServer", metadata: { name: "r", namespace: NS }, spec: { database: { secretRef: { name: "r-db" } } } }),
    });
    // The first step's object exists: the reconcile is under way. Kill it there.
    await waitFor("the reconcile has started", async () => (await names()).length > 0, 15_000, 20);
    await first.proc.stop("SIGKILL");
    const partial = await names();

    const second = await startOperator(cp, ["--lease-duration", "2s", "--lease-name", "restart-test"]);
    ops.push(second);
    const expected = ["configmap/r-config", "deployment.apps/r", "poddisruptionbudget.policy/r", "role.rbac.authorization.k8s.io/r-relay",
      "rolebinding.rbac.authorization.k8s.io/r-relay", "secret/r-admin", "secret/r-key", "service/r", "serviceaccount/r-relay"];
    await waitFor(`all objects (had ${partial.length} when killed)`, async () => (await names()).length === expected.length, 20_000, 100);
    assert.deepEqual(await names(), expected);
    const cr = await waitFor("status written by the new leader", async () => {
      const r = JSON.parse(await cp.kubectl(["get", "relayserver", "r", "-n", NS, "-o", "json"])) as RelayServer;
      return r.status?.observedGeneration === 1 && r;
    }, 10_000, 100);
    assert.equal(cr.status?.phase, "Provisioning");
    // The kill may land after the first operator finished; either way the new leader reconciles the RelayServer again.
    await waitFor("the new leader reconciled", async () => (await second.metric("parley_operator_reconciles_total", { kind: "RelayServer", result: "success" })) > 0, 20_000, 100);
    assert.deepEqual(await names(), expected);
  });
});
