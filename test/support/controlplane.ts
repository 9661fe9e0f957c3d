/**
 * A real etcd + kube-apiserver (+ optionally kube-controller-manager) for
 * operator tests, as controller-runtime's envtest provides: loopback only,
 * free ports, everything under one directory.
 * The binaries come from scripts/ensure-controlplane.sh (built once from the Go
 * module proxy, then cached). There is no scheduler or kubelet, and by default
 * no controller-manager: tests play those controllers by writing status
 * themselves. Without `controllers`, deleting an owner does not delete its
 * dependents (no garbage collector), namespaces stay Terminating, and
 * namespaces get no `default` ServiceAccount (the ServiceAccount admission
 * plugin is off so pods can still be created).
 *
 *   const cp = await startControlPlane();  after(() => cp.stop());
 *   await cp.kubectl(["apply", "-f", "-"], { input: manifest });
 *   await cp.kubectl(["get", "pods"], { user: "restricted" });   // RBAC applies
 *   await cp.restartApiserver();                                 // same port, same data
 *   await startControlPlane({ controllers: GC_CONTROLLERS });    // owner references cascade
 *
 * Users: `admin` is in system:masters; `restricted` has no bindings at all
 * (grant it what a test needs with a Role/RoleBinding naming user
 * "parley-restricted"). Service-account tokens work too (TokenRequest API,
 * then writeKubeconfig()).
 */
