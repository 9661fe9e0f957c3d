/**
 * The operator's calls to a sink's compliance service (its admin gRPC): the
 * status the sink's status shows, and the final export of its finalizer. The
 * address is the sink's Service (…-compliance.<ns>.svc:50054) unless the
 * annotation parley.dev/admin-address names another (an operator outside the
 * cluster network; tests running the service themselves). The bearer token is
 * the one the operator generated into the sink's admin Secret.
 *
 *   const status = await withSinkAdmin(kube, cr, (admin) => admin.status());
 */
import { ComplianceAdmin } from "../../client/compliance.js";
import { ADMIN_ADDRESS_ANNOTATION, type ComplianceSink } from "../api/types.js";
import { resourcePath, type KubeClient } from "../kube/client.js";
import { ADMIN_TOKEN_KEY, complianceAdminAddress, complianceNames } from "../specs/compliance.js";

export const sinkAdminAddress = (cr: ComplianceSink) => cr.metadata.annotations?.[ADMIN_ADDRESS_ANNOTATION] || complianceAdminAddress(cr);

export async function withSinkAdmin<T>(kube: KubeClient, cr: ComplianceSink, call: (admin: ComplianceAdmin) => Promise<T>): Promise<T> {
  const secret = complianceNames(cr).adminSecret;
  const token = (await kube.get<{ data?: Record<string, string> }>(resourcePath("v1", "Secret", cr.metadata.namespace, secret)))?.data?.[ADMIN_TOKEN_KEY];
  if (!token) throw new Error(`Secret ${secret} (the admin token) does not exist`);
  const admin = ComplianceAdmin.create(sinkAdminAddress(cr), Buffer.from(token, "base64").toString("utf8"));
  try {
    return await call(admin);
  } finally {
    admin.close();
  }
}
