/**
 * What the operator benchmark applies, per custom-resource kind: the custom
 * resource itself, the objects the operator creates for it (the same builders
 * the controllers call, so the baseline applies exactly the operator's object
 * set), the reads the controller makes before writing, and when it counts as
 * Ready.
 *
 *   const w = WORKLOADS.RelayServer;
 *   await w.prepare(kube, ns);                 // what must exist first (a ChatPool's relay key)
 *   const cr = w.resource("relay-7", ns, opts);
 *   w.objects(created) / w.reads(created)      // the baseline's requests
 */
import { chatPoolSpecWithDefaults } from "../../operator/api/defaults.js";
import { API_VERSION, type ChatPool, type RelayServer } from "../../operator/api/types.js";
import { resourcePath, type KubeClient } from "../../operator/kube/client.js";
import type { KubeObject } from "../../operator/specs/meta.js";
import {
  buildChannelConfigMap,
  buildChannelService,
  buildChannelStatefulSet,
  buildChatPodDisruptionBudgets,
  buildChatServiceAccount,
  buildFilesClaim,
  buildFilesConfigMap,
  buildFilesDeployment,
  buildFilesService,
  buildFileTokenSecret,
  buildLookupConfigMap,
  buildLookupDeployment,
  buildLookupService,
  chatNames,
} from "../../operator/specs/chat.js";
import {
  buildRelayAdminSecret,
  buildRelayConfigMap,
  buildRelayDeployment,
  buildRelayKeySecret,
  buildRelayPodDisruptionBudget,
  buildRelayRole,
  buildRelayRoleBinding,
  buildRelayService,
  buildRelayServiceAccount,
  relayNames,
} from "../../operator/specs/relay.js";

export type Kind = "RelayServer" | "ChatPool";
export const KINDS: readonly Kind[] = ["RelayServer", "ChatPool"];

export interface WorkloadOptions {
  /** NATS a ChatPool's controller listens to for load reports. */
  natsUrl: string;
}

interface CustomResource extends KubeObject {
  metadata: KubeObject["metadata"] & { uid?: string; generation?: number };
  spec: Record<string, unknown>;
  status?: { phase?: string; observedGeneration?: number };
}

export interface Workload {
  kind: Kind;
  /** Kinds of the objects it owns (watched by the benchmark to see them appear). */
  ownedKinds: ReadonlyArray<{ apiVersion: string; kind: string }>;
  /** Creates what every resource of this kind needs before it can converge. */
  prepare(kube: KubeClient, namespace: string): Promise<void>;
  resource(name: string, namespace: string, opts: WorkloadOptions): CustomResource;
  /** The operator's object set for a created resource (with its uid), in the controller's order. */
  objects(cr: CustomResource): KubeObject[];
  /** The GETs the controller makes before it writes (existing generated Secrets, the relay key, ...). */
  reads(cr: CustomResource): string[];
  /** What the status subresource says once everything is up. */
  readyStatus(cr: CustomResource): Record<string, unknown>;
}

const defined = (objs: Array<KubeObject | undefined>) => objs.filter((o): o is KubeObject => o !== undefined);

/** Every ChatPool names this RelayServer; its key Secret is created by prepare(). */
const CHAT_RELAY = "bench-relay";

