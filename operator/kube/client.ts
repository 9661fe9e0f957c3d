/**
 * The operator's one door to the API: a small REST client over the
 * kubeconfig's credentials. Every write is a server-side apply under the
 * field manager `parley-operator` (force: the operator owns the fields it
 * sets, and takes them back when someone else changed them).
 *
 *   const kube = KubeClient.fromKubeConfig(kc);
 *   await kube.apply(buildRelayService(cr));
 *   await kube.applyStatus(cr, { observedGeneration: 3, conditions });
 */
import { request, type RequestOptions as HttpsRequestOptions } from "node:https";
import { request as httpRequest } from "node:http";
import type { KubeConfig } from "@kubernetes/client-node";
import type { KubeObject } from "../specs/meta.js";

export const FIELD_MANAGER = "parley-operator";

/** A non-2xx answer from the apiserver, with its Status reason and message. */
export class KubeApiError extends Error {
  constructor(readonly method: string, readonly path: string, readonly status: number, readonly reason: string, detail: string) {
    super(`${method} ${path}: ${status} ${reason}: ${detail}`);
    this.name = "KubeApiError";
  }
}

/** Plural resource names of the kinds the operator touches (no discovery needed for a fixed set). */
const PLURALS: Record<string, string> = {
  ConfigMap: "configmaps", Secret: "secrets", Service: "services", ServiceAccount: "serviceaccounts",
  Deployment: "deployments", StatefulSet: "statefulsets", PodDisruptionBudget: "poddisruptionbudgets",
  Role: "roles", RoleBinding: "rolebindings", Lease: "leases", PersistentVolumeClaim: "persistentvolumeclaims",
  ServiceMonitor: "servicemonitors", PodMonitor: "podmonitors", Event: "events",
  RelayServer: "relayservers", ChatPool: "chatpools", ComplianceSink: "compliancesinks",
  CustomResourceDefinition: "customresourcedefinitions",
};

/** /api/v1/namespaces/ns/configmaps[/name] or /apis/group/version/… ; namespace "" means all namespaces. */
export function resourcePath(apiVersion: string, kind: string, namespace: string | undefined, name?: string): string {
  const plural = PLURALS[kind];
  if (!plural) throw new Error(`resourcePath: unknown kind ${kind}`);
  const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const ns = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  return `${base}${ns}/${plural}${name ? `/${encodeURIComponent(name)}` : ""}`;
}

/** Identifies an object: enough to address it. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

export const objectPath = (o: ObjectRef) => resourcePath(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);

export class KubeClient {
  private constructor(
    private readonly server: URL,
    private readonly baseOptions: HttpsRequestOptions,
    private readonly timeoutMs: number,
  ) {}

  static async fromKubeConfig(kc: KubeConfig, timeoutMs = 15_000): Promise<KubeClient> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    const opts: HttpsRequestOptions = {};
    await kc.applyToHTTPSOptions(opts as never);
    return new KubeClient(new URL(cluster.server), opts, timeoutMs);
  }

  async request<T = unknown>(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const url = new URL(path, this.server);
    const send = url.protocol === "https:" ? request : httpRequest;
    return new Promise<T>((resolve, reject) => {
      const req = send(
        url,
        {
          ...this.baseOptions,
          method,
          headers: { ...(this.baseOptions.headers as Record<string, string> | undefined), accept: "application/json", ...(payload ? { "content-type": contentType, "content-length": payload.length } : {}) },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            let json: any;
            try {
              json = text ? JSON.parse(text) : undefined;
            } catch {
              json = undefined;
            }
            if (status >= 200 && status < 300) return resolve(json as T);
            reject(new KubeApiError(method, url.pathname, status, json?.reason ?? res.statusMessage ?? "Error", json?.message ?? text.slice(0, 500)));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${url.pathname}: no answer within ${this.timeoutMs} ms`)));
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** The object, or undefined when it does not exist. */
  async get<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.request<T>("GET", path);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  list<T>(path: string): Promise<{ metadata: { resourceVersion?: string }; items: T[] }> {
    return this.request("GET", path);
  }

  /** Server-side apply of a whole desired object. */
  apply<T = KubeObject>(obj: KubeObject): Promise<T> {
    return this.request<T>("PATCH", `${objectPath(obj)}?fieldManager=${FIELD_MANAGER}&force=true`, obj, "application/apply-patch+yaml");
  }

  /**
   * Server-side apply of the status subresource of a custom resource. With
   * `resourceVersion` the write fails (409) if the object changed since it was
   * read, so a field someone else just set (status.targetPrimary) is never
   * overwritten with the value read before.
   */
  applyStatus(owner: ObjectRef, status: unknown, resourceVersion?: string): Promise<unknown> {
    const metadata = { name: owner.metadata.name, namespace: owner.metadata.namespace, ...(resourceVersion ? { resourceVersion } : {}) };
    const body = { apiVersion: owner.apiVersion, kind: owner.kind, metadata, status };
    return this.request("PATCH", `${objectPath(owner)}/status?fieldManager=${FIELD_MANAGER}&force=true`, body, "application/apply-patch+yaml");
  }

  /** Deletes; a missing object is not an error. */
  async delete(path: string): Promise<void> {
    try {
      await this.request("DELETE", path, { propagationPolicy: "Background" });
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }
}
