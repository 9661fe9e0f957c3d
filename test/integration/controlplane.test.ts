// The operator tests' control plane: a real etcd, kube-apiserver and (garbage
// collection only) kube-controller-manager, driven with kubectl. Needs the
// binaries from `bash scripts/ensure-controlplane.sh` (PARLEY_CONTROLPLANE_DIR,
// or the harness runs the script: seconds when warm, minutes when cold).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { GC_CONTROLLERS, RESTRICTED_USER, startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { waitFor } from "../support/wait.js";

const NAMESPACE = "cp-test";

const namespaceAndConfigMap = `
apiVersion: v1
kind: Namespace
metadata: { name: ${NAMESPACE} }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: greeting, namespace: ${NAMESPACE} }
data: { text: hello }
`;

const widgetCrd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: widgets.test.parley.dev }
spec:
  group: test.parley.dev
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: { type: integer, minimum: 1 }
`;

const readConfigMapGrant = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: read-configmaps, namespace: ${NAMESPACE} }
rules: [{ apiGroups: [""], resources: [configmaps], verbs: [get, list] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: restricted-reads-configmaps, namespace: ${NAMESPACE} }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: ${RESTRICTED_USER} }]
`;

describe("control plane for operator tests", () => {
  let cp: ControlPlane;
  before(async () => {
    cp = await startControlPlane({ controllers: GC_CONTROLLERS });
  });
  after(() => cp?.stop());

  const greeting = () => cp.kubectl(["get", "configmap", "greeting", "-n", NAMESPACE, "-o", "jsonpath={.data.text}"]);

  test("kubectl applies a namespace and a ConfigMap and reads them back", async () => {
    const applied = await cp.kubectl(["apply", "-f", "-"], { input: namespaceAndConfigMap });
    assert.match(applied, /namespace\/cp-test created/);
    assert.match(applied, /configmap\/greeting created/);
    assert.equal(await greeting(), "hello");
  });

  test("a CRD becomes Established and its schema validates custom resources", async () => {
    await cp.kubectl(["apply", "-f", "-"], { input: widgetCrd });
    await cp.kubectl(["wait", "--for=condition=Established", "crd/widgets.test.parley.dev", "--timeout=30s"]);
    // Discovery can lag Established by a moment; kubectl caches it per kubeconfig.
    await waitFor("widgets in discovery", async () => (await cp.kubectl(["api-resources", "--api-group=test.parley.dev"])).includes("widgets"), 15_000, 200);

    const widget = (size: number) => `{"apiVersion":"test.parley.dev/v1","kind":"Widget","metadata":{"name":"w","namespace":"${NAMESPACE}"},"spec":{"size":${size}}}`;
    await assert.rejects(cp.kubectl(["apply", "-f", "-"], { input: widget(0) }), /spec\.size: Invalid value: 0: spec\.size in body should be greater than or equal to 1/);
    await cp.kubectl(["apply", "-f", "-"], { input: widget(3) });
    assert.equal(await cp.kubectl(["get", "widget", "w", "-n", NAMESPACE, "-o", "jsonpath={.spec.size}"]), "3");
  });

  test("RBAC applies to the restricted user until a RoleBinding grants access", async () => {
    const read = () => cp.kubectl(["get", "configmap", "greeting", "-n", NAMESPACE, "-o", "jsonpath={.data.text}"], { user: "restricted" });
    await assert.rejects(read(), /Forbidden.*User "parley-restricted" cannot get resource "configmaps"/s);
    await cp.kubectl(["apply", "-f", "-"], { input: readConfigMapGrant });
    assert.equal(await waitFor("restricted user can read the ConfigMap", () => read(), 10_000, 100), "hello");
    await assert.rejects(cp.kubectl(["delete", "configmap", "greeting", "-n", NAMESPACE], { user: "restricted" }), /Forbidden/);
  });

  test("after the apiserver restarts, kubectl works again and the data is intact", async () => {
    const refused = /connection to the server 127\.0\.0\.1:\d+ was refused/;
    await cp.restartApiserver({ whileDown: () => assert.rejects(cp.kubectl(["get", "namespaces"]), refused) });
    assert.equal(await greeting(), "hello");
    await cp.kubectl(["create", "configmap", "after-restart", "-n", NAMESPACE, "--from-literal=k=v"]);

    await cp.restartApiserver({ crash: true, whileDown: () => assert.rejects(cp.kubectl(["get", "namespaces"]), refused) });
    assert.equal(await cp.kubectl(["get", "configmap", "after-restart", "-n", NAMESPACE, "-o", "jsonpath={.data.k}"]), "v");
  });

  // After the restarts above: kube-controller-manager's watches must have recovered too.
  test("the controller-manager cascades deletes through ownerReferences and creates default ServiceAccounts", async () => {
    const owner = JSON.parse(await cp.kubectl(["create", "configmap", "owner", "-n", NAMESPACE, "-o", "json"])) as { metadata: { uid: string } };
    const dependent = {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "dependent", namespace: NAMESPACE, ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata.uid }] },
    };
    await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(dependent) });
    await cp.kubectl(["delete", "configmap", "owner", "-n", NAMESPACE]);
    await waitFor("garbage collector deletes the dependent", async () => (await cp.kubectl(["get", "configmaps", "-n", NAMESPACE, "-o", "name"])).includes("dependent") === false, 30_000, 200);

    await cp.kubectl(["create", "namespace", "cp-gc"]);
    await waitFor("default ServiceAccount in a new namespace", () => cp.kubectl(["get", "serviceaccount", "default", "-n", "cp-gc", "-o", "name"]), 30_000, 200);
  });

  test("stop leaves no processes and no files behind", async () => {
    const groups = cp.processGroups();
    assert.equal(groups.length, 3);
    await cp.stop();
    for (const pgid of groups) assert.throws(() => process.kill(-pgid, 0), { code: "ESRCH" }, `process group ${pgid} still has processes`);
    assert.equal(existsSync(cp.dir), false);
  });
});