import { spawn, execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { TetheredProcess } from "./tethered-process.js";

const run = promisify(execFile);
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export const ADMIN_USER = "parley-admin";
export const RESTRICTED_USER = "parley-restricted";
export type UserName = "admin" | "restricted";

export interface ControlPlaneOptions {
  /** Working directory for certificates, etcd data, logs and kubeconfigs. Default: a new temp dir, removed by stop(). */
  dir?: string;
  /** Directory holding etcd, kube-apiserver and kube-controller-manager. Default: $PARLEY_CONTROLPLANE_DIR, else scripts/ensure-controlplane.sh. */
  binDir?: string;
  /** Bound on each start (etcd healthy, apiserver /readyz ok). */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags, e.g. ["--feature-gates=..."]. */
  apiserverArgs?: string[];
  /**
   * Runs kube-controller-manager with only these controllers (its --controllers
   * names, e.g. GC_CONTROLLERS; add "deployment-controller" etc. to have real
   * ReplicaSets/Pods, which then stay Pending: there is no scheduler).
   */
  controllers?: readonly string[];
}

/** Garbage collection (ownerReferences cascade), namespace deletion, default ServiceAccounts and kube-root-ca.crt. */
export const GC_CONTROLLERS: readonly string[] = [
  "garbage-collector-controller",
  "namespace-controller",
  "serviceaccount-controller",
  "root-ca-certificate-publisher-controller",
];

export interface KubectlOptions {
  user?: UserName;
  /** A kubeconfig path (e.g. from writeKubeconfig), instead of `user`. */
  kubeconfig?: string;
  /** Written to kubectl's stdin (for `apply -f -`). */
  input?: string;
  /** Kills kubectl after this long (default 30 s). */
  timeoutMs?: number;
}

export interface RestartOptions {
  crash?: boolean;
  whileDown?: () => Promise<void>;
}

export interface ControlPlane {
  /** Path of the admin kubeconfig. */
  readonly kubeconfig: string;
  /** Kubeconfig paths per built-in user. */
  readonly kubeconfigs: Readonly<Record<UserName, string>>;
  /** https://127.0.0.1:PORT */
  readonly server: string;
  readonly caCertPem: string;
  readonly tokens: Readonly<Record<UserName, string>>;
  readonly dir: string;
  /** Runs kubectl against this control plane; resolves stdout, rejects with stderr in the message. */
  kubectl(args: string[], opts?: KubectlOptions): Promise<string>;
  /** Writes a kubeconfig for a bearer token (e.g. from a TokenRequest) and returns its path. */
  writeKubeconfig(name: string, token: string): string;
  /**
   * Stops kube-apiserver (graceful SIGTERM, or SIGKILL with `crash`: open
   * connections are reset rather than closed), runs `whileDown` if given,
   * starts it again on the same port and data, and waits for /readyz.
   */
  restartApiserver(opts?: RestartOptions): Promise<void>;
  /** Process-group ids of the running etcd, kube-apiserver and kube-controller-manager (each group: the binary and its tether). */
  processGroups(): number[];
  /** Stops all processes (bounded; SIGKILL after a grace period) and removes the temp dir if this created it. */
  stop(): Promise<void>;
}

/**
 * kubectl shorthands for tests working in one namespace. `controlPlane` is
 * called at each use, so the helpers can be made before a `before` hook
 * starts the control plane.
 */
export function namespaceTools(controlPlane: () => ControlPlane, ns: string) {
  const kubectl = (...args: string[]) => controlPlane().kubectl(args);
  const getJson = async <T = any>(...args: string[]): Promise<T> => JSON.parse(await kubectl("get", ...args, "-n", ns, "-o", "json")) as T;
  /** The object, or undefined when it does not exist. */
  const tryGet = async <T = any>(...args: string[]): Promise<T | undefined> =>
    getJson<T>(...args).catch((err: Error) => (/NotFound/.test(err.message) ? undefined : Promise.reject(err)));
  const apply = (obj: unknown) => controlPlane().kubectl(["apply", "-f", "-"], { input: JSON.stringify(obj) });
  return { kubectl, getJson, tryGet, apply };
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = opts.binDir ?? process.env.PARLEY_CONTROLPLANE_DIR ?? (await ensureBinaries());
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "parley-kube-"));
  mkdirSync(dir, { recursive: true });

  const pki = await generatePki(join(dir, "pki"));
  const tokens: Record<UserName, string> = { admin: randomBytes(24).toString("hex"), restricted: randomBytes(24).toString("hex") };
  // token,user,uid,"groups"
  const tokenFile = join(dir, "tokens.csv");
  writeFileSync(
    tokenFile,
    `${tokens.admin},${ADMIN_USER},${ADMIN_USER},"system:masters"\n${tokens.restricted},${RESTRICTED_USER},${RESTRICTED_USER}\n`,
    { mode: 0o600 },
  );

  const [etcdClientPort, etcdPeerPort, securePort, controllerManagerPort] = await freePorts(4);
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
  const server = `https://127.0.0.1:${securePort}`;
  const caCertPem = readFileSync(pki.caCert, "utf8");

  const etcdArgs = [
    "--name=parley-test",
    `--data-dir=${join(dir, "etcd")}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
    `--initial-cluster=parley-test=http://127.0.0.1:${etcdPeerPort}`,
    "--initial-cluster-state=new",
    // Test data is disposable; fsync per write would dominate on a busy disk.
    "--unsafe-no-fsync",
    "--log-level=warn",
  ];
  const apiserverArgs = [
    `--etcd-servers=${etcdUrl}`,
    `--secure-port=${securePort}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    // With a loopback advertise address the default lease reconciler would
    // keep writing invalid Endpoints for the `kubernetes` Service.
    "--endpoint-reconciler-type=none",
    `--cert-dir=${join(dir, "pki")}`,
    `--tls-cert-file=${pki.servingCert}`,
    `--tls-private-key-file=${pki.servingKey}`,
    `--client-ca-file=${pki.caCert}`,
    `--token-auth-file=${tokenFile}`,
    "--authorization-mode=RBAC",
    "--anonymous-auth=false",
    "--service-cluster-ip-range=10.96.0.0/24",
    `--service-account-issuer=${server}`,
    `--service-account-key-file=${pki.serviceAccountPublicKey}`,
    `--service-account-signing-key-file=${pki.serviceAccountKey}`,
    // No controller-manager creates `default` ServiceAccounts, so this plugin would reject every pod.
    "--disable-admission-plugins=ServiceAccount",
    "--allow-privileged=true",
    "--profiling=false",
    // By default a SIGTERM waits up to 60 s for open HTTP/1.1 watch streams
    // (client-node's) to go idle, which they never do; this ends them instead,
    // as a restart behind a load balancer would.
    "--shutdown-watch-termination-grace-period=2s",
    ...(opts.apiserverArgs ?? []),
  ];

  const kubeconfigFor = (name: string, token: string) => {
    const path = join(dir, `${name}.kubeconfig`);
    writeFileSync(path, JSON.stringify(kubeconfigDoc(name, server, caCertPem, token), null, 2), { mode: 0o600 });
    return path;
  };
  const kubeconfigs: Record<UserName, string> = { admin: kubeconfigFor("admin", tokens.admin), restricted: kubeconfigFor("restricted", tokens.restricted) };

  const logs = join(dir, "logs");
  mkdirSync(logs, { recursive: true });
  const etcd = new TetheredProcess("etcd", join(binDir, "etcd"), etcdArgs, join(logs, "etcd.log"));
  const apiserver = new TetheredProcess("kube-apiserver", join(binDir, "kube-apiserver"), apiserverArgs, join(logs, "kube-apiserver.log"));
  const controllerManager = opts.controllers?.length
    ? new TetheredProcess(
        "kube-controller-manager",
        join(binDir, "kube-controller-manager"),
        [
          `--controllers=${opts.controllers.join(",")}`,
          `--kubeconfig=${kubeconfigs.admin}`,
          // Its own /healthz (our readiness probe) authenticates through the apiserver.
          `--authentication-kubeconfig=${kubeconfigs.admin}`,
          `--authorization-kubeconfig=${kubeconfigs.admin}`,
          `--secure-port=${controllerManagerPort}`,
          "--bind-address=127.0.0.1",
          `--cert-dir=${join(dir, "pki", "controller-manager")}`,
          "--leader-elect=false",
          `--service-account-private-key-file=${pki.serviceAccountKey}`,
          `--root-ca-file=${pki.caCert}`,
          "--use-service-account-credentials=false",
          "--profiling=false",
        ],
        join(logs, "kube-controller-manager.log"),
      )
    : undefined;

  const readyz = () => httpsGet(`${server}/readyz`, caCertPem, tokens.admin);
  const startApiserver = async () => {
    apiserver.start();
    await apiserver.until(`kube-apiserver ${server}/readyz`, async () => (await readyz()).status === 200, startTimeoutMs);
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await controllerManager?.stop();
    await apiserver.stop();
    await etcd.stop();
    if (ownsDir) rmSync(dir, { recursive: true, force: true });
  };

  try {
    etcd.start();
    await etcd.until(`etcd ${etcdUrl}/health`, async () => (await httpGet(`${etcdUrl}/health`)).includes('"health":"true"'), startTimeoutMs);
    await startApiserver();
    if (controllerManager) {
      controllerManager.start();
      const healthz = `https://127.0.0.1:${controllerManagerPort}/healthz`;
      await controllerManager.until(`kube-controller-manager ${healthz}`, async () => (await httpsGet(healthz, undefined, tokens.admin)).status === 200, startTimeoutMs);
    }
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }

  return {
    kubeconfig: kubeconfigs.admin,
    kubeconfigs,
    server,
    caCertPem,
    tokens,
    dir,
    kubectl: (args, o = {}) => kubectl(o.kubeconfig ?? kubeconfigs[o.user ?? "admin"], join(dir, "kubectl-cache"), args, o),
    writeKubeconfig: kubeconfigFor,
    async restartApiserver({ crash = false, whileDown }: RestartOptions = {}) {
      await (crash ? apiserver.kill() : apiserver.stop());
      if (whileDown) await whileDown();
      await startApiserver();
    },
    processGroups: () => [etcd.pgid, apiserver.pgid, controllerManager?.pgid].filter((p): p is number => p !== undefined),
    stop,
  };
}

