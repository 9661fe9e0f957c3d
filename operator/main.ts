/**
 * `parley operator`: reconciles RelayServer (and, next, ChatPool and
 * ComplianceSink) custom resources. Run two replicas: they elect a leader with
 * a Lease and only the leader reconciles.
 *
 *   kubectl apply -f crds/
 *   parley operator --kubeconfig ~/.kube/config --namespace parley
 *   curl localhost:8080/metrics   # parley_operator_reconciles_total{kind,result} …
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import { loadConfig, type ConfigOf } from "../services/common/config.js";
import { startHttpServer } from "../services/common/http.js";
import { Lifecycle } from "../services/common/lifecycle.js";
import { logger } from "../services/common/log.js";
import { startDefaultMetrics } from "../services/common/metrics.js";
import { operatorConfigSpec } from "./config.js";
import { KubeClient } from "./kube/client.js";
import { LeaderElector } from "./kube/leader.js";
import { OperatorManager } from "./manager.js";
import { isLeader } from "./metrics.js";

const SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

export async function runOperator(argv: string[]): Promise<Lifecycle> {
  const cfg = loadConfig(operatorConfigSpec, argv);
  const log = logger("operator");
  startDefaultMetrics();
  const life = new Lifecycle(log);
  try {
    const kubeConfig = new KubeConfig();
    if (cfg.kubeconfig) kubeConfig.loadFromFile(cfg.kubeconfig);
    else kubeConfig.loadFromCluster();
    const kube = await KubeClient.fromKubeConfig(kubeConfig);

    let manager: OperatorManager | undefined;
    const leading = {
      onStartedLeading: () => {
        isLeader.set(1);
        manager = OperatorManager.start({ kube, kubeConfig, log, namespace: cfg.namespace, resyncMs: cfg.resyncPeriod, workers: cfg.workers });
      },
      onStoppedLeading: async () => {
        isLeader.set(0);
        const m = manager;
        manager = undefined;
        await m?.stop();
      },
    };
    isLeader.set(0);

    const http = await startHttpServer({
      host: cfg.host,
      port: cfg.httpPort,
      log,
      // A standby is ready (it is healthy and waiting); a leader once its watches have listed.
      readiness: [async () => (life.shuttingDown ? "shutting down" : manager && !manager.synced ? "watches not synced yet" : undefined)],
    });
    life.add("http", () => http.close());

    if (cfg.leaderElect) {
      const identity = `${hostname()}_${process.pid}_${randomBytes(4).toString("hex")}`;
      const elector = new LeaderElector(kube, { namespace: leaseNamespace(cfg), name: cfg.leaseName, identity, leaseDurationMs: cfg.leaseDuration }, log);
      elector.run(leading);
      life.add("leader-election", () => elector.stop(leading));
    } else {
      leading.onStartedLeading();
      life.add("controllers", () => leading.onStoppedLeading());
    }
    log.info({ httpPort: http.port, namespace: cfg.namespace || "(all)", leaderElect: cfg.leaderElect }, "operator started");
    life.handleSignals();
    return life;
  } catch (err) {
    await life.shutdown();
    throw err;
  }
}

function leaseNamespace(cfg: ConfigOf<typeof operatorConfigSpec>): string {
  if (cfg.leaseNamespace) return cfg.leaseNamespace;
  if (existsSync(SERVICE_ACCOUNT_NAMESPACE)) return readFileSync(SERVICE_ACCOUNT_NAMESPACE, "utf8").trim();
  return cfg.namespace || "default";
}
