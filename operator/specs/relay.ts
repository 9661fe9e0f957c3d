/**
 * Pure builders for everything a RelayServer owns. Each takes the custom
 * resource (defaults are applied here, so a CR straight from the API or from
 * a test works the same) and returns the desired object; the controller
 * server-side-applies them. No I/O, no clock: the same CR gives the same objects.
 *
 *   const deployment = buildRelayDeployment(cr);   // then apply(deployment)
 */
import { createHash, randomBytes } from "node:crypto";
import { generateKeyPair, type KeyPair } from "../../services/common/crypto.js";
import { relaySpecWithDefaults } from "../api/defaults.js";
import type { RelayServer } from "../api/types.js";
import { ownedMeta, RESTRICTED_CONTAINER_SECURITY, selectorLabels, service, type KubeObject } from "./meta.js";

export const RELAY_COMPONENT = "relay";
export const RELAY_GRPC_PORT = 50051;
export const RELAY_HTTP_PORT = 9090;
export const RELAY_KEY_DIR = "/var/run/parley/relay-key";
/** The Secret keys: the relay reads private.pem (--relay-key-file); clients are given public.key (raw Ed25519, base64). */
export const RELAY_PRIVATE_KEY = "private.pem";
export const RELAY_PUBLIC_KEY = "public.key";
export const CONFIG_HASH_ANNOTATION = "parley.dev/config-hash";
/** The Secret key holding the relay's admin token (PARLEY_ADMIN_TOKEN), which the operator uses for promotion, fencing and statistics. */
export const RELAY_ADMIN_TOKEN_KEY = "token";

export const relayNames = (cr: Pick<RelayServer, "metadata">) => ({
  deployment: cr.metadata.name,
  service: cr.metadata.name,
  config: `${cr.metadata.name}-config`,
  keySecret: `${cr.metadata.name}-key`,
  adminSecret: `${cr.metadata.name}-admin`,
  /** Paired relays only: selects this RelayServer's own pods, whichever is primary (admin API, peers). */
  replicaService: `${cr.metadata.name}-replica`,
  serviceAccount: `${cr.metadata.name}-relay`,
  role: `${cr.metadata.name}-relay`,
  pdb: cr.metadata.name,
  serviceMonitor: cr.metadata.name,
});

const meta = (cr: RelayServer, name: string, annotations?: Record<string, string>) => ownedMeta(cr, name, RELAY_COMPONENT, annotations);

/** Relay flags as environment variables (services/relay/config.ts); the Deployment loads them with envFrom. */
export function buildRelayConfigMap(cr: RelayServer): KubeObject {
  const s = relaySpecWithDefaults(cr);
  const data: Record<string, string> = {
    PARLEY_RELAY_ID: s.relayId,
    PARLEY_RELAY_ROLE: s.role,
    PARLEY_NATS_URL: s.nats.url,
    PARLEY_GRPC_PORT: String(RELAY_GRPC_PORT),
    PARLEY_HTTP_PORT: String(RELAY_HTTP_PORT),
    PARLEY_RELAY_KEY_FILE: `${RELAY_KEY_DIR}/${RELAY_PRIVATE_KEY}`,
    PARLEY_RELAY_RETENTION: s.retention,
    PARLEY_RELAY_MAX_MESSAGE_BYTES: s.quotas.maxMessageBytes,
    PARLEY_RELAY_MAX_QUEUE_MESSAGES: String(s.quotas.maxQueueMessages),
    PARLEY_RELAY_MAX_QUEUE_BYTES: s.quotas.maxQueueBytes,
  };
  return { apiVersion: "v1", kind: "ConfigMap", metadata: meta(cr, relayNames(cr).config), data };
}

/**
 * The relay's key pair. Returns undefined when `existing` already holds a
 * private key: a relay's key is its identity (clients pin it), so it is
 * generated once and never replaced by a reconcile. The Secret is immutable
 * so an edit cannot replace it by accident either.
 */
export function buildRelayKeySecret(
  cr: RelayServer,
  existing: { data?: Record<string, string> } | undefined,
  generate: () => KeyPair = generateKeyPair,
): KubeObject | undefined {
  if (existing?.data?.[RELAY_PRIVATE_KEY]) return undefined;
  const key = generate();
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(cr, relayNames(cr).keySecret),
    type: "Opaque",
    immutable: true,
    data: {
      [RELAY_PRIVATE_KEY]: Buffer.from(key.privateKeyPem).toString("base64"),
      [RELAY_PUBLIC_KEY]: Buffer.from(Buffer.from(key.publicKey).toString("base64")).toString("base64"),
    },
  };
}

/**
 * The relay's admin token, generated once like the key (an existing one, ours
 * or brought by the user, is kept). Returns undefined when `existing` holds one.
 */
export function buildRelayAdminSecret(
  cr: RelayServer,
  existing: { data?: Record<string, string> } | undefined,
  generate: () => string = () => randomBytes(24).toString("base64url"),
): KubeObject | undefined {
  if (existing?.data?.[RELAY_ADMIN_TOKEN_KEY]) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(cr, relayNames(cr).adminSecret),
    type: "Opaque",
    data: { [RELAY_ADMIN_TOKEN_KEY]: Buffer.from(generate()).toString("base64") },
  };
}