const relayServer: Workload = {
  kind: "RelayServer",
  ownedKinds: [
    { apiVersion: "v1", kind: "ServiceAccount" },
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role" },
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding" },
    { apiVersion: "v1", kind: "Secret" },
    { apiVersion: "v1", kind: "ConfigMap" },
    { apiVersion: "policy/v1", kind: "PodDisruptionBudget" },
    { apiVersion: "apps/v1", kind: "Deployment" },
    { apiVersion: "v1", kind: "Service" },
  ],
  prepare: async () => {},
  resource: (name, namespace) => ({
    apiVersion: API_VERSION,
    kind: "RelayServer",
    metadata: { name, namespace },
    spec: { database: { secretRef: { name: `${name}-db` } } },
  }),
  objects: (cr) => {
    const r = cr as unknown as RelayServer;
    return defined([
      buildRelayServiceAccount(r),
      buildRelayRole(r),
      buildRelayRoleBinding(r),
      buildRelayKeySecret(r, undefined),
      buildRelayAdminSecret(r, undefined),
      buildRelayConfigMap(r),
      buildRelayPodDisruptionBudget(r),
      buildRelayDeployment(r),
      buildRelayService(r),
    ]);
  },
  reads: (cr) => {
    const names = relayNames(cr as unknown as RelayServer);
    return [resourcePath("v1", "Secret", cr.metadata.namespace, names.keySecret), resourcePath("v1", "Secret", cr.metadata.namespace, names.adminSecret)];
  },
  readyStatus: (cr) => ({
    observedGeneration: cr.metadata.generation,
    phase: "Ready",
    instances: 1,
    readyInstances: 1,
    currentPrimary: cr.metadata.name,
    conditions: [{ type: "Ready", status: "True", reason: "InstancesReady", message: "1 of 1 relay instances ready", lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z") }],
  }),
};

const chatPool: Workload = {
  kind: "ChatPool",
  ownedKinds: [
    { apiVersion: "v1", kind: "ServiceAccount" },
    { apiVersion: "v1", kind: "Secret" },
    { apiVersion: "v1", kind: "ConfigMap" },
    { apiVersion: "v1", kind: "Service" },
    { apiVersion: "v1", kind: "PersistentVolumeClaim" },
    { apiVersion: "policy/v1", kind: "PodDisruptionBudget" },
    { apiVersion: "apps/v1", kind: "Deployment" },
    { apiVersion: "apps/v1", kind: "StatefulSet" },
  ],
  prepare: async (kube, namespace) => {
    // The relay's public key, which channel pods verify sessions with (the ChatPool's RelayKey step checks it).
    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: relayNames({ metadata: { name: CHAT_RELAY } } as never).keySecret, namespace }, data: { "public.key": Buffer.from(Buffer.alloc(32, 1).toString("base64")).toString("base64") } };
    await kube.request("PATCH", `${resourcePath("v1", "Secret", namespace, secret.metadata.name)}?fieldManager=parley-bench&force=true`, secret, "application/apply-patch+yaml");
  },
  resource: (name, namespace, opts) => ({
    apiVersion: API_VERSION,
    kind: "ChatPool",
    metadata: { name, namespace },
    spec: { relay: CHAT_RELAY, database: { secretRef: { name: `${name}-db` } }, nats: { url: opts.natsUrl } },
  }),
  objects: (cr) => {
    const p = cr as unknown as ChatPool;
    return defined([
      buildChatServiceAccount(p),
      buildFileTokenSecret(p, undefined),
      buildChannelConfigMap(p),
      buildLookupConfigMap(p),
      buildFilesConfigMap(p),
      buildChannelService(p),
      buildLookupService(p),
      buildFilesService(p),
      buildFilesClaim(p),
      ...buildChatPodDisruptionBudgets(p),
      buildLookupDeployment(p),
      buildFilesDeployment(p),
      buildChannelStatefulSet(p, chatPoolSpecWithDefaults(p.spec).channel.minInstances),
    ]);
  },
  reads: (cr) => {
    const ns = cr.metadata.namespace;
    const names = chatNames(cr as unknown as ChatPool);
    return [
      resourcePath("v1", "Secret", ns, relayNames({ metadata: { name: CHAT_RELAY } } as never).keySecret),
      resourcePath("v1", "Secret", ns, names.fileTokenSecret),
      resourcePath("apps/v1", "StatefulSet", ns, names.channel),
    ];
  },
  readyStatus: (cr) => {
    const min = chatPoolSpecWithDefaults((cr as unknown as ChatPool).spec).channel.minInstances;
    return {
      observedGeneration: cr.metadata.generation,
      phase: "Ready",
      instances: min,
      readyInstances: min,
      conditions: [{ type: "Ready", status: "True", reason: "InstancesReady", message: `${min} of ${min} channel instances ready; lookup and files ready`, lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, "Z") }],
    };
  },
};

export const WORKLOADS: Record<Kind, Workload> = { RelayServer: relayServer, ChatPool: chatPool };

/** Ready at the generation the benchmark applied: what a user waits for with `kubectl wait --for=condition=Ready`. */
export const isReady = (cr: { metadata?: { generation?: number }; status?: { phase?: string; observedGeneration?: number } }) =>
  cr.status?.phase === "Ready" && cr.status.observedGeneration === cr.metadata?.generation;

/** A fully rolled-out status for a Deployment or StatefulSet: what the workload controller and kubelets would report. */
export function rolledOutStatus(obj: { metadata?: { generation?: number }; spec?: { replicas?: number } }): Record<string, number | undefined> {
  const n = obj.spec?.replicas ?? 1;
  return { observedGeneration: obj.metadata?.generation, replicas: n, updatedReplicas: n, readyReplicas: n, availableReplicas: n, currentReplicas: n };
}

export const isRolledOut = (obj: { metadata?: { generation?: number }; spec?: { replicas?: number }; status?: { observedGeneration?: number; readyReplicas?: number } }) =>
  obj.status?.observedGeneration === obj.metadata?.generation && (obj.status?.readyReplicas ?? 0) >= (obj.spec?.replicas ?? 1);

export type { CustomResource };
