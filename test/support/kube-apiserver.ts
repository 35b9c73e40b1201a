/**
 * A real Kubernetes control plane without a kubelet, for one test file: Debian's etcd on a data
 * directory of its own and kube-apiserver v1.34 (dev/kube-apiserver/ensure.sh), both on free
 * loopback ports. Pods never run, but everything the API server admits and validates is real:
 * schemas, defaulting, RBAC, service-account tokens (TokenRequest) and their issuer discovery.
 *
 * ```ts
 * const kube = await startKubeApiServer();
 * await kube.createNamespace('payments');
 * await kube.createServiceAccount('payments', 'orders');
 * const jwt = await kube.requestToken('payments', 'orders', { audiences: ['https://iam.example/token'] });
 * // kube.adminKubeconfigPath for Helm or kubectl; kube.url and kube.caPem for a client of its own
 * await kube.stop();
 * ```
 *
 * - TLS: the serving certificate comes from a test PKI (test/support/test-pki.ts) made per start,
 *   for 127.0.0.1 and localhost.
 * - The admin is a static token of the group `system:masters` (`--token-auth-file`): RBAC lets it
 *   do everything, and a kubeconfig with it is written for Helm.
 * - Service-account tokens are signed with an RSA key made per start (RS256); the issuer is the
 *   API server's own URL, so `/.well-known/openid-configuration` and `/openid/v1/jwks` are served
 *   by it (to service accounts and the admin: anonymous access is off).
 * - `--endpoint-reconciler-type=none`: the `kubernetes` Service's endpoints would name 127.0.0.1,
 *   which Endpoints validation refuses, and nothing here routes to a Service anyway.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import got from 'got';
import { exitDescription, hasExited, stopChild } from '../../dev/child-process.js';
import { findFreePorts } from '../../dev/free-port.js';
import { createTestPki, type TestPki } from './test-pki.js';

const execFileAsync = promisify(execFile);

/** The most a start may take: etcd, then the API server's post-start hooks (RBAC bootstrap roles). */
const READY_TIMEOUT_MS = 120_000;

/** An answer of the API server: its status and its body, parsed when it is JSON. */
export interface KubeResponse<T = unknown> {
  status: number;
  body: T;
}

/** Options of {@link KubeApiServer.request}. */
export interface KubeRequestOptions {
  /** The bearer token to send. @default the admin's */
  token?: string;
  /** Query parameters, e.g. `{ dryRun: 'All', fieldValidation: 'Strict' }`. */
  searchParams?: Record<string, string>;
}

/** A ServiceAccount's TokenRequest (authentication.k8s.io/v1). */
export interface TokenRequestOptions {
  /** The token's `aud`. @default the API server's own (its issuer) */
  audiences?: string[];
  /** The lifetime asked for: at least 600 (the API's minimum). @default 3600 */
  expirationSeconds?: number;
  /** The bearer token that asks. @default the admin's */
  token?: string;
}

/** One request as the API server's audit log recorded it (audit.k8s.io/v1 Event, at Metadata level). */
export interface KubeAuditedRequest {
  verb: string;
  /** e.g. `serviceaccounts`, with {@link KubeAuditedRequest.subresource} `token`. */
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** Who asked: `system:serviceaccount:<ns>:<name>`, `test-admin`. */
  user: string;
  /** The HTTP status of the answer. */
  code: number;
}

export interface KubeApiServer {
  /** `https://127.0.0.1:<port>`. */
  readonly url: string;
  /** The CA (PEM) that signed the serving certificate. */
  readonly caPem: string;
  /** The same CA as a file. */
  readonly caPath: string;
  /** The issuer of service-account tokens (`--service-account-issuer`): {@link KubeApiServer.url}. */
  readonly issuer: string;
  /** A kubeconfig (JSON, which kubeconfig readers accept) with the admin identity, for Helm and kubectl. */
  readonly adminKubeconfigPath: string;
  /** The admin's bearer token (group `system:masters`). */
  readonly adminToken: string;
  /** A request with a JSON body; never throws for an HTTP status, so a test can assert a refusal. */
  request<T = unknown>(method: string, path: string, body?: unknown, options?: KubeRequestOptions): Promise<KubeResponse<T>>;
  /** Creates a namespace; one that exists already is fine. */
  createNamespace(name: string): Promise<void>;
  /** Creates a ServiceAccount; one that exists already is fine. */
  createServiceAccount(namespace: string, name: string): Promise<void>;
  /**
   * A Role allowing `create` on `serviceaccounts/token` for the named accounts only, bound to the
   * service account `grantee` (`<namespace>/<name>`): what the worker needs to mint their tokens.
   */
  allowTokenRequests(namespace: string, accounts: readonly string[], grantee: { namespace: string; name: string }): Promise<void>;
  /** A token of the service account from the TokenRequest API; throws with the API's answer unless it is granted. */
  requestToken(namespace: string, name: string, options?: TokenRequestOptions): Promise<string>;
  /**
   * What a pod of the service account finds in /var/run/secrets/kubernetes.io/serviceaccount,
   * written to `dir`: `token` (from the TokenRequest API), `ca.crt` and `namespace`.
   */
  writeServiceAccountMount(dir: string, namespace: string, name: string): Promise<void>;
  /** The requests the API server answered so far, in order (its audit log; `/readyz` and the like aside). */
  auditedRequests(): Promise<KubeAuditedRequest[]>;
  /** Stops the API server and etcd and removes their files. Idempotent. */
  stop(): Promise<void>;
}

