/**
 * Pure builders for everything a ChatPool owns: the channel instances (a
 * StatefulSet behind a headless Service, so each pod has the stable DNS name
 * it advertises to the lookups), the lookup Deployment and Service, the file
 * service (Deployment, Service, and a ReadWriteMany PVC unless the pool names an
 * existing claim), their ConfigMaps, the file-token Secret the channel and file
 * services share, PodDisruptionBudgets, one ServiceAccount and a ServiceMonitor.
 * Same CR (and replicas) in, same objects out; the controller applies them.
 *
 *   const sts = buildChannelStatefulSet(cr, 3);   // replicas come from the scaling decision
 */
import { randomBytes } from "node:crypto";
import { chatPoolSpecWithDefaults } from "../api/defaults.js";
import type { ChatPool } from "../api/types.js";
import { COMPONENT_LABEL, INSTANCE_LABEL, ownedMeta, RESTRICTED_CONTAINER_SECURITY, selectorLabels, service, type KubeObject } from "./meta.js";
import { CONFIG_HASH_ANNOTATION, configHash, RELAY_PUBLIC_KEY, relayNames } from "./relay.js";

export const CHANNEL_COMPONENT = "channel";
export const LOOKUP_COMPONENT = "lookup";
export const FILES_COMPONENT = "files";
export const CHANNEL_GRPC_PORT = 50052;
export const CHANNEL_HTTP_PORT = 9091;
export const LOOKUP_GRPC_PORT = 50053;
export const LOOKUP_HTTP_PORT = 9092;
export const FILES_HTTP_PORT = 8080;
export const FILES_STORAGE_DIR = "/var/lib/parley/files";
/**
 * Where the file pods link every upload while a ComplianceSink archives the
 * pool: a folder of the files volume, inside the same mount (a hard link
 * cannot cross mounts), which the compliance pod mounts as a subPath.
 */
export const COMPLIANCE_ARCHIVE_SUBDIR = "compliance-archive";
/** The key in the file-token Secret. */
export const FILE_TOKEN_KEY = "secret";

export const chatNames = (cr: Pick<ChatPool, "metadata">) => {
  const n = cr.metadata.name;
  return {
    serviceAccount: `${n}-chat`,
    fileTokenSecret: `${n}-file-token`,
    channel: `${n}-channel`, // StatefulSet, headless Service, ConfigMap (-config), PDB
    channelConfig: `${n}-channel-config`,
    lookup: `${n}-lookup`,
    lookupConfig: `${n}-lookup-config`,
    files: `${n}-files`,
    filesConfig: `${n}-files-config`,
    filesClaim: `${n}-files`,
    serviceMonitor: `${n}-chat`,
  };
};

/** The channel pods' label selector as a string: status.selector, for /scale (HPA finds the pods by it). */
export const channelSelector = (cr: Pick<ChatPool, "metadata">) =>
  Object.entries(selectorLabels(cr as never, CHANNEL_COMPONENT)).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(",");

/** The claim the file pods mount: the user's existing one, or ours. */
export const filesClaimName = (cr: ChatPool) => chatPoolSpecWithDefaults(cr.spec).files.storage.existingClaim ?? chatNames(cr).filesClaim;

const meta = (cr: ChatPool, name: string, component: string) => ownedMeta(cr, name, component);
const svcHost = (cr: ChatPool, service: string) => `${service}.${cr.metadata.namespace}.svc`;

export function buildChatServiceAccount(cr: ChatPool): KubeObject {
  // The chat services never call the Kubernetes API.
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: ownedMeta(cr, chatNames(cr).serviceAccount, "chat"), automountServiceAccountToken: false };
}

/**
 * The secret that signs file tokens (channel issues, files checks). Generated
 * once: undefined when `existing` has one, so a reconcile never invalidates
 * tokens in flight. Immutable so an edit cannot replace it by accident.
 */
export function buildFileTokenSecret(cr: ChatPool, existing: { data?: Record<string, string> } | undefined, generate = () => randomBytes(32).toString("base64url")): KubeObject | undefined {
  if (existing?.data?.[FILE_TOKEN_KEY]) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: ownedMeta(cr, chatNames(cr).fileTokenSecret, "chat"),
    type: "Opaque",
    immutable: true,
    data: { [FILE_TOKEN_KEY]: Buffer.from(generate()).toString("base64") },
  };
}

export function buildChannelConfigMap(cr: ChatPool): KubeObject {
  const s = chatPoolSpecWithDefaults(cr.spec);
  const names = chatNames(cr);
  const data: Record<string, string> = {
    PARLEY_NATS_URL: s.nats.url,
    PARLEY_GRPC_PORT: String(CHANNEL_GRPC_PORT),
    PARLEY_HTTP_PORT: String(CHANNEL_HTTP_PORT),
    PARLEY_FILE_SERVICE_URLS: `http://${svcHost(cr, names.files)}:${FILES_HTTP_PORT}`,
  };
  return { apiVersion: "v1", kind: "ConfigMap", metadata: meta(cr, names.channelConfig, CHANNEL_COMPONENT), data };
}

