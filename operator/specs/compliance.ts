/**
 * Pure builders for everything a ComplianceSink owns: one `parley compliance`
 * Deployment, its ConfigMap, the admin-token Secret (generated once), the
 * output PVC (unless the sink names an existing claim), a Service for the
 * admin gRPC and /metrics, a ServiceAccount and a ServiceMonitor.
 *
 * What comes from the ChatPools the sink archives — their NATS, and the files
 * claim whose `compliance-archive` folder the file pods link uploads into — is
 * resolved by the controller and passed in as `SinkInputs`.
 *
 *   const d = buildComplianceDeployment(cr, { natsUrl, archiveClaim: "pool-files" });
 */
import { createHash, randomBytes } from "node:crypto";
import { complianceSinkSpecWithDefaults } from "../api/defaults.js";
import type { ComplianceSink } from "../api/types.js";
import { COMPLIANCE_STREAM } from "../../services/common/compliance.js";
import { COMPLIANCE_ARCHIVE_SUBDIR } from "./chat.js";
import { ownedMeta, RESTRICTED_CONTAINER_SECURITY, selectorLabels, service, type KubeObject } from "./meta.js";
import { CONFIG_HASH_ANNOTATION, configHash } from "./relay.js";

export const COMPLIANCE_COMPONENT = "compliance";
export const COMPLIANCE_GRPC_PORT = 50054;
export const COMPLIANCE_HTTP_PORT = 9094;
export const COMPLIANCE_OUTPUT_DIR = "/var/lib/parley/compliance/out";
export const COMPLIANCE_ARCHIVE_DIR = "/var/lib/parley/compliance/archive";
export const COMPLIANCE_XSLT_DIR = "/etc/parley/xslt";
/** The key in the admin-token Secret. */
export const ADMIN_TOKEN_KEY = "token";

/** Resolved from the sink's ChatPools by the controller. */
export interface SinkInputs {
  natsUrl: string;
  /** The ChatPools' files claim (its compliance-archive folder is the archive area); undefined: attachments not archived. */
  archiveClaim?: string;
}

export const complianceNames = (cr: Pick<ComplianceSink, "metadata">) => {
  const n = cr.metadata.name;
  return {
    deployment: `${n}-compliance`, // also the Service, ConfigMap (-config), ServiceAccount, ServiceMonitor
    config: `${n}-compliance-config`,
    adminSecret: `${n}-compliance-admin`,
    outputClaim: `${n}-compliance-out`,
  };
};

/** host:port of the sink's admin gRPC inside the cluster. */
export const complianceAdminAddress = (cr: Pick<ComplianceSink, "metadata">) =>
  `${complianceNames(cr).deployment}.${cr.metadata.namespace}.svc:${COMPLIANCE_GRPC_PORT}`;

/**
 * The durable consumer on the compliance stream: one per sink (two sinks on
 * one stream each get every event), stable across restarts, within
 * JetStream's name rules.
 */
export function complianceConsumer(cr: Pick<ComplianceSink, "metadata">): string {
  const raw = `sink-${cr.metadata.namespace}-${cr.metadata.name}`.replace(/[^A-Za-z0-9_-]/g, "-");
  if (raw.length <= 64) return raw;
  const hash = createHash("sha256").update(raw).digest("hex").slice(0, 8);
  return `${raw.slice(0, 55)}-${hash}`;
}

export const outputClaimName = (cr: ComplianceSink) => complianceSinkSpecWithDefaults(cr.spec).output.existingClaim ?? complianceNames(cr).outputClaim;

const meta = (cr: ComplianceSink, name: string) => ownedMeta(cr, name, COMPLIANCE_COMPONENT);

export function buildComplianceServiceAccount(cr: ComplianceSink): KubeObject {
  // The compliance service never calls the Kubernetes API.
  return { apiVersion: "v1", kind: "ServiceAccount", metadata: meta(cr, complianceNames(cr).deployment), automountServiceAccountToken: false };
}

/**
 * The admin API's bearer token (the operator uses it for status and the final
 * export). Generated once: undefined when `existing` has one. Immutable.
 */
export function buildComplianceAdminSecret(cr: ComplianceSink, existing: { data?: Record<string, string> } | undefined, generate = () => randomBytes(32).toString("base64url")): KubeObject | undefined {
  if (existing?.data?.[ADMIN_TOKEN_KEY]) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta(cr, complianceNames(cr).adminSecret),
    type: "Opaque",
    immutable: true,
    data: { [ADMIN_TOKEN_KEY]: Buffer.from(generate()).toString("base64") },
  };
}

/** `parley compliance` flags as environment variables (services/compliance/config.ts). */
export function buildComplianceConfigMap(cr: ComplianceSink, inputs: SinkInputs): KubeObject {
  const s = complianceSinkSpecWithDefaults(cr.spec);
  const data: Record<string, string> = {
    PARLEY_NATS_URL: inputs.natsUrl,
    // The channel and file pods of a ChatPool publish on the default stream.
    PARLEY_COMPLIANCE_STREAM: COMPLIANCE_STREAM,
    PARLEY_COMPLIANCE_CONSUMER: complianceConsumer(cr),
    PARLEY_COMPLIANCE_OUTPUT_DIR: COMPLIANCE_OUTPUT_DIR,
    PARLEY_COMPLIANCE_ARCHIVE_DIR: inputs.archiveClaim ? COMPLIANCE_ARCHIVE_DIR : "",
    PARLEY_GRPC_PORT: String(COMPLIANCE_GRPC_PORT),
    PARLEY_HTTP_PORT: String(COMPLIANCE_HTTP_PORT),
    PARLEY_COMPLIANCE_CONVERSATION_INTERVAL: s.conversationInterval,
    PARLEY_COMPLIANCE_PICKUP_RETENTION: s.pickupRetention,
  };
  if (s.format.type === "xslt" && s.format.xsltConfigMapRef) data.PARLEY_COMPLIANCE_XSLT = `${COMPLIANCE_XSLT_DIR}/${s.format.xsltConfigMapRef.key}`;
  if (s.format.type === "eml") data.PARLEY_COMPLIANCE_EML = "true";
  return { apiVersion: "v1", kind: "ConfigMap", metadata: meta(cr, complianceNames(cr).config), data };
}

