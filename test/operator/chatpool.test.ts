// The ChatPool controller against a real kube-apiserver: the objects a pool
// turns into and its status, updates, drift, invalid specs, /scale, and
// load-driven scaling with real channel processes on a private NATS — the test
// plays the StatefulSet controller (starting and stopping `parley channel`
// processes named like the pods), and a real chat client on the instance being
// scaled in is drained onto another one with nothing missed.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import type { ChatPool } from "../../operator/api/types.js";
import { KubeClient, resourcePath } from "../../operator/kube/client.js";
import { NatsBus } from "../../services/common/bus/nats.js";
import { systemClock } from "../../services/common/clock.js";
import { startGrpcServer } from "../../services/common/grpc.js";
import { logger } from "../../services/common/log.js";
import { LookupService } from "../../services/lookup/service.js";
import type { ServerEvent } from "../../generated/parley/v1/chat.js";
import { FILE_SECRET, ChatPool as ChatTestPool, roomName } from "../support/chat.js";
import { GC_CONTROLLERS, namespaceTools, startControlPlane, type ControlPlane } from "../support/controlplane.js";
import { Harness, unique } from "../support/harness.js";
import { CRDS_DIR, startOperator, type OperatorProcess } from "../support/operator.js";
import { startParley, type Proc } from "../support/processes.js";
import { TetheredProcess } from "../support/tethered-process.js";
import { waitFor } from "../support/wait.js";