export function buildLookupConfigMap(cr: ChatPool): KubeObject {
  const s = chatPoolSpecWithDefaults(cr.spec);
  const data = { PARLEY_NATS_URL: s.nats.url, PARLEY_GRPC_PORT: String(LOOKUP_GRPC_PORT), PARLEY_HTTP_PORT: String(LOOKUP_HTTP_PORT) };
  return { apiVersion: "v1", kind: "ConfigMap", metadata: meta(cr, chatNames(cr).lookupConfig, LOOKUP_COMPONENT), data };
}

/** `complianceArchive`: a ComplianceSink archives this pool, so uploads are linked for it too. */
export function buildFilesConfigMap(cr: ChatPool, complianceArchive = false): KubeObject {
  const s = chatPoolSpecWithDefaults(cr.spec);
  const data: Record<string, string> = { PARLEY_NATS_URL: s.nats.url, PARLEY_HTTP_PORT: String(FILES_HTTP_PORT), PARLEY_FILES_STORAGE_DIR: FILES_STORAGE_DIR };
  if (complianceArchive) data.PARLEY_COMPLIANCE_ARCHIVE_DIR = `${FILES_STORAGE_DIR}/${COMPLIANCE_ARCHIVE_SUBDIR}`;
  return { apiVersion: "v1", kind: "ConfigMap", metadata: meta(cr, chatNames(cr).filesConfig, FILES_COMPONENT), data };
}

/** Headless: each channel pod gets `<pod>.<pool>-channel.<ns>.svc`, the address it advertises. */
export function buildChannelService(cr: ChatPool): KubeObject {
  return service(meta(cr, chatNames(cr).channel, CHANNEL_COMPONENT), selectorLabels(cr, CHANNEL_COMPONENT), { grpc: CHANNEL_GRPC_PORT, http: CHANNEL_HTTP_PORT }, { headless: true });
}

export function buildLookupService(cr: ChatPool): KubeObject {
  return service(meta(cr, chatNames(cr).lookup, LOOKUP_COMPONENT), selectorLabels(cr, LOOKUP_COMPONENT), { grpc: LOOKUP_GRPC_PORT, http: LOOKUP_HTTP_PORT });
}

export function buildFilesService(cr: ChatPool): KubeObject {
  return service(meta(cr, chatNames(cr).files, FILES_COMPONENT), selectorLabels(cr, FILES_COMPONENT), { http: FILES_HTTP_PORT });
}

/** Undefined with `existingClaim`: the user's claim is theirs (and outlives the pool). */
export function buildFilesClaim(cr: ChatPool): KubeObject | undefined {
  const st = chatPoolSpecWithDefaults(cr.spec).files.storage;
  if (st.existingClaim) return undefined;
  const spec: Record<string, unknown> = { accessModes: st.accessModes, resources: { requests: { storage: st.size } } };
  if (st.storageClassName) spec.storageClassName = st.storageClassName;
  return { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: meta(cr, chatNames(cr).filesClaim, FILES_COMPONENT), spec };
}

/** maxUnavailable 1 for each component: a node drain never takes a whole component at once. */
export function buildChatPodDisruptionBudgets(cr: ChatPool): KubeObject[] {
  const names = chatNames(cr);
  return ([[names.channel, CHANNEL_COMPONENT], [names.lookup, LOOKUP_COMPONENT], [names.files, FILES_COMPONENT]] as const).map(([name, component]) => ({
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: meta(cr, name, component),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels(cr, component) } },
  }));
}

const secretEnv = (name: string, secret: string, key: string) => ({ name, valueFrom: { secretKeyRef: { name: secret, key } } });
const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { apiVersion: "v1", fieldPath } } });

/** The relay's public key (sessions are signed with its key), from the RelayServer's key Secret. */
const relayKeyEnv = (cr: ChatPool) => secretEnv("PARLEY_RELAY_PUBLIC_KEY", relayNames({ metadata: { name: cr.spec.relay ?? "" } } as never).keySecret, RELAY_PUBLIC_KEY);

interface PodParts {
  component: string;
  configMap: KubeObject;
  args: string[];
  env: unknown[];
  ports: Array<{ name: string; containerPort: number }>;
  resources: Record<string, unknown>;
  volumes?: unknown[];
  volumeMounts?: unknown[];
  terminationGracePeriodSeconds: number;
}

function podTemplate(cr: ChatPool, p: PodParts): Record<string, unknown> {
  const s = chatPoolSpecWithDefaults(cr.spec);
  return {
    metadata: { labels: { ...selectorLabels(cr, p.component), "app.kubernetes.io/part-of": "parley" }, annotations: { [CONFIG_HASH_ANNOTATION]: configHash(p.configMap) } },
    spec: {
      serviceAccountName: chatNames(cr).serviceAccount,
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
      terminationGracePeriodSeconds: p.terminationGracePeriodSeconds,
      containers: [
        {
          name: p.component,
          image: s.image,
          imagePullPolicy: s.imagePullPolicy,
          args: p.args,
          envFrom: [{ configMapRef: { name: p.configMap.metadata.name } }],
          env: p.env,
          ports: p.ports.map((x) => ({ ...x, protocol: "TCP" })),
          livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10, failureThreshold: 3 },
          readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5, failureThreshold: 2 },
          resources: p.resources,
          securityContext: RESTRICTED_CONTAINER_SECURITY,
          volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, ...(p.volumeMounts ?? [])],
        },
      ],
      volumes: [{ name: "tmp", emptyDir: {} }, ...(p.volumes ?? [])],
    },
  };
}

