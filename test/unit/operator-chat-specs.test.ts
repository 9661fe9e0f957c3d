// The ChatPool's pure builders: stable addresses for the channel instances,
// storage choices, and a file-token secret generated once.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ChatPool } from "../../operator/api/index.js";
import {
  buildChannelStatefulSet,
  buildChatServiceMonitor,
  buildFilesClaim,
  buildFilesDeployment,
  buildFileTokenSecret,
  channelSelector,
} from "../../operator/specs/index.js";

const pool = (spec: Partial<ChatPool["spec"]> = {}): ChatPool => ({
  apiVersion: "parley.dev/v1alpha1",
  kind: "ChatPool",
  metadata: { name: "main", namespace: "team", uid: "uid-9", generation: 1 },
  spec: { relay: "east", database: { secretRef: { name: "chat-db" } }, ...spec },
});

describe("ChatPool builders", () => {
  test("the channel StatefulSet: replicas as decided, pods advertise their own DNS names behind the headless Service", () => {
    const sts = buildChannelStatefulSet(pool(), 3) as any;
    assert.equal(sts.spec.replicas, 3);
    assert.equal(sts.spec.serviceName, "main-channel");
    assert.equal(sts.spec.podManagementPolicy, "Parallel");
    const env = sts.spec.template.spec.containers[0].env;
    assert.equal(env[0].name, "PARLEY_CHANNEL_INSTANCE_ID"); // first: the address below expands it
    assert.deepEqual(env[1], { name: "PARLEY_CHANNEL_ADVERTISE_ADDRESS", value: "$(PARLEY_CHANNEL_INSTANCE_ID).main-channel.team.svc:50052" });
    assert.deepEqual(sts.spec.selector.matchLabels, { "app.kubernetes.io/name": "parley", "app.kubernetes.io/instance": "main", "app.kubernetes.io/component": "channel" });
    assert.equal(channelSelector(pool()), "app.kubernetes.io/component=channel,app.kubernetes.io/instance=main,app.kubernetes.io/name=parley");
    assert.deepEqual(buildChannelStatefulSet(pool(), 3), sts, "same input, same object");
  });

  test("storage: a RWX claim of the pool's own by default, the storage class when given, none with existingClaim", () => {
    assert.deepEqual((buildFilesClaim(pool()) as any).spec, { accessModes: ["ReadWriteMany"], resources: { requests: { storage: "10Gi" } } });
    assert.equal((buildFilesClaim(pool({ files: { storage: { storageClassName: "nfs", size: "1Ti" } } })) as any).spec.storageClassName, "nfs");
    assert.equal(buildFilesClaim(pool({ files: { storage: { existingClaim: "shared" } } })), undefined);
    assert.equal((buildFilesDeployment(pool({ files: { storage: { existingClaim: "shared" } } })) as any).spec.template.spec.volumes[1].persistentVolumeClaim.claimName, "shared");
  });

  test("the file-token secret is generated once and immutable", () => {
    const secret = buildFileTokenSecret(pool(), undefined, () => "0123456789abcdef0123456789abcdef") as any;
    assert.equal(secret.immutable, true);
    assert.equal(Buffer.from(secret.data.secret, "base64").toString(), "0123456789abcdef0123456789abcdef");
    assert.equal(buildFileTokenSecret(pool(), { data: secret.data }), undefined);
  });

  test("one ServiceMonitor selects the pool's channel, lookup and files Services, not a relay of the same name", () => {
    const sm = buildChatServiceMonitor(pool()) as any;
    assert.deepEqual(sm.spec.selector.matchExpressions, [{ key: "app.kubernetes.io/component", operator: "In", values: ["channel", "lookup", "files"] }]);
  });
});
