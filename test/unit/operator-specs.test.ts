// The operator's pure builders: the exact objects a RelayServer turns into,
// with the CRD's defaults applied, and a relay key that is generated once.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { publicKeyFromPem } from "../../services/common/crypto.js";
import { relaySpecWithDefaults, type RelayServer } from "../../operator/api/index.js";
import { mergeConditions } from "../../operator/controllers/conditions.js";
import {
  buildRelayAdminSecret,
  buildRelayConfigMap,
  buildRelayDeployment,
  buildRelayKeySecret,
  buildRelayPodDisruptionBudget,
  buildRelayReplicaService,
  buildRelayRole,
  buildRelayRoleBinding,
  buildRelayService,
  buildRelayServiceAccount,
  buildRelayServiceMonitor,
  configHash,
} from "../../operator/specs/index.js";

const relay = (spec: Partial<RelayServer["spec"]> = {}): RelayServer => ({
  apiVersion: "parley.dev/v1alpha1",
  kind: "RelayServer",
  metadata: { name: "east", namespace: "chat", uid: "uid-1", generation: 2 },
  spec: { database: { secretRef: { name: "east-db" } }, ...spec },
});

const labels = {
  "app.kubernetes.io/name": "parley",
  "app.kubernetes.io/instance": "east",
  "app.kubernetes.io/component": "relay",
  "app.kubernetes.io/part-of": "parley",
  "app.kubernetes.io/managed-by": "parley-operator",
};
const selector = { "app.kubernetes.io/name": "parley", "app.kubernetes.io/instance": "east", "app.kubernetes.io/component": "relay" };
const ownerReferences = [{ apiVersion: "parley.dev/v1alpha1", kind: "RelayServer", name: "east", uid: "uid-1", controller: true, blockOwnerDeletion: true }];
const meta = (name: string) => ({ name, namespace: "chat", labels, ownerReferences });

describe("RelayServer defaults", () => {
  test("a minimal spec gets the CRD's defaults; the relay id defaults to the resource name", () => {
    assert.deepEqual(relaySpecWithDefaults(relay()), {
      image: "ghcr.io/parley/parley:latest",
      imagePullPolicy: "IfNotPresent",
      replicas: 1,
      relayId: "east",
      retention: "30d",
      quotas: { maxMessageBytes: "1MiB", maxQueueMessages: 100_000, maxQueueBytes: "1GiB" },
      database: { secretRef: { name: "east-db", key: "url" } },
      nats: { url: "nats://nats:4222" },
      resources: {},
      role: "standalone",
      failoverDelay: "30s",
      switchoverDelay: "10s",
    });
  });

  test("given values win over defaults", () => {
    const s = relaySpecWithDefaults(relay({ replicas: 3, relayId: "relay.example", role: "primary", secondary: "west", quotas: { maxQueueMessages: 5 } }));
    assert.equal(s.replicas, 3);
    assert.equal(s.relayId, "relay.example");
    assert.equal(s.secondary, "west");
    assert.deepEqual(s.quotas, { maxMessageBytes: "1MiB", maxQueueMessages: 5, maxQueueBytes: "1GiB" });
  });
});