/**
 * Channel instances. `replicas` comes from the scaling decision. Parallel pod
 * management: instances are independent, so scaling out by three starts three.
 * Each pod's instance id is its name and it advertises its own stable DNS name.
 */
export function buildChannelStatefulSet(cr: ChatPool, replicas: number): KubeObject {
  const s = chatPoolSpecWithDefaults(cr.spec);
  const names = chatNames(cr);
  const env = [
    fieldEnv("PARLEY_CHANNEL_INSTANCE_ID", "metadata.name"),
    { name: "PARLEY_CHANNEL_ADVERTISE_ADDRESS", value: `$(PARLEY_CHANNEL_INSTANCE_ID).${svcHost(cr, names.channel)}:${CHANNEL_GRPC_PORT}` },
    secretEnv("PARLEY_CHAT_DATABASE_URL", s.database.secretRef.name, s.database.secretRef.key),
    relayKeyEnv(cr),
    secretEnv("PARLEY_FILE_TOKEN_SECRET", names.fileTokenSecret, FILE_TOKEN_KEY),
  ];
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: meta(cr, names.channel, CHANNEL_COMPONENT),
    spec: {
      replicas,
      serviceName: names.channel,
      podManagementPolicy: "Parallel",
      selector: { matchLabels: selectorLabels(cr, CHANNEL_COMPONENT) },
      updateStrategy: { type: "RollingUpdate" },
      template: podTemplate(cr, {
        component: CHANNEL_COMPONENT,
        configMap: buildChannelConfigMap(cr),
        args: ["channel"],
        env,
        ports: [{ name: "grpc", containerPort: CHANNEL_GRPC_PORT }, { name: "http", containerPort: CHANNEL_HTTP_PORT }],
        resources: s.channel.resources,
        // Ending sessions is quick; in-flight posts get the shutdown grace (10 s).
        terminationGracePeriodSeconds: 30,
      }),
    },
  };
}

export function buildLookupDeployment(cr: ChatPool): KubeObject {
  const s = chatPoolSpecWithDefaults(cr.spec);
  const names = chatNames(cr);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(cr, names.lookup, LOOKUP_COMPONENT),
    spec: {
      replicas: s.lookup.replicas,
      selector: { matchLabels: selectorLabels(cr, LOOKUP_COMPONENT) },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: podTemplate(cr, {
        component: LOOKUP_COMPONENT,
        configMap: buildLookupConfigMap(cr),
        args: ["lookup"],
        env: [relayKeyEnv(cr)],
        ports: [{ name: "grpc", containerPort: LOOKUP_GRPC_PORT }, { name: "http", containerPort: LOOKUP_HTTP_PORT }],
        resources: s.lookup.resources,
        terminationGracePeriodSeconds: 15,
      }),
    },
  };
}

export function buildFilesDeployment(cr: ChatPool, complianceArchive = false): KubeObject {
  const s = chatPoolSpecWithDefaults(cr.spec);
  const names = chatNames(cr);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(cr, names.files, FILES_COMPONENT),
    spec: {
      replicas: s.files.replicas,
      selector: { matchLabels: selectorLabels(cr, FILES_COMPONENT) },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: podTemplate(cr, {
        component: FILES_COMPONENT,
        configMap: buildFilesConfigMap(cr, complianceArchive),
        args: ["files"],
        env: [fieldEnv("PARLEY_FILES_INSTANCE_ID", "metadata.name"), secretEnv("PARLEY_FILE_TOKEN_SECRET", names.fileTokenSecret, FILE_TOKEN_KEY)],
        ports: [{ name: "http", containerPort: FILES_HTTP_PORT }],
        resources: s.files.resources,
        volumes: [{ name: "files", persistentVolumeClaim: { claimName: filesClaimName(cr) } }],
        volumeMounts: [{ name: "files", mountPath: FILES_STORAGE_DIR }],
        terminationGracePeriodSeconds: 30,
      }),
    },
  };
}

/** Only built when the Prometheus Operator's CRD exists. One monitor for the pool's three Services. */
export function buildChatServiceMonitor(cr: ChatPool): KubeObject {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: ownedMeta(cr, chatNames(cr).serviceMonitor, "chat"),
    spec: {
      selector: {
        matchLabels: { "app.kubernetes.io/name": "parley", [INSTANCE_LABEL]: cr.metadata.name },
        matchExpressions: [{ key: COMPONENT_LABEL, operator: "In", values: [CHANNEL_COMPONENT, LOOKUP_COMPONENT, FILES_COMPONENT] }],
      },
      endpoints: [{ port: "http", path: "/metrics", interval: "30s" }],
    },
  };
}