const NS = "chat";
const MANAGED = "app.kubernetes.io/managed-by=parley-operator";
const NATS_SERVER = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("operator: ChatPool against a real apiserver", () => {
  let cp: ControlPlane;
  let op: OperatorProcess;
  let kube: KubeClient;
  const h = new Harness();

  before(async () => {
    cp = await startControlPlane({ controllers: GC_CONTROLLERS });
    await cp.kubectl(["create", "namespace", NS]);
    await cp.kubectl(["apply", "-f", CRDS_DIR]);
    await cp.kubectl(["wait", "--for=condition=Established", "crd/chatpools.parley.dev", "--timeout=30s"]);
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    kube = await KubeClient.fromKubeConfig(kc);
    op = await startOperator(cp, ["--leader-elect=false"]);
  });
  after(async () => {
    await h.cleanup();
    await op?.proc.stop("SIGKILL").catch(() => {});
    await cp?.stop();
  });

  const { kubectl, getJson, tryGet, apply } = namespaceTools(() => cp, NS);
  const pool = (name: string, spec: Record<string, unknown> = {}) => ({
    apiVersion: "parley.dev/v1alpha1",
    kind: "ChatPool",
    metadata: { name, namespace: NS },
    spec: { relay: "relay", database: { secretRef: { name: "chat-db" } }, nats: { url: "nats://127.0.0.1:4222" }, ...spec },
  });
  const condition = (cr: ChatPool, type: string) => cr.status?.conditions?.find((c) => c.type === type);
  const managedNames = async (instance: string) =>
    (await kubectl("get", "statefulsets,deployments,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets,persistentvolumeclaims", "-n", NS, "-l", `${MANAGED},app.kubernetes.io/instance=${instance}`, "-o", "name"))
      .split("\n").filter(Boolean).sort();
  const relayKeySecret = (name: string, publicKeyB64: string) =>
    apply({ apiVersion: "v1", kind: "Secret", metadata: { name: `${name}-key`, namespace: NS }, data: { "public.key": Buffer.from(publicKeyB64).toString("base64") } });
  /** Plays the workload controllers and kubelet: every replica ready. */
  const markReady = async (kind: "deployment" | "statefulset", name: string, ready?: number) => {
    const d = await getJson(kind, name);
    const n = ready ?? d.spec.replicas;
    const status = { observedGeneration: d.metadata.generation, replicas: n, updatedReplicas: n, readyReplicas: n, availableReplicas: n, currentReplicas: n };
    await kubectl("patch", kind, name, "-n", NS, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status }));
  };
  const waitStatus = (name: string, what: string, ok: (cr: ChatPool) => boolean, timeoutMs = 15_000) =>
    waitFor(what, async () => {
      const cr = await getJson<ChatPool>("chatpool", name);
      return ok(cr) && cr;
    }, timeoutMs, 100);

  test("invalid specs are rejected by the schema with a clear message", async () => {
    const rejects = (obj: unknown, message: RegExp) => assert.rejects(apply(obj), message);
    await rejects(pool("bad", { channel: { minInstances: 4, maxInstances: 2 } }), /spec\.channel\.minInstances must be less than or equal to spec\.channel\.maxInstances/);
    await rejects(pool("bad", { files: { storage: { existingClaim: "mine", storageClassName: "fast" } } }), /spec\.files\.storage: set existingClaim or storageClassName, not both/);
    await rejects(pool("bad", { channel: { scaleCooldown: "soon" } }), /spec\.channel\.scaleCooldown: Invalid value: "soon": spec\.channel\.scaleCooldown in body should match/);
    await rejects(pool("bad", { nats: { url: "http://nats:4222" } }), /spec\.nats\.url: Invalid value: "http:\/\/nats:4222": spec\.nats\.url in body should match '\^\(nats\|tls\):\/\/'/);
    await rejects(pool("bad", { channel: { replicas: -1 } }), /spec\.channel\.replicas: Invalid value: -1: spec\.channel\.replicas in body should be greater than or equal to 0/);
    assert.equal((await kubectl("get", "chatpools", "-n", NS, "-o", "name")).trim(), "");
  });

  test("a pool whose relay key is missing is Degraded with the reason, and recovers once it exists", async () => {
    await apply(pool("early", { relay: "later" }));
    const degraded = await waitStatus("early", "Degraded", (cr) => condition(cr, "Degraded")?.status === "True");
    assert.equal(condition(degraded, "Degraded")?.reason, "RelayKeyFailed");
    assert.equal(condition(degraded, "Degraded")?.message, "RelayKey: Secret later-key (the key of RelayServer later) does not exist yet");
    assert.deepEqual(await managedNames("early"), []);
    await relayKeySecret("later", Buffer.alloc(32, 7).toString("base64"));
    await waitStatus("early", "Degraded cleared by a retry", (cr) => condition(cr, "Degraded")?.status === "False", 30_000);
    await kubectl("delete", "chatpool", "early", "-n", NS);
  });

  test("creating a ChatPool produces exactly its objects, owned by it, and a status", async () => {
    await relayKeySecret("relay", Buffer.alloc(32, 1).toString("base64"));
    await apply(pool("alpha"));
    const expected = [
      "configmap/alpha-channel-config",
      "configmap/alpha-files-config",
      "configmap/alpha-lookup-config",
      "deployment.apps/alpha-files",
      "deployment.apps/alpha-lookup",
      "persistentvolumeclaim/alpha-files",
      "poddisruptionbudget.policy/alpha-channel",
      "poddisruptionbudget.policy/alpha-files",
      "poddisruptionbudget.policy/alpha-lookup",
      "secret/alpha-file-token",
      "service/alpha-channel",
      "service/alpha-files",
      "service/alpha-lookup",
      "serviceaccount/alpha-chat",
      "statefulset.apps/alpha-channel",
    ];
    await waitFor("alpha's objects", async () => (await managedNames("alpha")).length === expected.length, 20_000, 100);
    assert.deepEqual(await managedNames("alpha"), expected);

    const cr = await getJson<ChatPool>("chatpool", "alpha");
    const sts = await getJson("statefulset", "alpha-channel");
    assert.deepEqual(sts.metadata.ownerReferences, [{ apiVersion: "parley.dev/v1alpha1", kind: "ChatPool", name: "alpha", uid: cr.metadata.uid, controller: true, blockOwnerDeletion: true }]);
    assert.equal(sts.spec.replicas, 2); // minInstances: no load reported yet
    assert.equal(sts.spec.serviceName, "alpha-channel");
    const env = Object.fromEntries(sts.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    assert.equal(env.PARLEY_CHANNEL_ADVERTISE_ADDRESS, "$(PARLEY_CHANNEL_INSTANCE_ID).alpha-channel.chat.svc:50052");
    assert.deepEqual(env.PARLEY_CHANNEL_INSTANCE_ID, { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } });
    assert.deepEqual(env.PARLEY_RELAY_PUBLIC_KEY, { secretKeyRef: { name: "relay-key", key: "public.key" } });
    assert.deepEqual(env.PARLEY_FILE_TOKEN_SECRET, { secretKeyRef: { name: "alpha-file-token", key: "secret" } });
    assert.deepEqual(env.PARLEY_CHAT_DATABASE_URL, { secretKeyRef: { name: "chat-db", key: "url" } });
    assert.equal((await getJson("service", "alpha-channel")).spec.clusterIP, "None");
    assert.equal((await getJson("configmap", "alpha-channel-config")).data.PARLEY_FILE_SERVICE_URLS, "http://alpha-files.chat.svc:8080");
    const pvc = await getJson("pvc", "alpha-files");
    assert.deepEqual([pvc.spec.accessModes, pvc.spec.resources.requests.storage], [["ReadWriteMany"], "10Gi"]);
    assert.equal((await getJson("deployment", "alpha-files")).spec.template.spec.volumes[1].persistentVolumeClaim.claimName, "alpha-files");
    const secret = await getJson("secret", "alpha-file-token");
    assert.equal(secret.immutable, true);
    assert.ok(Buffer.from(secret.data.secret, "base64").length >= 32);

    const provisioning = await waitStatus("alpha", "status Provisioning", (c) => c.status?.phase === "Provisioning");
    assert.equal(provisioning.status?.observedGeneration, 1);
    assert.equal(provisioning.status?.instances, 2);
    assert.equal(provisioning.status?.selector, "app.kubernetes.io/component=channel,app.kubernetes.io/instance=alpha,app.kubernetes.io/name=parley");
    assert.equal(condition(provisioning, "Ready")?.message, "0 of 2 channel instances ready; 0 of 2 lookup replicas ready; 0 of 1 file instances ready");
    assert.equal(condition(provisioning, "Scaling")?.reason, "LoadUnknown");

    await markReady("statefulset", "alpha-channel");
    await markReady("deployment", "alpha-lookup");
    await markReady("deployment", "alpha-files");
    const ready = await waitStatus("alpha", "status Ready", (c) => c.status?.phase === "Ready");
    assert.equal(condition(ready, "Ready")?.status, "True");
    assert.equal(condition(ready, "Ready")?.message, "2 of 2 channel instances ready; lookup and files ready");
    assert.match(await kubectl("get", "chatpool", "alpha", "-n", NS), /alpha\s+True\s+Ready\s+2\s+0\s+/);
    assert.ok((await op.metric("parley_operator_reconciles_total", { kind: "ChatPool", result: "success" })) > 0);
  });

  test("updating the spec updates the workloads and observedGeneration; the file-token secret is kept", async () => {
    const tokenBefore = (await getJson("secret", "alpha-file-token")).data;
    await kubectl("patch", "chatpool", "alpha", "-n", NS, "--type=merge", "-p", JSON.stringify({ spec: { image: "registry.local/parley:2", lookup: { replicas: 3 }, channel: { minInstances: 3 } } }));
    await waitFor("workloads follow the spec", async () => {
      const [l, s] = [await getJson("deployment", "alpha-lookup"), await getJson("statefulset", "alpha-channel")];
      return l.spec.replicas === 3 && l.spec.template.spec.containers[0].image === "registry.local/parley:2" && s.spec.replicas === 3 && s.spec.template.spec.containers[0].image === "registry.local/parley:2";
    }, 10_000, 100);
    const cr = await waitStatus("alpha", "observedGeneration 2", (c) => c.status?.observedGeneration === 2);
    assert.equal(cr.status?.instances, 3);
    assert.ok(cr.status?.lastScaleTime);
    assert.deepEqual((await getJson("secret", "alpha-file-token")).data, tokenBefore);
  });

  test("drift is repaired: a deleted Service comes back, a hand-scaled StatefulSet and an edited ConfigMap are put right", async () => {
    const oldUid = (await getJson("service", "alpha-channel")).metadata.uid;
    await kubectl("delete", "service", "alpha-channel", "-n", NS);
    await waitFor("headless Service recreated", async () => {
      const s = await tryGet("service", "alpha-channel");
      return s !== undefined && s.metadata.uid !== oldUid && s.spec.clusterIP === "None";
    }, 10_000, 100);
    await kubectl("scale", "statefulset", "alpha-channel", "-n", NS, "--replicas=7");
    await kubectl("patch", "configmap", "alpha-lookup-config", "-n", NS, "--type=merge", "-p", '{"data":{"PARLEY_NATS_URL":"nats://elsewhere:4222"}}');
    await waitFor("StatefulSet back to 3", async () => (await getJson("statefulset", "alpha-channel")).spec.replicas === 3, 10_000, 100);
    await waitFor("ConfigMap restored", async () => (await getJson("configmap", "alpha-lookup-config")).data.PARLEY_NATS_URL === "nats://127.0.0.1:4222", 10_000, 100);
  });

  test("kubectl scale drives the channel instances through /scale, and its replicas win over load-based scaling", async () => {
    await kubectl("scale", "chatpool", "alpha", "-n", NS, "--replicas=5");
    await waitFor("StatefulSet at 5", async () => (await getJson("statefulset", "alpha-channel")).spec.replicas === 5, 10_000, 100);
    const cr = await waitStatus("alpha", "status.instances 5", (c) => c.status?.instances === 5);
    assert.equal(condition(cr, "Scaling")?.reason, "Manual");
    assert.equal(condition(cr, "Scaling")?.message, "spec.channel.replicas is 5 (set through /scale); load-based scaling is off");
    const scale = await getJson("chatpool", "alpha", "--subresource=scale");
    assert.deepEqual([scale.kind, scale.spec.replicas, scale.status.replicas, scale.status.selector], ["Scale", 5, 5, cr.status?.selector]);

    // Scaling in by hand: the instances have not reported (no sessions to drain), so they go at once.
    await kubectl("scale", "chatpool", "alpha", "-n", NS, "--replicas=4");
    await waitFor("StatefulSet at 4", async () => (await getJson("statefulset", "alpha-channel")).spec.replicas === 4, 10_000, 100);
    // Without spec.channel.replicas the built-in scaling takes over again (no load known: it holds).
    await kubectl("patch", "chatpool", "alpha", "-n", NS, "--type=json", "-p", '[{"op":"remove","path":"/spec/channel/replicas"}]');
    const auto = await waitStatus("alpha", "Scaling no longer Manual", (c) => condition(c, "Scaling")?.reason !== "Manual");
    assert.equal(condition(auto, "Scaling")?.reason, "LoadUnknown");
    assert.equal(auto.status?.instances, 4);
  });

  test("the pause annotation stops reconciling until it is removed", async () => {
    await kubectl("annotate", "chatpool", "alpha", "-n", NS, "parley.dev/paused=true");
    await waitStatus("alpha", "phase Paused", (c) => c.status?.phase === "Paused");
    const paused = await op.metric("parley_operator_reconciles_total", { kind: "ChatPool", result: "paused" });
    await kubectl("delete", "service", "alpha-lookup", "-n", NS);
    await waitFor("a paused reconcile after the deletion", async () => (await op.metric("parley_operator_reconciles_total", { kind: "ChatPool", result: "paused" })) > paused, 10_000, 100);
    assert.equal(await tryGet("service", "alpha-lookup"), undefined);
    await kubectl("annotate", "chatpool", "alpha", "-n", NS, "parley.dev/paused-");
    await waitFor("Service recreated after unpausing", () => tryGet("service", "alpha-lookup"), 10_000, 100);
  });

  test("an existing claim is mounted instead of a PVC of the pool's own", async () => {
    await apply(pool("beta", { files: { storage: { existingClaim: "shared-files" } } }));
    await waitFor("beta's files Deployment", () => tryGet("deployment", "beta-files"), 20_000, 100);
    assert.equal((await getJson("deployment", "beta-files")).spec.template.spec.volumes[1].persistentVolumeClaim.claimName, "shared-files");
    assert.equal(await tryGet("pvc", "beta-files"), undefined);
    await kubectl("delete", "chatpool", "beta", "-n", NS);
  });

  test("scales out and in from real channel instances' load reports, draining the instance it removes: its client moves with nothing missed", async () => {
    // A private NATS: the lookup and the operator hear only this pool's instances.
    const natsDir = mkdtempSync(join(tmpdir(), "parley-chatpool-nats-"));
    h.defer(() => rmSync(natsDir, { recursive: true, force: true }));
    const natsPort = await freePort();
    const nats = new TetheredProcess("nats-server", NATS_SERVER, ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", natsDir], join(natsDir, "nats.log"));
    nats.start();
    h.defer(() => nats.stop());
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    const bus = await waitFor("private NATS up", () => NatsBus.connect({ servers: natsUrl, name: "chatpool-test" }).catch(() => undefined), 15_000, 100);
    h.defer(() => bus.close());

    const chat = await ChatTestPool.create(h);
    const lookup = LookupService.create({ dropAfterMs: 1500, relayPublicKey: chat.key.publicKey }, { bus, clock: systemClock, log: logger("lookup-test") });
    const lookupGrpc = await startGrpcServer({ host: "127.0.0.1", port: 0, services: lookup.services });
    h.defer(async () => (lookup.stop(), await lookupGrpc.shutdown(1000)));
    const lookupAddress = `127.0.0.1:${lookupGrpc.port}`;

    const name = unique("live").toLowerCase();
    const sts = `${name}-channel`;
    await relayKeySecret(`${name}-relay`, Buffer.from(chat.key.publicKey).toString("base64"));

    // The StatefulSet controller and kubelet, played: one `parley channel` process per ordinal below spec.replicas.
    const running = new Map<number, Proc>();
    const timeline: string[] = [];
    let playing = true;
    const stsPath = resourcePath("apps/v1", "StatefulSet", NS, sts);
    const play = (async () => {
      while (playing) {
        const s = await kube.get<any>(stsPath).catch(() => undefined);
        const want = s?.spec?.replicas;
        if (typeof want === "number") {
          for (let o = 0; o < want; o++) {
            if (running.has(o)) continue;
            const proc = startParley([
              "channel", "--instance-id", `${sts}-${o}`, "--database-url", chat.chatDb, "--nats-url", natsUrl,
              "--relay-public-key", Buffer.from(chat.key.publicKey).toString("base64"), "--file-token-secret", FILE_SECRET,
              "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--load-report-interval", "200ms",
            ], { PARLEY_LOG_LEVEL: "info" });
            running.set(o, proc);
            await proc.waitForOutput(/"channel ready"/, 20_000);
            timeline.push(`started #${o}`);
          }
          for (const [o, proc] of [...running].filter(([o]) => o >= want).sort(([a], [b]) => b - a)) {
            timeline.push(`stopping #${o}`);
            await proc.stop("SIGTERM");
            running.delete(o);
          }
          const n = running.size;
          const status = { observedGeneration: s.metadata.generation, replicas: n, readyReplicas: n, currentReplicas: n, updatedReplicas: n, availableReplicas: n };
          if (s.status?.readyReplicas !== n || s.status?.observedGeneration !== s.metadata.generation) {
            await kube.request("PATCH", `${stsPath}/status`, { status }, "application/merge-patch+json").catch(() => undefined);
          }
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    h.defer(async () => {
      playing = false;
      await play.catch(() => undefined);
      for (const p of running.values()) await p.stop("SIGKILL").catch(() => undefined);
    });

    await apply(pool(name, {
      relay: `${name}-relay`,
      nats: { url: natsUrl },
      channel: { minInstances: 1, maxInstances: 3, targetUsersPerInstance: 2, scaleCooldown: "1s" },
    }));
    await waitFor("the lookup and files Deployments", async () => (await tryGet("deployment", `${name}-lookup`)) && (await tryGet("deployment", `${name}-files`)), 20_000, 100);
    await markReady("deployment", `${name}-lookup`);
    await markReady("deployment", `${name}-files`);
    await waitFor("instance #0 running", () => running.size === 1 && lookup.table.live().length === 1, 30_000, 100);

    // Three users on the one instance: 3 > 1 × 2, so the operator scales out.
    const [poster, dana, ...others] = await Promise.all(["poster", "dana", "a", "b", "c"].map((u) => chat.user(u, { lookup: [lookupAddress] })));
    const room = roomName("busy");
    await poster!.chat.createRoom(room);
    const sessions = others.map((u) => {
      let on = "";
      const s = u.chat.live({ onEvent: () => {}, onConnected: (id) => void (on = id) });
      return { s, on: () => on };
    });
    await waitFor("three users connected to #0", () => sessions.every((x) => x.on() === `${sts}-0`), 15_000, 50);
    const out = await waitStatus(name, "scaled out to 2", (c) => c.status?.instances === 2, 30_000);
    assert.ok(out.status?.lastScaleTime, "lastScaleTime recorded");
    await waitFor("instance #1 running and live in the lookup", () => running.size === 2 && lookup.table.live().length === 2, 30_000, 100);

    // Dana joins the new, empty instance and follows the room while the poster posts.
    const received: number[] = [];
    const connectedTo: string[] = [];
    const endedWith: string[] = [];
    const danaLive = dana!.chat.live({
      onEvent: (ev: ServerEvent) => void (ev.event?.$case === "message" && received.push(ev.event.value.seq)),
      onConnected: (id) => void connectedTo.push(id),
      onReconnect: (err) => void endedWith.push(`${err.message} [#1 ${running.has(1) ? "running" : "stopped"}]`),
    });
    danaLive.subscribe(room, 0);
    await waitFor("dana on #1", () => connectedTo[0] === `${sts}-1`, 15_000, 50);
    let posting = true;
    let lastPosted = 0;
    const posts = (async () => {
      for (let i = 0; posting; i++) {
        lastPosted = (await poster!.chat.post(room, `m${i}`)).seq;
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    await waitFor("dana receives posts on #1", () => received.length >= 5, 15_000, 50);

    // The other three leave: one user fits in one instance, so #1 is drained, then removed.
    for (const x of sessions) x.s.close();
    const inCr = await waitStatus(name, "scaled in to 1", (c) => c.status?.instances === 1, 60_000);
    await waitFor("#1 stopped", () => !running.has(1), 15_000, 50);
    await waitFor("dana moved to #0", () => connectedTo.at(-1) === `${sts}-0`, 15_000, 50);
    assert.deepEqual(connectedTo, [`${sts}-1`, `${sts}-0`]);
    // Drained before scale-in: the session ended while #1 still ran, with the draining status.
    assert.equal(endedWith.length, 1);
    assert.match(endedWith[0]!, /channel instance draining; ask lookup for another \[#1 running\]/);
    assert.deepEqual(timeline, ["started #0", "started #1", "stopping #1"]);

    const atMove = received.length;
    await waitFor("more posts after the move", () => received.length >= atMove + 5, 15_000, 50);
    posting = false;
    await posts;
    await waitFor("dana has every post", () => received.at(-1) === lastPosted, 15_000, 50);
    assert.deepEqual(received, Array.from({ length: lastPosted }, (_, i) => i + 1), "every message once, in order, across the move");
    danaLive.close();

    const after = await waitStatus(name, "status shows the load of the remaining instance", (c) => c.status?.load?.length === 1 && c.status.load[0]?.instance === `${sts}-0`, 15_000);
    assert.equal(condition(after, "Ready")?.status, "True");
    assert.ok((after.status?.totalUsers ?? -1) >= 0);
    assert.ok(inCr.status?.lastScaleTime && inCr.status.lastScaleTime >= out.status!.lastScaleTime!);
  });
});