describe("RelayServer builders", () => {
  test("ConfigMap: the relay's flags as environment variables", () => {
    assert.deepEqual(buildRelayConfigMap(relay({ retention: "7d", nats: { url: "nats://n1:4222,nats://n2:4222" } })), {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: meta("east-config"),
      data: {
        PARLEY_RELAY_ID: "east",
        PARLEY_RELAY_ROLE: "standalone",
        PARLEY_NATS_URL: "nats://n1:4222,nats://n2:4222",
        PARLEY_GRPC_PORT: "50051",
        PARLEY_HTTP_PORT: "9090",
        PARLEY_RELAY_KEY_FILE: "/var/run/parley/relay-key/private.pem",
        PARLEY_RELAY_RETENTION: "7d",
        PARLEY_RELAY_MAX_MESSAGE_BYTES: "1MiB",
        PARLEY_RELAY_MAX_QUEUE_MESSAGES: "100000",
        PARLEY_RELAY_MAX_QUEUE_BYTES: "1GiB",
      },
    });
  });

  test("Service, PodDisruptionBudget, ServiceAccount, Role, RoleBinding, ServiceMonitor", () => {
    const cr = relay();
    assert.deepEqual(buildRelayService(cr), {
      apiVersion: "v1",
      kind: "Service",
      metadata: meta("east"),
      spec: {
        type: "ClusterIP",
        selector,
        ports: [
          { name: "grpc", port: 50051, targetPort: "grpc", protocol: "TCP" },
          { name: "http", port: 9090, targetPort: "http", protocol: "TCP" },
        ],
      },
    });
    assert.deepEqual(buildRelayPodDisruptionBudget(cr), {
      apiVersion: "policy/v1", kind: "PodDisruptionBudget", metadata: meta("east"), spec: { maxUnavailable: 1, selector: { matchLabels: selector } },
    });
    assert.deepEqual(buildRelayServiceAccount(cr), { apiVersion: "v1", kind: "ServiceAccount", metadata: meta("east-relay") });
    assert.deepEqual(buildRelayRole(cr), {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: meta("east-relay"),
      rules: [{ apiGroups: ["parley.dev"], resources: ["relayservers"], resourceNames: ["east"], verbs: ["get", "watch"] }],
    });
    assert.deepEqual(buildRelayRoleBinding(cr), {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: meta("east-relay"),
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "east-relay" },
      subjects: [{ kind: "ServiceAccount", name: "east-relay", namespace: "chat" }],
    });
    assert.deepEqual(buildRelayServiceMonitor(cr), {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: meta("east"),
      spec: { selector: { matchLabels: selector }, endpoints: [{ port: "http", path: "/metrics", interval: "30s" }] },
    });
  });

  test("Deployment: image, replicas, config, database Secret, key volume, probes, restricted security", () => {
    const cr = relay({ image: "registry.local/parley:1.2.3", replicas: 3, resources: { limits: { memory: "512Mi" } }, database: { secretRef: { name: "pg", key: "relay-url" } } });
    assert.deepEqual(buildRelayDeployment(cr), {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: meta("east"),
      spec: {
        replicas: 3,
        selector: { matchLabels: selector },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        template: {
          metadata: { labels: { ...selector, "app.kubernetes.io/part-of": "parley" }, annotations: { "parley.dev/config-hash": configHash(buildRelayConfigMap(cr)) } },
          spec: {
            serviceAccountName: "east-relay",
            securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
            terminationGracePeriodSeconds: 30,
            containers: [
              {
                name: "relay",
                image: "registry.local/parley:1.2.3",
                imagePullPolicy: "IfNotPresent",
                args: ["relay"],
                envFrom: [{ configMapRef: { name: "east-config" } }],
                env: [
                  { name: "PARLEY_RELAY_DATABASE_URL", valueFrom: { secretKeyRef: { name: "pg", key: "relay-url" } } },
                  { name: "PARLEY_RELAY_REPLICA_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } },
                  { name: "PARLEY_ADMIN_TOKEN", valueFrom: { secretKeyRef: { name: "east-admin", key: "token" } } },
                ],
                ports: [
                  { name: "grpc", containerPort: 50051, protocol: "TCP" },
                  { name: "http", containerPort: 9090, protocol: "TCP" },
                ],
                livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10, failureThreshold: 3 },
                readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5, failureThreshold: 2 },
                resources: { limits: { memory: "512Mi" } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  runAsNonRoot: true,
                  capabilities: { drop: ["ALL"] },
                  seccompProfile: { type: "RuntimeDefault" },
                },
                volumeMounts: [{ name: "relay-key", mountPath: "/var/run/parley/relay-key", readOnly: true }],
              },
            ],
            volumes: [{ name: "relay-key", secret: { secretName: "east-key", defaultMode: 0o400, items: [{ key: "private.pem", path: "private.pem" }] } }],
          },
        },
      },
    });
  });

  test("a config change changes the pod template (pods roll), an unrelated change does not", () => {
    const hash = (cr: RelayServer) => (buildRelayDeployment(cr) as any).spec.template.metadata.annotations["parley.dev/config-hash"];
    assert.notEqual(hash(relay({ retention: "7d" })), hash(relay()));
    assert.equal(hash(relay({ replicas: 4 })), hash(relay()));
  });
});

