// The ComplianceSink's pure parts: its builders (formats, storage, the admin
// token generated once, the consumer name) and how sinks and pools find each
// other (one sink archives a pool; pools must agree on NATS and files claim).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ChatPool, ComplianceSink } from "../../operator/api/index.js";
import { archivingSink, resolveSinkInputs, SinkPoolLinks } from "../../operator/controllers/sink-pools.js";
import {
  buildComplianceAdminSecret,
  buildComplianceConfigMap,
  buildComplianceDeployment,
  buildComplianceOutputClaim,
  buildFilesConfigMap,
  complianceConsumer,
} from "../../operator/specs/index.js";

const sink = (name: string, spec: Partial<ComplianceSink["spec"]> = {}, created = "2026-01-01T00:00:00Z"): ComplianceSink => ({
  apiVersion: "parley.dev/v1alpha1",
  kind: "ComplianceSink",
  metadata: { name, namespace: "team", uid: `uid-${name}`, generation: 1, creationTimestamp: created },
  spec: { chatPools: ["main"], stagingDatabase: { secretRef: { name: "cdb" } }, output: { size: "5Gi" }, ...spec },
});
const pool = (name: string, spec: Partial<ChatPool["spec"]> = {}): ChatPool => ({
  apiVersion: "parley.dev/v1alpha1",
  kind: "ChatPool",
  metadata: { name, namespace: "team", uid: `uid-${name}` },
  spec: { relay: "east", database: { secretRef: { name: "chat-db" } }, nats: { url: "nats://n:4222" }, ...spec },
});
const inputs = { natsUrl: "nats://n:4222", archiveClaim: "main-files" };

describe("ComplianceSink builders", () => {
  test("xml by default; xslt mounts the ConfigMap key and names it; eml turns on the .eml files", () => {
    const xml = buildComplianceConfigMap(sink("a"), inputs).data as Record<string, string>;
    assert.equal(xml.PARLEY_COMPLIANCE_XSLT, undefined);
    assert.equal(xml.PARLEY_COMPLIANCE_EML, undefined);
    const x = sink("a", { format: { type: "xslt", xsltConfigMapRef: { name: "style" } } });
    assert.equal((buildComplianceConfigMap(x, inputs).data as Record<string, string>).PARLEY_COMPLIANCE_XSLT, "/etc/parley/xslt/transform.xslt");
    const pod = (buildComplianceDeployment(x, inputs) as any).spec.template.spec;
    assert.deepEqual(pod.volumes.at(-1), { name: "xslt", configMap: { name: "style", items: [{ key: "transform.xslt", path: "transform.xslt" }] } });
    assert.equal((buildComplianceConfigMap(sink("a", { format: { type: "eml" } }), inputs).data as Record<string, string>).PARLEY_COMPLIANCE_EML, "true");
    assert.notEqual((buildComplianceDeployment(x, inputs) as any).spec.template.metadata.annotations["parley.dev/config-hash"], (buildComplianceDeployment(sink("a"), inputs) as any).spec.template.metadata.annotations["parley.dev/config-hash"]);
  });

  test("output: a RWX claim of its own, or the existing claim mounted; no archive without a files claim", () => {
    assert.deepEqual((buildComplianceOutputClaim(sink("a", { output: { size: "5Gi", storageClassName: "nfs" } })) as any).spec, { accessModes: ["ReadWriteMany"], resources: { requests: { storage: "5Gi" } }, storageClassName: "nfs" });
    const mine = sink("a", { output: { existingClaim: "vault" } });
    assert.equal(buildComplianceOutputClaim(mine), undefined);
    const pod = (buildComplianceDeployment(mine, { natsUrl: "nats://n:4222" }) as any).spec.template.spec;
    assert.deepEqual(pod.volumes.map((v: any) => v.name), ["tmp", "output"]);
    assert.equal(pod.volumes[1].persistentVolumeClaim.claimName, "vault");
    assert.equal((buildComplianceConfigMap(mine, { natsUrl: "nats://n:4222" }).data as Record<string, string>).PARLEY_COMPLIANCE_ARCHIVE_DIR, "");
  });

  test("the admin token is generated once; the consumer name fits JetStream's rules", () => {
    const s = buildComplianceAdminSecret(sink("a"), undefined, () => "t0k3n") as any;
    assert.equal(Buffer.from(s.data.token, "base64").toString(), "t0k3n");
    assert.equal(s.immutable, true);
    assert.equal(buildComplianceAdminSecret(sink("a"), { data: { token: "eA==" } }), undefined);
    assert.equal(complianceConsumer(sink("a.b")), "sink-team-a-b");
    const long = complianceConsumer(sink("x".repeat(200)));
    assert.match(long, /^[A-Za-z0-9_-]{64}$/);
    assert.notEqual(long, complianceConsumer(sink("x".repeat(199))));
  });

  test("the pool's files config gets the archive folder only when a sink archives it", () => {
    assert.equal((buildFilesConfigMap(pool("main")).data as Record<string, string>).PARLEY_COMPLIANCE_ARCHIVE_DIR, undefined);
    assert.equal((buildFilesConfigMap(pool("main"), true).data as Record<string, string>).PARLEY_COMPLIANCE_ARCHIVE_DIR, "/var/lib/parley/files/compliance-archive");
  });
});

describe("sinks and pools", () => {
  const pools = (...p: ChatPool[]) => new Map(p.map((x) => [x.metadata.name, x] as [string, ChatPool | undefined]));

  test("the oldest sink naming a pool archives it; a younger one is refused, naming the other", () => {
    const older = sink("older", {}, "2026-01-01T00:00:00Z");
    const younger = sink("aaa", {}, "2026-02-01T00:00:00Z");
    assert.equal(archivingSink("main", [younger, older]), "older");
    assert.equal(archivingSink("other", [younger, older]), undefined);
    assert.deepEqual(resolveSinkInputs(older, pools(pool("main")), [younger, older]), inputs);
    assert.throws(() => resolveSinkInputs(younger, pools(pool("main")), [younger, older]), /^Error: ChatPool main is already archived by ComplianceSink older: one sink per pool/);
  });

  test("a missing pool, pools on different claims or NATS are refused with what to do", () => {
    assert.throws(() => resolveSinkInputs(sink("s"), new Map([["main", undefined]]), []), /^Error: ChatPool main does not exist in namespace team$/);
    const two = sink("s", { chatPools: ["main", "b"] });
    assert.throws(() => resolveSinkInputs(two, pools(pool("main"), pool("b")), [two]), /different claims \(main-files, b-files\); one sink reads one archive/);
    const shared = { files: { storage: { existingClaim: "shared" } } };
    assert.throws(() => resolveSinkInputs(two, pools(pool("main", shared), pool("b", { ...shared, nats: { url: "nats://m:4222" } })), [two]), /different NATS \(nats:\/\/n:4222, nats:\/\/m:4222\); set spec\.nats\.url/);
    const named = sink("s", { chatPools: ["main", "b"], nats: { url: "nats://m:4222" } });
    assert.deepEqual(resolveSinkInputs(named, pools(pool("main", shared), pool("b", shared)), [named]), { natsUrl: "nats://m:4222", archiveClaim: "shared" });
  });

  test("pools hear of a sink when its pools or deletion change, not on every status write", () => {
    const links = new SinkPoolLinks();
    assert.equal(links.changed("add", sink("s")), true);
    assert.equal(links.changed("update", { ...sink("s"), status: { stagedCount: 3 } } as ComplianceSink), false);
    assert.equal(links.changed("update", sink("s", { chatPools: ["main", "b"] })), true);
    assert.equal(links.changed("delete", sink("s")), true);
  });
});