/**
 * The output volume for pickup. ReadWriteMany: the pickup (another pod, or an
 * external system mounting the same share) reads it while the service writes.
 * Undefined with `existingClaim`: the user's claim is theirs.
 */
export function buildComplianceOutputClaim(cr: ComplianceSink): KubeObject | undefined {
  const out = complianceSinkSpecWithDefaults(cr.spec).output;
  if (out.existingClaim) return undefined;
  const spec: Record<string, unknown> = { accessModes: ["ReadWriteMany"], resources: { requests: { storage: out.size } } };
  if (out.storageClassName) spec.storageClassName = out.storageClassName;
  return { apiVersion: "v1", kind: "PersistentVolumeClaim", metadata: meta(cr, complianceNames(cr).outputClaim), spec };
}

export function buildComplianceService(cr: ComplianceSink): KubeObject {
  return service(meta(cr, complianceNames(cr).deployment), selectorLabels(cr, COMPLIANCE_COMPONENT), { grpc: COMPLIANCE_GRPC_PORT, http: COMPLIANCE_HTTP_PORT });
}

/**
 * One replica with the Recreate strategy: exports run under a Postgres
 * advisory lock, so a second pod would be safe but would only skip its turns; Recreate keeps
 * a rollout from running two at all (and lets a ReadWriteOnce output claim
 * move). No PodDisruptionBudget: with one replica it could only forbid every
 * voluntary eviction (blocking node drains) or allow it anyway; the durable
 * consumer keeps the stream's events while the pod moves, so nothing is lost.
 */
export function buildComplianceDeployment(cr: ComplianceSink, inputs: SinkInputs): KubeObject {
  const s = complianceSinkSpecWithDefaults(cr.spec);
  const names = complianceNames(cr);
  const volumes: unknown[] = [
    { name: "tmp", emptyDir: {} },
    { name: "output", persistentVolumeClaim: { claimName: outputClaimName(cr) } },
  ];
  const mounts: unknown[] = [
    { name: "tmp", mountPath: "/tmp" },
    { name: "output", mountPath: COMPLIANCE_OUTPUT_DIR },
  ];
  if (inputs.archiveClaim) {
    volumes.push({ name: "archive", persistentVolumeClaim: { claimName: inputs.archiveClaim } });
    mounts.push({ name: "archive", mountPath: COMPLIANCE_ARCHIVE_DIR, subPath: COMPLIANCE_ARCHIVE_SUBDIR });
  }
  if (s.format.type === "xslt" && s.format.xsltConfigMapRef) {
    const ref = s.format.xsltConfigMapRef;
    volumes.push({ name: "xslt", configMap: { name: ref.name, items: [{ key: ref.key, path: ref.key }] } });
    mounts.push({ name: "xslt", mountPath: COMPLIANCE_XSLT_DIR, readOnly: true });
  }
  const configMap = buildComplianceConfigMap(cr, inputs);
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: meta(cr, names.deployment),
    spec: {
      replicas: 1,
      selector: { matchLabels: selectorLabels(cr, COMPLIANCE_COMPONENT) },
      strategy: { type: "Recreate" },
      template: {
        metadata: { labels: { ...selectorLabels(cr, COMPLIANCE_COMPONENT), "app.kubernetes.io/part-of": "parley" }, annotations: { [CONFIG_HASH_ANNOTATION]: configHash(configMap) } },
        spec: {
          serviceAccountName: names.deployment,
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
          // SIGTERM lets a running export finish (--shutdown-grace, 30 s).
          terminationGracePeriodSeconds: 60,
          containers: [
            {
              name: COMPLIANCE_COMPONENT,
              image: s.image,
              imagePullPolicy: s.imagePullPolicy,
              args: ["compliance"],
              envFrom: [{ configMapRef: { name: names.config } }],
              env: [
                { name: "PARLEY_COMPLIANCE_DATABASE_URL", valueFrom: { secretKeyRef: { name: s.stagingDatabase.secretRef.name, key: s.stagingDatabase.secretRef.key } } },
                { name: "PARLEY_ADMIN_TOKEN", valueFrom: { secretKeyRef: { name: names.adminSecret, key: ADMIN_TOKEN_KEY } } },
              ],
              ports: [
                { name: "grpc", containerPort: COMPLIANCE_GRPC_PORT, protocol: "TCP" },
                { name: "http", containerPort: COMPLIANCE_HTTP_PORT, protocol: "TCP" },
              ],
              livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10, failureThreshold: 3 },
              readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5, failureThreshold: 2 },
              resources: {},
              securityContext: RESTRICTED_CONTAINER_SECURITY,
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };
}

/** Only built when the Prometheus Operator's CRD exists. */
export function buildComplianceServiceMonitor(cr: ComplianceSink): KubeObject {
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: meta(cr, complianceNames(cr).deployment),
    spec: { selector: { matchLabels: selectorLabels(cr, COMPLIANCE_COMPONENT) }, endpoints: [{ port: "http", path: "/metrics", interval: "30s" }] },
  };
}
