// The ComplianceSink controller against a real kube-apiserver: the objects a
// sink turns into, the archive folder its ChatPool's file pods get, updates
// (XSLT from a ConfigMap), drift, invalid specs, and — with a real `parley
// compliance` process on the real Postgres and NATS, reached through the
// parley.dev/admin-address annotation — the staged count in status and the
// finalizer's final export before the sink goes.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ComplianceSink } from "../../operator/api/types.js";
import { NatsBus } from "../../services/common/bus/nats.js";
import { ComplianceLog } from "../../services/common/compliance.js";
import { ADMIN_TOKEN, ComplianceUnderTest, testStream } from "../support/compliance.js";
import { GC_CONTROLLERS, namespaceTools, startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { Harness, NATS_URL } from "../support/harness.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../support/operator.js";
import { waitFor } from "../support/wait.js";

const NS = "archive";
const MANAGED = "app.kubernetes.io/managed-by=parley-operator";

describe("operator: ComplianceSink against a real apiserver", () => {
  let cp: ControlPlane;
  let op: OperatorProcess;
  const h = new Harness();

  before(async () => {
    cp = await startControlPlane({ controllers: GC_CONTROLLERS });
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl(["apply", "-f", CRDS_DIR]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/compliancesinks.parley.dev", "crd/chatpools.parley.dev", "--timeout=30s"]);
    op = await startOperator(cp, ["--leader-elect=false"]);
    // A ChatPool for the sinks to archive (its relay key, so the pool reconciles).
    await apply({ apiVersion: "v1", kind: "Secret", metadata: { name: "relay-key", namespace: NS }, data: { "public.key": Buffer.from(Buffer.alloc(32, 1).toString("base64")).toString("base64") } });
    await apply({ apiVersion: "parley.dev/v1alpha1", kind: "ChatPool", metadata: { name: "pool", namespace: NS }, spec: { relay: "relay", database: { secretRef: { name: "chat-db" } }, nats: { url: "nats://127.0.0.1:4222" } } });
  });
  after(async () => {
    await h.cleanup();
    await op?.proc.stop("SIGKILL").catch(() => {});
    await cp?.stop();
  });

  const { kubectl, getJson, tryGet, apply } = namespaceTools(() => cp, NS);
  const sink = (name: string, spec: Record<string, unknown> = {}, annotations?: Record<string, string>) => ({
    apiVersion: "parley.dev/v1alpha1",
    kind: "ComplianceSink",
    metadata: { name, namespace: NS, ...(annotations ? { annotations } : {}) },
    spec: { chatPools: ["pool"], stagingDatabase: { secretRef: { name: "compliance-db" } }, output: { size: "1Gi" }, ...spec },
  });
  const condition = (cr: ComplianceSink, type: string) => cr.status?.conditions?.find((c) => c.type === type);
  const waitStatus = (name: string, what: string, ok: (cr: ComplianceSink) => boolean, timeoutMs = 20_000) =>
    waitFor(what, async () => {
      const cr = await getJson<ComplianceSink>("compliancesink", name);
      return ok(cr) && cr;
    }, timeoutMs, 100);
  const managedNames = async (instance: string) =>
    (await kubectl("get", "deployments,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets,persistentvolumeclaims", "-n", NS, "-l", `${MANAGED},app.kubernetes.io/instance=${instance}`, "-o", "name"))
      .split("\n").filter(Boolean).sort();
  /** Plays the Deployment controller and kubelet: its one replica ready. */
  const markReady = async (name: string) => {
    const d = await getJson("deployment", name);
    const status = { observedGeneration: d.metadata.generation, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1 };
    await kubectl("patch", "deployment", name, "-n", NS, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status }));
  };
  const events = async (name: string) =>
    (await getJson<{ items: Array<{ regarding?: { name: string }; reason: string; note: string; type: string }> }>("events.events.k8s.io")).items.filter((e) => e.regarding?.name === name);
  const gone = (name: string, timeoutMs = 20_000) => waitFor(`${name} deleted`, async () => (await tryGet("compliancesink", name)) === undefined, timeoutMs, 100);

  test("invalid specs are rejected by the schema with a clear message", async () => {
    const rejects = (obj: unknown, message: RegExp) => assert.rejects(apply(obj), message);
    await rejects(sink("bad", { format: { type: "xslt" } }), /spec\.format\.xsltConfigMapRef is required when type is xslt and only allowed then/);
    await rejects(sink("bad", { format: { type: "xml", xsltConfigMapRef: { name: "x" } } }), /spec\.format\.xsltConfigMapRef is required when type is xslt and only allowed then/);
    await rejects(sink("bad", { output: { size: "1Gi", existingClaim: "mine" } }), /spec\.output: set exactly one of existingClaim \(an existing PVC\) or size \(a new PVC\)/);
    await rejects(sink("bad", { output: {} }), /spec\.output: set exactly one of existingClaim/);
    await rejects(sink("bad", { conversationInterval: "30s" }), /conversationInterval must be at least 1m/);
    await rejects(sink("bad", { chatPools: [] }), /spec\.chatPools: Invalid value: 0: spec\.chatPools in body should have at least 1 items/);
    await rejects(sink("bad", { format: { type: "pdf" } }), /spec\.format\.type: Unsupported value: "pdf": supported values: "xml", "xslt", "eml"/);
    assert.equal((await kubectl("get", "compliancesinks", "-n", NS, "-o", "name")).trim(), "");
  });

  test("creating a sink produces exactly its objects and status, and the pool's file pods link uploads for it", async () => {
    await apply(sink("alpha"));
    const expected = [
      "configmap/alpha-compliance-config",
      "deployment.apps/alpha-compliance",
      "persistentvolumeclaim/alpha-compliance-out",
      "secret/alpha-compliance-admin",
      "service/alpha-compliance",
      "serviceaccount/alpha-compliance",
    ];
    await waitFor("alpha's objects", async () => (await managedNames("alpha")).length === expected.length, 20_000, 100);
    assert.deepEqual(await managedNames("alpha"), expected);

    const cr = await getJson<ComplianceSink & { metadata: { finalizers?: string[] } }>("compliancesink", "alpha");
    assert.deepEqual(cr.metadata.finalizers, ["parley.dev/final-export"]);
    const d = await getJson("deployment", "alpha-compliance");
    assert.deepEqual(d.metadata.ownerReferences, [{ apiVersion: "parley.dev/v1alpha1", kind: "ComplianceSink", name: "alpha", uid: cr.metadata.uid, controller: true, blockOwnerDeletion: true }]);
    assert.equal(d.spec.replicas, 1);
    assert.deepEqual(d.spec.strategy, { type: "Recreate" });
    const pod = d.spec.template.spec;
    assert.deepEqual(pod.containers[0].args, ["compliance"]);
    assert.deepEqual(pod.volumes.filter((v: any) => v.persistentVolumeClaim).map((v: any) => [v.name, v.persistentVolumeClaim.claimName]), [["output", "alpha-compliance-out"], ["archive", "pool-files"]]);
    assert.deepEqual(pod.containers[0].volumeMounts.find((m: any) => m.name === "archive"), { name: "archive", mountPath: "/var/lib/parley/compliance/archive", subPath: "compliance-archive" });
    assert.deepEqual(pod.containers[0].env.map((e: any) => [e.name, e.valueFrom.secretKeyRef]), [
      ["PARLEY_COMPLIANCE_DATABASE_URL", { name: "compliance-db", key: "url" }],
      ["PARLEY_ADMIN_TOKEN", { name: "alpha-compliance-admin", key: "token" }],
    ]);
    const config = (await getJson("configmap", "alpha-compliance-config")).data;
    assert.deepEqual(config, {
      PARLEY_NATS_URL: "nats://127.0.0.1:4222", // the pool's: the sink names none
      PARLEY_COMPLIANCE_STREAM: "PARLEY_CHAT_COMPLIANCE",
      PARLEY_COMPLIANCE_CONSUMER: "sink-archive-alpha",
      PARLEY_COMPLIANCE_OUTPUT_DIR: "/var/lib/parley/compliance/out",
      PARLEY_COMPLIANCE_ARCHIVE_DIR: "/var/lib/parley/compliance/archive",
      PARLEY_GRPC_PORT: "50054",
      PARLEY_HTTP_PORT: "9094",
      PARLEY_COMPLIANCE_CONVERSATION_INTERVAL: "15m",
      PARLEY_COMPLIANCE_PICKUP_RETENTION: "7d",
    });
    const claim = await getJson("pvc", "alpha-compliance-out");
    assert.deepEqual(claim.spec.resources.requests, { storage: "1Gi" });
    assert.deepEqual((await getJson("service", "alpha-compliance")).spec.ports.map((p: any) => [p.name, p.port]), [["grpc", 50054], ["http", 9094]]);

    // The pool's file pods link every upload into the folder the sink mounts.
    await waitFor("the pool's files config names the archive folder", async () => (await getJson("configmap", "pool-files-config")).data.PARLEY_COMPLIANCE_ARCHIVE_DIR === "/var/lib/parley/files/compliance-archive", 20_000, 100);

    let status = await waitStatus("alpha", "Provisioning", (c) => c.status?.phase === "Provisioning");
    assert.equal(condition(status, "Ready")?.reason, "InstanceNotReady");
    assert.equal(status.status?.observedGeneration, cr.metadata.generation);
    await markReady("alpha-compliance");
    // Its Service name does not resolve outside a cluster: the service does not answer.
    status = await waitStatus("alpha", "AdminUnreachable", (c) => condition(c, "Ready")?.reason === "AdminUnreachable");
    assert.match(condition(status, "Ready")!.message, /^the compliance service at alpha-compliance\.archive\.svc:50054 does not answer: /);
    assert.equal(condition(status, "Degraded")?.status, "False");

    // A second sink naming the same pool is refused: one sink archives a pool's attachments.
    await apply(sink("beta"));
    const beta = await waitStatus("beta", "beta Degraded", (c) => condition(c, "Degraded")?.status === "True");
    assert.equal(condition(beta, "Degraded")?.message, "ChatPools: ChatPool pool is already archived by ComplianceSink alpha: one sink per pool (its attachments are handed over once)");
    assert.deepEqual(await managedNames("beta"), []);
    // Nothing of beta ever ran: its finalizer lets it go at once.
    await kubectl("delete", "compliancesink", "beta", "-n", NS, "--wait=false");
    await gone("beta");
    assert.equal((await events("beta")).find((e) => e.reason === "FinalExportNotNeeded")?.type, "Normal");
  });

  test("format xslt mounts the ConfigMap's stylesheet and passes it; a missing ConfigMap is reported", async () => {
    const before = (await getJson("deployment", "alpha-compliance")).spec.template.metadata.annotations["parley.dev/config-hash"];
    await apply(sink("alpha", { format: { type: "xslt", xsltConfigMapRef: { name: "house-style", key: "style.xsl" } } }));
    const degraded = await waitStatus("alpha", "Degraded: no ConfigMap", (c) => condition(c, "Degraded")?.status === "True");
    assert.equal(condition(degraded, "Degraded")?.message, "XsltConfigMap: ConfigMap house-style (spec.format.xsltConfigMapRef) does not exist");
    await apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "house-style", namespace: NS }, data: { "style.xsl": "<xsl:stylesheet/>" } });
    await waitStatus("alpha", "Degraded cleared", (c) => condition(c, "Degraded")?.status === "False", 30_000);
    const config = (await getJson("configmap", "alpha-compliance-config")).data;
    assert.equal(config.PARLEY_COMPLIANCE_XSLT, "/etc/parley/xslt/style.xsl");
    const d = await getJson("deployment", "alpha-compliance");
    assert.deepEqual(d.spec.template.spec.volumes.find((v: any) => v.name === "xslt"), { name: "xslt", configMap: { name: "house-style", items: [{ key: "style.xsl", path: "style.xsl" }], defaultMode: 420 } });
    assert.deepEqual(d.spec.template.spec.containers[0].volumeMounts.find((m: any) => m.name === "xslt"), { name: "xslt", mountPath: "/etc/parley/xslt", readOnly: true });
    assert.notEqual(d.spec.template.metadata.annotations["parley.dev/config-hash"], before);

    await apply(sink("alpha", { format: { type: "eml" } }));
    await waitFor("eml in the config", async () => (await getJson("configmap", "alpha-compliance-config")).data.PARLEY_COMPLIANCE_EML === "true", 20_000, 100);
    const after = await getJson("deployment", "alpha-compliance");
    assert.equal(after.spec.template.spec.volumes.find((v: any) => v.name === "xslt"), undefined);
    assert.equal((await getJson("configmap", "alpha-compliance-config")).data.PARLEY_COMPLIANCE_XSLT, undefined);
  });

  test("drift is repaired: a deleted Deployment comes back, an edited ConfigMap is put right", async () => {
    const uid = (await getJson("deployment", "alpha-compliance")).metadata.uid;
    await kubectl("delete", "deployment", "alpha-compliance", "-n", NS);
    await waitFor("Deployment recreated", async () => {
      const d = await tryGet("deployment", "alpha-compliance");
      return d !== undefined && d.metadata.uid !== uid;
    }, 20_000, 100);
    await kubectl("patch", "configmap", "alpha-compliance-config", "-n", NS, "--type=merge", "-p", JSON.stringify({ data: { PARLEY_COMPLIANCE_CONVERSATION_INTERVAL: "1m" } }));
    await waitFor("ConfigMap put right", async () => (await getJson("configmap", "alpha-compliance-config")).data.PARLEY_COMPLIANCE_CONVERSATION_INTERVAL === "15m", 20_000, 100);
  });

  test("a sink whose service is gone for good goes with the skip annotation, without waiting", async () => {
    await kubectl("annotate", "compliancesink", "alpha", "-n", NS, "parley.dev/skip-final-export=true");
    await kubectl("delete", "compliancesink", "alpha", "-n", NS, "--wait=false");
    await gone("alpha");
    const skipped = (await events("alpha")).find((e) => e.reason === "FinalExportSkipped");
    assert.equal(skipped?.type, "Warning");
    assert.match(skipped!.note, /deleted without a final export; staged records stay in the staging database/);
    // The pool's file pods stop linking uploads for a sink that is gone.
    await waitFor("the pool's files config without the archive", async () => (await getJson("configmap", "pool-files-config")).data.PARLEY_COMPLIANCE_ARCHIVE_DIR === undefined, 20_000, 100);
  });

  test("status comes from the real compliance service, and deletion flushes a final export first", async () => {
    const stream = testStream();
    const archiveDir = mkdtempSync(join(tmpdir(), "parley-sink-archive-"));
    h.defer(() => rmSync(archiveDir, { recursive: true, force: true }));
    const compliance = await ComplianceUnderTest.start(h, { stream, archiveDir });
    // The operator keeps an admin Secret that exists: this one holds the running service's token.
    await apply({ apiVersion: "v1", kind: "Secret", metadata: { name: "real-compliance-admin", namespace: NS }, data: { token: Buffer.from(ADMIN_TOKEN).toString("base64") } });
    await apply(sink("real", {}, { "parley.dev/admin-address": compliance.address }));
    await waitFor("real's Deployment", async () => (await tryGet("deployment", "real-compliance")) !== undefined, 20_000, 100);
    await markReady("real-compliance");
    const ready = await waitStatus("real", "Ready", (c) => condition(c, "Ready")?.status === "True", 30_000);
    assert.equal(ready.status?.stagedCount, 0);
    assert.equal(condition(ready, "Ready")?.reason, "Exporting");

    const bus = await NatsBus.connect({ servers: [NATS_URL], name: "sink-test" });
    h.defer(() => bus.close());
    const log = await ComplianceLog.create(bus, "channel/test", stream);
    const at = Date.now();
    await log.record({ kind: "room.created", roomId: "audit-room", actor: "alice", atMs: at }, "room:audit-room");
    await log.record({ kind: "room.updated", roomId: "audit-room", actor: "alice", atMs: at + 1 }, "topic:audit-room");
    const staged = await waitStatus("real", "2 records staged in status", (c) => c.status?.stagedCount === 2, 40_000);
    assert.ok((staged.status?.oldestStagedAgeSeconds ?? -1) >= 0);
    assert.equal(compliance.manifests().length, 0);

    await kubectl("delete", "compliancesink", "real", "-n", NS, "--wait=false");
    await gone("real", 30_000);
    const manifests = compliance.manifests();
    assert.equal(manifests.length, 1, "the final export wrote one batch before the sink went");
    assert.equal((await compliance.admin.status()).stagedRecords, 0);
    const flushed = (await events("real")).find((e) => e.reason === "FinalExport");
    assert.match(flushed?.note ?? "", /^final export wrote batch \S+: 1 conversations, 2 records, \d+ files$/);
  });

  test("an unreachable service holds the deletion only for the bounded wait, then the sink goes with a Warning", async () => {
    await apply(sink("lost", {}, { "parley.dev/admin-address": "127.0.0.1:1", "parley.dev/final-export-timeout": "3s" }));
    await waitFor("lost's Deployment", async () => (await tryGet("deployment", "lost-compliance")) !== undefined, 20_000, 100);
    await kubectl("delete", "compliancesink", "lost", "-n", NS, "--wait=false");
    await gone("lost", 30_000);
    const evs = await events("lost");
    assert.equal(evs.find((e) => e.reason === "FinalExportRetrying")?.type, "Warning");
    const abandoned = evs.find((e) => e.reason === "FinalExportAbandoned");
    assert.equal(abandoned?.type, "Warning");
    assert.match(abandoned!.note, /^final export abandoned after 3s \(.+\); staged records stay in the staging database/);
  });
});
