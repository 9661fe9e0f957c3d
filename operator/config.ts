/** `parley operator` options: flags, environment variables and their defaults. */
import { bool, duration, int, option, str } from "../services/common/config.js";

export const operatorConfigSpec = {
  kubeconfig: option("--kubeconfig", "PARLEY_KUBECONFIG", str(), "", "Kubeconfig file (empty: the in-cluster service account)"),
  namespace: option("--namespace", "PARLEY_OPERATOR_NAMESPACE", str({ pattern: /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, expected: "a namespace name, or empty" }), "",
    "Namespace whose custom resources to reconcile (empty: all namespaces)"),
  host: option("--host", "PARLEY_HOST", str(), "0.0.0.0", "Address the HTTP port listens on"),
  httpPort: option("--http-port", "PARLEY_HTTP_PORT", int({ min: 0, max: 65535 }), 8080, "HTTP port (/metrics, /healthz, /readyz)"),
  leaderElect: option("--leader-elect", "PARLEY_LEADER_ELECT", bool(), true, "Take part in leader election (only the leader reconciles)"),
  leaseName: option("--lease-name", "PARLEY_LEASE_NAME", str({ pattern: /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, expected: "a Lease name" }), "parley-operator", "Name of the leader-election Lease"),
  leaseNamespace: option("--lease-namespace", "PARLEY_LEASE_NAMESPACE", str(), "",
    "Namespace of the Lease (empty: the pod's namespace in-cluster, else the watched namespace, else default)"),
  leaseDuration: option("--lease-duration", "PARLEY_LEASE_DURATION", duration({ min: 1000 }), 15_000, "How long a standby waits on an unrenewed Lease before taking over"),
  resyncPeriod: option("--resync-period", "PARLEY_RESYNC_PERIOD", duration({ min: 1000 }), 10 * 60_000, "Reconcile every custom resource at least this often"),
  workers: option("--workers", "PARLEY_OPERATOR_WORKERS", int({ min: 1, max: 64 }), 2, "Reconciles run in parallel (never two for one object)"),
};
