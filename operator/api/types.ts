/**
 * The parley.dev/v1alpha1 custom resources as TypeScript types. The schema
 * the apiserver enforces lives in crds/*.yaml; these types mirror it, and
 * defaults.ts fills in the same defaults so builders never see a hole.
 */

export const GROUP = "parley.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Set to "true" on a custom resource to stop the operator touching it and what it owns. */
export const PAUSE_ANNOTATION = "parley.dev/paused";

/** On a ComplianceSink: flush a last export before the sink goes (removed once it did, or gave up). */
export const FINAL_EXPORT_FINALIZER = "parley.dev/final-export";
/** On a ComplianceSink: "true" lets it go without the final export (its service is gone for good). */
export const SKIP_FINAL_EXPORT_ANNOTATION = "parley.dev/skip-final-export";
/** On a ComplianceSink: how long a deletion waits for an unreachable service before giving up (default 10m). */
export const FINAL_EXPORT_TIMEOUT_ANNOTATION = "parley.dev/final-export-timeout";
/**
 * On a ComplianceSink: host:port of its admin gRPC instead of its Service's
 * DNS name — for an operator outside the cluster network, and for tests that
 * run the compliance process themselves.
 */
export const ADMIN_ADDRESS_ANNOTATION = "parley.dev/admin-address";

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  deletionTimestamp?: string;
}

export interface SecretKeyRef {
  name: string;
  key?: string;
}

export interface NatsSpec {
  url?: string;
  credentialsSecretRef?: SecretKeyRef;
}

/** A metav1.Condition. */
export interface Condition {
  type: "Ready" | "Progressing" | "Degraded" | string;
  status: "True" | "False" | "Unknown";
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export type RelayRole = "standalone" | "primary" | "secondary";

export interface RelayServerSpec {
  image?: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  replicas?: number;
  relayId?: string;
  retention?: string;
  quotas?: { maxMessageBytes?: string; maxQueueMessages?: number; maxQueueBytes?: string };
  database: { secretRef: SecretKeyRef };
  nats?: NatsSpec;
  resources?: Record<string, unknown>;
  role?: RelayRole;
  secondary?: string;
  failoverDelay?: string;
  switchoverDelay?: string;
}

export interface RelayServerStatus {
  observedGeneration?: number;
  phase?: string;
  instances?: number;
  readyInstances?: number;
  currentPrimary?: string;
  currentPrimaryTimestamp?: string;
  targetPrimary?: string;
  targetPrimaryTimestamp?: string;
  replicationLagSeconds?: number;
  queues?: { depth?: number; oldestAgeSeconds?: number };
  conditions?: Condition[];
}

export interface RelayServer {
  apiVersion: typeof API_VERSION;
  kind: "RelayServer";
  metadata: ObjectMeta;
  spec: RelayServerSpec;
  status?: RelayServerStatus;
}

export interface ChatPoolSpec {
  image?: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  relay?: string;
  channel?: {
    minInstances?: number;
    maxInstances?: number;
    targetUsersPerInstance?: number;
    /** Least time between two load-driven scaling steps, e.g. "2m". */
    scaleCooldown?: string;
    replicas?: number;
    resources?: Record<string, unknown>;
  };
  lookup?: { replicas?: number; resources?: Record<string, unknown> };
  files?: {
    replicas?: number;
    resources?: Record<string, unknown>;
    storage?: { size?: string; storageClassName?: string; existingClaim?: string; accessModes?: string[] };
  };
  database: { secretRef: SecretKeyRef };
  nats?: NatsSpec;
}

export interface ChatPoolStatus {
  observedGeneration?: number;
  phase?: string;
  instances?: number;
  readyInstances?: number;
  selector?: string;
  totalUsers?: number;
  load?: Array<{ instance: string; users?: number; sessions?: number; healthy?: boolean; reportedAt?: string }>;
  lastScaleTime?: string;
  conditions?: Condition[];
}

export interface ChatPool {
  apiVersion: typeof API_VERSION;
  kind: "ChatPool";
  metadata: ObjectMeta;
  spec: ChatPoolSpec;
  status?: ChatPoolStatus;
}

export interface ComplianceSinkSpec {
  image?: string;
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  chatPools: string[];
  conversationInterval?: string;
  format?: { type?: "xml" | "xslt" | "eml"; xsltConfigMapRef?: { name: string; key?: string } };
  output: { existingClaim?: string; size?: string; storageClassName?: string };
  stagingDatabase: { secretRef: SecretKeyRef };
  pickupRetention?: string;
  nats?: NatsSpec;
}

export interface ComplianceSinkStatus {
  observedGeneration?: number;
  phase?: string;
  stagedCount?: number;
  oldestStagedAgeSeconds?: number;
  lastExportTime?: string;
  conditions?: Condition[];
}

export interface ComplianceSink {
  apiVersion: typeof API_VERSION;
  kind: "ComplianceSink";
  metadata: ObjectMeta;
  spec: ComplianceSinkSpec;
  status?: ComplianceSinkStatus;
}

/** Resource paths of the three kinds, for the REST client. */
export const RESOURCES = {
  RelayServer: { group: GROUP, version: VERSION, plural: "relayservers" },
  ChatPool: { group: GROUP, version: VERSION, plural: "chatpools" },
  ComplianceSink: { group: GROUP, version: VERSION, plural: "compliancesinks" },
} as const;