describe("relay key Secret", () => {
  test("generated when absent: an immutable Secret with a working Ed25519 key pair", () => {
    const secret = buildRelayKeySecret(relay(), undefined) as any;
    assert.deepEqual({ ...secret, data: undefined }, { apiVersion: "v1", kind: "Secret", metadata: meta("east-key"), type: "Opaque", immutable: true, data: undefined });
    const pem = Buffer.from(secret.data["private.pem"], "base64").toString();
    const publicKey = Buffer.from(Buffer.from(secret.data["public.key"], "base64").toString(), "base64");
    assert.deepEqual(new Uint8Array(publicKey), publicKeyFromPem(pem));
  });

  test("never regenerated when the Secret holds a key (the generator is not even called)", () => {
    const existing = { data: { "private.pem": Buffer.from("-----BEGIN PRIVATE KEY-----…").toString("base64") } };
    assert.equal(buildRelayKeySecret(relay(), existing, () => assert.fail("a key was generated although one exists")), undefined);
  });

  test("each generation is a new key (two relays never share one)", () => {
    const a = buildRelayKeySecret(relay(), undefined) as any;
    const b = buildRelayKeySecret(relay(), undefined) as any;
    assert.notEqual(a.data["private.pem"], b.data["private.pem"]);
  });
});

describe("relay pairs", () => {
  test("the client Service selects the pods of the current primary; the replica Service always its own", () => {
    const cr = relay({ role: "primary", secondary: "west" });
    assert.deepEqual((buildRelayService(cr) as any).spec.selector, selector);
    assert.deepEqual((buildRelayService(cr, "west") as any).spec.selector, { ...selector, "app.kubernetes.io/instance": "west" });
    assert.equal((buildRelayService(cr, "west") as any).metadata.name, "east");
    const replica = buildRelayReplicaService(cr) as any;
    assert.equal(replica.metadata.name, "east-replica");
    assert.deepEqual(replica.spec.selector, selector);
  });

  test("the admin token Secret is generated once, and never when one exists", () => {
    const secret = buildRelayAdminSecret(relay(), undefined, () => "t0ken") as any;
    assert.deepEqual(secret, { apiVersion: "v1", kind: "Secret", metadata: meta("east-admin"), type: "Opaque", data: { token: Buffer.from("t0ken").toString("base64") } });
    assert.equal(buildRelayAdminSecret(relay(), { data: { token: "eA==" } }, () => assert.fail("generated although one exists")), undefined);
  });
});

describe("conditions", () => {
  test("lastTransitionTime moves only when a condition's status changes", () => {
    const t0 = new Date("2026-01-01T00:00:00Z");
    const t1 = new Date("2026-01-01T00:05:00Z");
    const first = mergeConditions(undefined, [{ type: "Ready", status: "False", reason: "InstancesNotReady", message: "0 of 1" }], 1, t0);
    const same = mergeConditions(first, [{ type: "Ready", status: "False", reason: "InstancesNotReady", message: "0 of 2" }], 2, t1);
    const flipped = mergeConditions(same, [{ type: "Ready", status: "True", reason: "InstancesReady", message: "2 of 2" }], 2, t1);
    assert.equal(same[0]!.lastTransitionTime, "2026-01-01T00:00:00Z");
    assert.equal(same[0]!.observedGeneration, 2);
    assert.equal(flipped[0]!.lastTransitionTime, "2026-01-01T00:05:00Z");
  });
});
