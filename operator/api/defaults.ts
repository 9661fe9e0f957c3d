/**
 * Defaults for the custom resources, the same values the CRD schemas apply
 * (crds/*.yaml). The apiserver defaults on write, but objects stored before a
 * default existed, and unit tests, come without them: builders only ever see
 * the result of these functions.
 */
import type { ChatPoolSpec, ComplianceSinkSpec, NatsSpec, RelayServer, RelayServerSpec, SecretKeyRef } from "./types.js";

export const DEFAULT_IMAGE = "ghcr.io/parley/parley:latest";
export const DEFAULT_NATS_URL = "nats://nats:4222";

type Required2<T> = { [K in keyof T]-?: NonNullable<T[K]> };

export interface ResolvedRelaySpec {
  image: string;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  replicas: number;
  relayId: string;
  retention: string;
  quotas: Required2<NonNullable<RelayServerSpec["quotas"]>>;
  database: { secretRef: Required2<SecretKeyRef> };
  nats: { url: string; credentialsSecretRef?: Required2<SecretKeyRef> };
  resources: Record<string, unknown>;
  role: "standalone" | "primary" | "secondary";
  secondary?: string;
  failoverDelay: string;
  switchoverDelay: string;
}

const secretRef = (ref: SecretKeyRef, key: string): Required2<SecretKeyRef> => ({ name: ref.name, key: ref.key ?? key });

function nats(spec: NatsSpec | undefined): ResolvedRelaySpec["nats"] {
  const out: ResolvedRelaySpec["nats"] = { url: spec?.url ?? DEFAULT_NATS_URL };
  if (spec?.credentialsSecretRef) out.credentialsSecretRef = secretRef(spec.credentialsSecretRef, "nats.creds");
  return out;
}

export function relaySpecWithDefaults(cr: Pick<RelayServer, "metadata" | "spec">): ResolvedRelaySpec {
  const s = cr.spec;
  const out: ResolvedRelaySpec = {
    image: s.image ?? DEFAULT_IMAGE,
    imagePullPolicy: s.imagePullPolicy ?? "IfNotPresent",
    replicas: s.replicas ?? 1,
    relayId: s.relayId ?? cr.metadata.name,
    retention: s.retention ?? "30d",
    quotas: {
      maxMessageBytes: s.quotas?.maxMessageBytes ?? "1MiB",
      maxQueueMessages: s.quotas?.maxQueueMessages ?? 100_000,
      maxQueueBytes: s.quotas?.maxQueueBytes ?? "1GiB",
    },
    database: { secretRef: secretRef(s.database.secretRef, "url") },
    nats: nats(s.nats),
    resources: s.resources ?? {},
    role: s.role ?? "standalone",
    failoverDelay: s.failoverDelay ?? "30s",
    switchoverDelay: s.switchoverDelay ?? "10s",
  };
  if (s.secondary !== undefined) out.secondary = s.secondary;
  return out;
}

export function chatPoolSpecWithDefaults(s: ChatPoolSpec) {
  return {
    image: s.image ?? DEFAULT_IMAGE,
    imagePullPolicy: s.imagePullPolicy ?? "IfNotPresent",
    relay: s.relay,
    channel: {
      minInstances: s.channel?.minInstances ?? 2,
      maxInstances: s.channel?.maxInstances ?? 10,
      targetUsersPerInstance: s.channel?.targetUsersPerInstance ?? 500,
      scaleCooldown: s.channel?.scaleCooldown ?? "2m",
      replicas: s.channel?.replicas,
      resources: s.channel?.resources ?? {},
    },
    lookup: { replicas: s.lookup?.replicas ?? 2, resources: s.lookup?.resources ?? {} },
    files: {
      replicas: s.files?.replicas ?? 1,
      resources: s.files?.resources ?? {},
      storage: {
        size: s.files?.storage?.size ?? "10Gi",
        storageClassName: s.files?.storage?.storageClassName,
        existingClaim: s.files?.storage?.existingClaim,
        accessModes: s.files?.storage?.accessModes ?? ["ReadWriteMany"],
      },
    },
    database: { secretRef: secretRef(s.database.secretRef, "url") },
    nats: nats(s.nats),
  };
}

export function complianceSinkSpecWithDefaults(s: ComplianceSinkSpec) {
  return {
    image: s.image ?? DEFAULT_IMAGE,
    imagePullPolicy: s.imagePullPolicy ?? "IfNotPresent",
    chatPools: [...s.chatPools],
    conversationInterval: s.conversationInterval ?? "15m",
    format: {
      type: s.format?.type ?? "xml",
      xsltConfigMapRef: s.format?.xsltConfigMapRef && { name: s.format.xsltConfigMapRef.name, key: s.format.xsltConfigMapRef.key ?? "transform.xslt" },
    },
    output: { ...s.output },
    stagingDatabase: { secretRef: secretRef(s.stagingDatabase.secretRef, "url") },
    pickupRetention: s.pickupRetention ?? "7d",
    // No url: the ChatPools' NATS (the controller resolves it from them).
    nats: { url: s.nats?.url, credentialsSecretRef: s.nats?.credentialsSecretRef && secretRef(s.nats.credentialsSecretRef, "nats.creds") },
  };
}