/** The kube-apiserver binary, built once by dev/kube-apiserver/ensure.sh (`make kube-apiserver`). */
async function kubeApiServerBinary(): Promise<string> {
  const ensure = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dev', 'kube-apiserver', 'ensure.sh');
  const { stdout } = await execFileAsync('bash', [ensure], { timeout: 1_800_000 });
  return stdout.trim();
}

/** A child process whose output is kept (its last 20 000 characters) for the message of a failed start. */
function startProcess(command: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  return { child, output: () => output };
}

/** Starts etcd and kube-apiserver on free loopback ports and waits until `/readyz` says ready. */
export async function startKubeApiServer(): Promise<KubeApiServer> {
  const binary = await kubeApiServerBinary();
  const dir = await mkdtemp(join(tmpdir(), 'kube-apiserver-'));
  let pki: TestPki | undefined;
  let etcd: ReturnType<typeof startProcess> | undefined;
  let apiserver: ReturnType<typeof startProcess> | undefined;
  const stopAll = async () => {
    if (apiserver !== undefined) await stopChild(apiserver.child);
    if (etcd !== undefined) await stopChild(etcd.child);
    await pki?.remove();
    await rm(dir, { recursive: true, force: true });
  };

  try {
    pki = await createTestPki('Kubernetes Test CA');
    const serving = await pki.serverCertificate({ dns: ['localhost'], ip: ['127.0.0.1'] });
    const signingKeyPath = join(dir, 'service-account.key');
    const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await writeFile(signingKeyPath, signingKey.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
    const adminToken = randomBytes(24).toString('hex');
    const tokenFile = join(dir, 'tokens.csv');
    // token,user,uid,"group,…" (kube-apiserver's static token file).
    await writeFile(tokenFile, `${adminToken},test-admin,test-admin,"system:masters"\n`, { mode: 0o600 });

    // Every request at Metadata level (who, what, the answer's code; no bodies, so no token).
    const auditPolicyPath = join(dir, 'audit-policy.yaml');
    await writeFile(
      auditPolicyPath,
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n',
    );
    const auditLogPath = join(dir, 'audit.log');

    const [etcdClientPort, etcdPeerPort, securePort] = (await findFreePorts(3)) as [number, number, number];
    const etcdClientUrl = `http://127.0.0.1:${etcdClientPort}`;
    const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    etcd = startProcess('etcd', [
      '--name=test',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdClientUrl}`,
      `--advertise-client-urls=${etcdClientUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=test=${etcdPeerUrl}`,
      '--initial-cluster-state=new',
      '--log-level=warn',
    ]);

    const url = `https://127.0.0.1:${securePort}`;
    apiserver = startProcess(binary, [
      `--etcd-servers=${etcdClientUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${securePort}`,
      `--cert-dir=${join(dir, 'certs')}`,
      `--tls-cert-file=${serving.certPath}`,
      `--tls-private-key-file=${serving.keyPath}`,
      `--token-auth-file=${tokenFile}`,
      '--anonymous-auth=false',
      '--authorization-mode=RBAC',
      `--service-account-issuer=${url}`,
      `--service-account-jwks-uri=${url}/openid/v1/jwks`,
      `--service-account-signing-key-file=${signingKeyPath}`,
      `--service-account-key-file=${signingKeyPath}`,
      '--endpoint-reconciler-type=none',
      `--audit-policy-file=${auditPolicyPath}`,
      `--audit-log-path=${auditLogPath}`,
      '--audit-log-mode=blocking',
      '--profiling=false',
      '--v=1',
    ]);

    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig(url, pki.ca.cert, adminToken), { mode: 0o600 });
    const server = kubeApiServer({
      url,
      caPem: pki.ca.cert,
      caPath: pki.ca.certPath,
      adminToken,
      adminKubeconfigPath: kubeconfigPath,
      auditLogPath,
      stopAll,
    });
    await waitUntilReady(server, [etcd, apiserver]);
    return server;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function kubeApiServer(options: {
  url: string;
  caPem: string;
  caPath: string;
  adminToken: string;
  adminKubeconfigPath: string;
  auditLogPath: string;
  stopAll: () => Promise<void>;
}): KubeApiServer {
  const { url, caPem, adminToken } = options;
  let stopped: Promise<void> | undefined;

  const request: KubeApiServer['request'] = async <T>(
    method: string,
    path: string,
    body?: unknown,
    requestOptions: KubeRequestOptions = {},
  ) => {
    const response = await got(`${url}${path}`, {
      method: method as 'GET',
      // /openid/v1/jwks answers only to its own type (RFC 7517 §8.5.1).
      headers: { authorization: `Bearer ${requestOptions.token ?? adminToken}`, accept: 'application/json, application/jwk-set+json' },
      ...(body !== undefined && { json: body }),
      ...(requestOptions.searchParams !== undefined && { searchParams: requestOptions.searchParams }),
      https: { certificateAuthority: caPem },
      throwHttpErrors: false,
      retry: { limit: 0 },
      timeout: { request: 30_000 },
    });
    let parsed: unknown = response.body;
    try {
      parsed = JSON.parse(response.body) as unknown;
    } catch {
      // Not JSON (e.g. /readyz's "ok"): the text.
    }
    return { status: response.statusCode, body: parsed as T };
  };

  /** Creates an object; 409 (it exists) is fine. Anything else but 201 throws with the API's answer. */
  const create = async (path: string, object: unknown) => {
    const response = await request('POST', path, object);
    if (response.status !== 201 && response.status !== 409) {
      throw new Error(`kube-apiserver POST ${path} answered ${response.status}: ${JSON.stringify(response.body)}`);
    }
  };

  const requestToken: KubeApiServer['requestToken'] = async (namespace, name, tokenOptions = {}) => {
    const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`;
    const response = await request<{ status?: { token?: string } }>(
      'POST',
      path,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { audiences: tokenOptions.audiences ?? [], expirationSeconds: tokenOptions.expirationSeconds ?? 3600 },
      },
      tokenOptions.token === undefined ? {} : { token: tokenOptions.token },
    );
    const token = response.body.status?.token;
    if (response.status !== 201 || typeof token !== 'string') {
      throw new Error(`TokenRequest for ${namespace}/${name} answered ${response.status}: ${JSON.stringify(response.body)}`);
    }
    return token;
  };

  return {
    url,
    caPem,
    caPath: options.caPath,
    issuer: url,
    adminKubeconfigPath: options.adminKubeconfigPath,
    adminToken,
    request,
    createNamespace: (name) => create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }),
    createServiceAccount: (namespace, name) =>
      create(`/api/v1/namespaces/${namespace}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } }),
    async allowTokenRequests(namespace, accounts, grantee) {
      const name = `token-requests-${grantee.namespace}-${grantee.name}`;
      await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`, {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name },
        rules: [{ apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'], resourceNames: [...accounts] }],
      });
      await create(`/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`, {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
        subjects: [{ kind: 'ServiceAccount', namespace: grantee.namespace, name: grantee.name }],
      });
    },
    requestToken,
    async writeServiceAccountMount(dir, namespace, name) {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'token'), await requestToken(namespace, name), { mode: 0o600 });
      await writeFile(join(dir, 'ca.crt'), caPem);
      await writeFile(join(dir, 'namespace'), namespace);
    },
    async auditedRequests() {
      const text = await readFile(options.auditLogPath, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => auditedRequestOf(JSON.parse(line) as AuditEvent))
        .filter((request): request is KubeAuditedRequest => request !== undefined);
    },
    stop() {
      stopped ??= options.stopAll();
      return stopped;
    },
  };
}

interface AuditEvent {
  stage?: string;
  verb: string;
  requestURI: string;
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  user: { username: string };
  responseStatus?: { code?: number };
}

function auditedRequestOf(event: AuditEvent): KubeAuditedRequest | undefined {
  if (event.stage !== 'ResponseComplete' || event.objectRef === undefined) return undefined;
  const { resource, subresource, namespace, name } = event.objectRef;
  return {
    verb: event.verb,
    ...(resource !== undefined && { resource }),
    ...(subresource !== undefined && { subresource }),
    ...(namespace !== undefined && { namespace }),
    ...(name !== undefined && { name }),
    user: event.user.username,
    code: event.responseStatus?.code ?? 0,
  };
}

function kubeconfig(url: string, caPem: string, token: string): string {
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'test', cluster: { server: url, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
      users: [{ name: 'test-admin', user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test-admin', namespace: 'default' } }],
      'current-context': 'test',
    },
    null,
    2,
  )}\n`;
}

type Started = ReturnType<typeof startProcess>;

async function waitUntilReady(server: KubeApiServer, [etcd, apiserver]: [Started, Started]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (hasExited(etcd.child))
      throw new Error(`etcd exited (${exitDescription(etcd.child)}) before kube-apiserver was ready:\n${etcd.output()}`);
    if (hasExited(apiserver.child)) {
      throw new Error(`kube-apiserver exited (${exitDescription(apiserver.child)}) before it was ready:\n${apiserver.output()}`);
    }
    try {
      const response = await server.request('GET', '/readyz');
      if (response.status === 200) return;
      last = `${response.status}: ${JSON.stringify(response.body)}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`kube-apiserver was not ready within ${READY_TIMEOUT_MS / 1000} s (last answer ${last}):\n${apiserver.output()}`);
}