/**
 * The client-facing Service. `primary` is the RelayServer currently serving
 * clients: itself unless it is one of a pair whose other member was promoted,
 * so clients keep one address across a failover.
 */
export function buildRelayService(cr: RelayServer, primary: string = cr.metadata.name): KubeObject {
  const selected = { ...cr, metadata: { ...cr.metadata, name: primary } };
  return service(meta(cr, relayNames(cr).service), selectorLabels(selected, RELAY_COMPONENT), { grpc: RELAY_GRPC_PORT, http: RELAY_HTTP_PORT });
}

/** Paired relays: this RelayServer's own pods, for the operator's admin calls and the peer's rebuilds. */
export function buildRelayReplicaService(cr: RelayServer): KubeObject {
  return service(meta(cr, relayNames(cr).replicaService), selectorLabels(cr, RELAY_COMPONENT), { grpc: RELAY_GRPC_PORT, http: RELAY_HTTP_PORT });
}

/** maxUnavailable 1: a drain never takes all instances at once, and a single instance can still be evicted. */
export function buildRelayPodDisruptionBudget(cr: RelayServer): KubeObject {
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: meta(cr, relayNames(cr).pdb),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels(cr, RELAY_COMPONENT) } },
  };
}

/** The relay's identity in the cluster; it may read its own RelayServer (the failover target) and nothing else. */
export function buildRelayServiceAccount(cr: RelayServer): KubeObject {
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: meta(cr, relayNames(cr).serviceAccount) };
}

export function buildRelayRole(cr: RelayServer): KubeObject {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: meta(cr, relayNames(cr).role),
    rules: [{ apiGroups: ["parley.dev"], resources: ["relayservers"], resourceNames: [cr.metadata.name], verbs: ["get", "watch"] }],
  };
}

export function buildRelayRoleBinding(cr: RelayServer): KubeObject {
  const names = relayNames(cr);
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: meta(cr, names.role),
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: names.role },
    subjects: [{ kind: "ServiceAccount", name: names.serviceAccount, namespace: cr.metadata.namespace }],
  };
}

/** A digest of the rendered config: in the pod template, so a config change rolls the pods. */
export function configHash(configMap: KubeObject): string {
  return createHash("sha256").update(JSON.stringify(configMap.data ?? {})).digest("hex").slice(0, 16);
}

export function buildRelayDeployment(cr: RelayServer): KubeObject {
  const s = relaySpecWithDefaults(cr);
  const names = relayNames(cr);
  const selector = selectorLabels(cr, RELAY_COMPONENT);
  const env = [
    { name: "PARLEY_RELAY_DATABASE_URL", valueFrom: { secretKeyRef: { name: s.database.secretRef.name, key: s.database.secretRef.key } } },
    // Each pod is a distinct replica in the relay's change stream.
    { name: "PARLEY_RELAY_REPLICA_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } },
    { name: "PARLEY_ADMIN_TOKEN", valueFrom: { secretKeyRef: { name: names.adminSecret, key: RELAY_ADMIN_TOKEN_KEY } } },
  ];
  // spec.nats.credentialsSecretRef is not passed yet: the relay has no NATS credentials flag (docs/operator.md).
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(cr, names.deployment),
    spec: {
      replicas: s.replicas,
      selector: { matchLabels: selector },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: { ...selector, "app.kubernetes.io/part-of": "parley" }, annotations: { [CONFIG_HASH_ANNOTATION]: configHash(buildRelayConfigMap(cr)) } },
        spec: {
          serviceAccountName: names.serviceAccount,
          securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: "relay",
              image: s.image,
              imagePullPolicy: s.imagePullPolicy,
              args: ["relay"],
              envFrom: [{ configMapRef: { name: names.config } }],
              env,
              ports: [
                { name: "grpc", containerPort: RELAY_GRPC_PORT, protocol: "TCP" },
                { name: "http", containerPort: RELAY_HTTP_PORT, protocol: "TCP" },
              ],
              livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10, failureThreshold: 3 },
              readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5, failureThreshold: 2 },
              resources: s.resources,
              securityContext: RESTRICTED_CONTAINER_SECURITY,
              volumeMounts: [{ name: "relay-key", mountPath: RELAY_KEY_DIR, readOnly: true }],
            },
          ],
          volumes: [{ name: "relay-key", secret: { secretName: names.keySecret, defaultMode: 0o400, items: [{ key: RELAY_PRIVATE_KEY, path: RELAY_PRIVATE_KEY }] } }],
        },
      },
    },
  };
}

/** Only built when the Prometheus Operator's CRD exists (the controller checks). */
export function buildRelayServiceMonitor(cr: RelayServer): KubeObject {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: meta(cr, relayNames(cr).serviceMonitor),
    spec: {
      selector: { matchLabels: selectorLabels(cr, RELAY_COMPONENT) },
      endpoints: [{ port: "http", path: "/metrics", interval: "30s" }],
    },
  };
}
