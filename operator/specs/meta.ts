/**
 * Labels, names and owner references shared by every builder. Every object
 * the operator creates carries `app.kubernetes.io/managed-by: parley-operator`
 * (its watches select on it) and a controller owner reference to its custom
 * resource (garbage collection deletes it with the owner).
 */
import type { ObjectMeta } from "../api/types.js";

export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGER = "parley-operator";
export const INSTANCE_LABEL = "app.kubernetes.io/instance";
export const COMPONENT_LABEL = "app.kubernetes.io/component";

/** A Kubernetes object as the builders produce it: plain JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller: boolean;
  blockOwnerDeletion: boolean;
}

export interface Owner {
  apiVersion: string;
  kind: string;
  metadata: Pick<ObjectMeta, "name" | "namespace" | "uid">;
}

/** Labels that select one component of one custom resource (pod selectors use exactly these). */
export function selectorLabels(owner: Owner, component: string): Record<string, string> {
  return { "app.kubernetes.io/name": "parley", [INSTANCE_LABEL]: owner.metadata.name, [COMPONENT_LABEL]: component };
}

export function labels(owner: Owner, component: string): Record<string, string> {
  return { ...selectorLabels(owner, component), "app.kubernetes.io/part-of": "parley", [MANAGED_BY_LABEL]: MANAGER };
}

export function ownerReference(owner: Owner): OwnerReference {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.metadata.name, uid: owner.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** metadata for an object owned by `owner`, in its namespace. */
export function ownedMeta(owner: Owner, name: string, component: string, annotations?: Record<string, string>): KubeObject["metadata"] {
  const meta: KubeObject["metadata"] = { name, namespace: owner.metadata.namespace, labels: labels(owner, component), ownerReferences: [ownerReference(owner)] };
  if (annotations) meta.annotations = annotations;
  return meta;
}

/**
 * A Service whose ports target the pods' container ports of the same names
 * (TCP). Headless for the channel StatefulSet (stable per-pod addresses).
 */
export function service(metadata: KubeObject["metadata"], selector: Record<string, string>, ports: Record<string, number>, opts: { headless?: boolean } = {}): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata,
    spec: {
      ...(opts.headless ? { clusterIP: "None" } : { type: "ClusterIP" }),
      selector,
      ports: Object.entries(ports).map(([name, port]) => ({ name, port, targetPort: name, protocol: "TCP" })),
    },
  };
}

/** The restricted Pod Security Standard, for every container the operator runs. */
export const RESTRICTED_CONTAINER_SECURITY = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};