/** Runs scripts/ensure-controlplane.sh (seconds when the cache is warm) and returns the binaries' directory. */
export async function ensureBinaries(): Promise<string> {
  const script = join(repoRoot, "scripts", "ensure-controlplane.sh");
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${script} exited with ${code}`))));
  });
}

// The discovery cache goes in the control plane's dir: kubectl's default
// (~/.kube/cache/<host_port>) would gain a directory per random port and run.
async function kubectl(kubeconfig: string, cacheDir: string, args: string[], opts: KubectlOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "kubectl",
      [`--kubeconfig=${kubeconfig}`, `--cache-dir=${cacheDir}`, ...args],
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`kubectl ${args.join(" ")} failed: ${stderr.trim() || err.message}`));
        else resolve(stdout);
      },
    );
    child.stdin?.end(opts.input ?? "");
  });
}

function kubeconfigDoc(name: string, server: string, caCertPem: string, token: string): object {
  return {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "parley-test", cluster: { server, "certificate-authority-data": Buffer.from(caCertPem).toString("base64") } }],
    users: [{ name, user: { token } }],
    contexts: [{ name, context: { cluster: "parley-test", user: name, namespace: "default" } }],
    "current-context": name,
  };
}

interface Pki {
  caCert: string;
  servingCert: string;
  servingKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

/** A throwaway CA, a serving certificate for 127.0.0.1/localhost/the `kubernetes` Service IP, and a service-account signing key. */
async function generatePki(pkiDir: string): Promise<Pki> {
  mkdirSync(pkiDir, { recursive: true });
  const p = (f: string) => join(pkiDir, f);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", ["req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days", "2", "-subj", "/CN=parley-test-ca"]);
  await run("openssl", ["req", ...ec, "-keyout", p("apiserver.key"), "-out", p("apiserver.csr"), "-subj", "/CN=kube-apiserver"]);
  const sans = "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc";
  writeFileSync(p("apiserver.ext"), `${sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n`);
  await run("openssl", ["x509", "-req", "-in", p("apiserver.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", p("apiserver.ext"), "-out", p("apiserver.crt")]);
  await run("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", p("sa.key")]);
  await run("openssl", ["pkey", "-in", p("sa.key"), "-pubout", "-out", p("sa.pub")]);
  return { caCert: p("ca.crt"), servingCert: p("apiserver.crt"), servingKey: p("apiserver.key"), serviceAccountKey: p("sa.key"), serviceAccountPublicKey: p("sa.pub") };
}

/** Distinct free loopback ports, all held open together so none repeats. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** `ca` undefined: the peer's self-signed certificate is not checked (kube-controller-manager's own, on loopback). */
function httpsGet(url: string, ca: string | undefined, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, rejectUnauthorized: ca !== undefined, headers: { authorization: `Bearer ${token}` }, timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}
