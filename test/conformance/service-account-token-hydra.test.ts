/**
 * A service-account identity per client, end to end with three real parties: the suite's
 * kube-apiserver (test/support/kube-apiserver.ts) mints a token for the client's own service
 * account through the TokenRequest API (`assertionRef: serviceaccount:<namespace>/<name>`); ORY
 * Hydra trusts the API server's issuer and its key (from `/openid/v1/jwks`) for that subject,
 * `system:serviceaccount:<namespace>:<name>` (the JWT-bearer grant, as in jwt-bearer-hydra.test.ts);
 * the worker, on a real Temporal dev server and redis-server, talks to the API server as a pod
 * does (`KUBERNETES_SERVICE_HOST`/`PORT` and its own token and CA in the service-account
 * directory) and gets its token into Redis. RBAC allows the worker `create` on
 * `serviceaccounts/token` for the named account only: another is a clear `secret_unavailable`,
 * retried with the workflow's backoff, never a loop against the API server, and the IAM sees nothing.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, exportJWK, importJWK, type JSONWebKeySet, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startHydra, type HydraServer } from '../support/hydra.js';
import { startKubeApiServer, type KubeApiServer } from '../support/kube-apiserver.js';
import { eventually, startTokenStack, tokenAfterGeneration, type TokenStack } from '../support/token-stack.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const CLIENT_SECRET = 'service-account client secret/+&=~';
const NAMESPACE = 'payments';
/** The worker's own service account: its pod token authenticates it to the API server. */
const WORKER = { namespace: NAMESPACE, name: 'token-lifecycle-worker' };
const ORDERS = { clientId: 'sa-orders', account: 'orders' };
/** An account the worker's Role does not name. */
const REFUSED = { clientId: 'sa-refused', account: 'refused' };

let dir: string;
let kube: KubeApiServer;
let hydra: HydraServer;
let stack: TokenStack;
/** The base64url header every token of this API server starts with: a needle for all of them. */
let tokenHeader: string;
const podTokens: string[] = [];

async function file(name: string, content: string): Promise<`file:${string}`> {
  const path = join(dir, name);
  await writeFile(path, content, { mode: 0o600 });
  return `file:${path}`;
}

function tokenRequestsOf(account: string) {
  return kube
    .auditedRequests()
    .then((requests) =>
      requests.filter((request) => request.subresource === 'token' && request.namespace === NAMESPACE && request.name === account),
    );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'service-account-token-hydra-'));
  [kube, hydra] = await Promise.all([startKubeApiServer(), startHydra({ accessTokenTtl: '4s' })]);

  await kube.createNamespace(NAMESPACE);
  for (const account of [WORKER.name, ORDERS.account, REFUSED.account]) await kube.createServiceAccount(NAMESPACE, account);
  await kube.allowTokenRequests(NAMESPACE, [ORDERS.account], WORKER);
  // The pod's mount: its own token (from the TokenRequest API, as the kubelet gets it) and ca.crt.
  const podDir = join(dir, 'serviceaccount');
  await kube.writeServiceAccountMount(podDir, WORKER.namespace, WORKER.name);

  // Hydra trusts the API server's signing key, as /openid/v1/jwks serves it, for each subject.
  const jwks = await kube.request<JSONWebKeySet>('GET', '/openid/v1/jwks');
  const served = jwks.body.keys[0] as JWK;
  const publicJwk = { ...(await exportJWK(await importJWK(served, 'RS256'))), kid: served.kid, alg: 'RS256', use: 'sig' };
  const sample = await kube.requestToken(NAMESPACE, WORKER.name);
  podTokens.push(sample);
  tokenHeader = sample.split('.')[0]!;
  for (const client of [ORDERS, REFUSED]) {
    await hydra.admin('POST', '/admin/clients', {
      client_id: client.clientId,
      client_secret: CLIENT_SECRET,
      grant_types: [JWT_BEARER],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'read',
    });
    await hydra.admin('POST', '/admin/trust/grants/jwt-bearer/issuers', {
      issuer: kube.issuer,
      subject: `system:serviceaccount:${NAMESPACE}:${client.account}`,
      scope: ['read'],
      jwk: publicJwk,
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
    });
  }

  stack = await startTokenStack({
    env: {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: new URL(kube.url).port,
      KUBERNETES_SERVICE_ACCOUNT_DIR: podDir,
    },
  });
}, 1_800_000);

afterAll(async () => {
  await stack?.stop();
  await hydra?.destroy();
  await kube?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function hydraTokenRequests(before: number) {
  return hydra
    .publicRequests()
    .slice(before)
    .filter((request) => request.path === '/oauth2/token');
}

async function register(client: { clientId: string; account: string }) {
  await stack.admin.register({
    clientId: client.clientId,
    tokenUrl: hydra.tokenUrl,
    authMethod: 'client_secret_basic',
    secretRef: await file(`${client.clientId}.secret`, CLIENT_SECRET),
    grant: 'jwt-bearer',
    assertionRef: `serviceaccount:${NAMESPACE}/${client.account}`,
    scope: 'read',
  });
}

describe('a service-account identity per client: kube-apiserver mints, Hydra trusts, the worker stores', () => {
  test(
    'an account RBAC does not grant is a clear secret_unavailable, retried with backoff, and the IAM sees nothing',
    { timeout: 120_000 },
    async () => {
      const hydraBefore = hydra.publicRequests().length;
      await register(REFUSED);

      const status = await eventually(
        async () => {
          const s = await stack.admin.status(REFUSED.clientId);
          return s.lastError?.kind === 'secret_unavailable' ? s : undefined;
        },
        60_000,
        `${REFUSED.clientId} secret_unavailable`,
      );
      expect(status.state).toBe('backing_off');
      expect(status.lastError!.message).toContain(`assertionRef: serviceaccount:${NAMESPACE}/${REFUSED.account}`);
      expect(status.lastError!.message).toContain('needs RBAC permission to create serviceaccounts/token for this account');
      expect(status.lastError!.message).toContain(
        `User "system:serviceaccount:${NAMESPACE}:${WORKER.name}" cannot create resource "serviceaccounts/token"`,
      );

      // Give a retry loop the time to show itself: the workflow's backoff (5 s, then 10 s) allows
      // at most two more attempts, each one TokenRequest.
      await new Promise((resolve) => setTimeout(resolve, 8_000));
      const asked = await tokenRequestsOf(REFUSED.account);
      expect(asked.length).toBeGreaterThanOrEqual(1);
      expect(asked.length).toBeLessThanOrEqual(3);
      expect(asked.every((request) => request.verb === 'create' && request.code === 403)).toBe(true);
      expect(asked.every((request) => request.user === `system:serviceaccount:${NAMESPACE}:${WORKER.name}`)).toBe(true);
      // Nothing was sent to the IAM, and nothing stored.
      expect(hydraTokenRequests(hydraBefore)).toEqual([]);
      expect(await stack.redis.exists(tokenKey('oauth:', REFUSED.clientId))).toBe(0);
      await stack.admin.remove(REFUSED.clientId);
    },
  );

  test(
    'the client’s own account: its token lands in Redis with Hydra’s subject for it, and renews with a new assertion each time',
    { timeout: 180_000 },
    async () => {
      const before = hydra.publicRequests().length;
      await register(ORDERS);

      const first = await tokenAfterGeneration(stack, ORDERS.clientId, 0);
      const renewed = await tokenAfterGeneration(stack, ORDERS.clientId, 2);
      expect(renewed.access_token).not.toBe(first.access_token);
      expect(await hydra.introspect(renewed.access_token!)).toMatchObject({
        active: true,
        sub: `system:serviceaccount:${NAMESPACE}:${ORDERS.account}`,
        client_id: ORDERS.clientId,
        scope: 'read',
      });
      expect(await stack.admin.status(ORDERS.clientId)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });

      // Hydra refuses a jti it has seen: every request granted means each carried a new assertion,
      // which the worker minted as the worker's service account, for this account only.
      const requests = hydraTokenRequests(before);
      expect(requests.length).toBeGreaterThanOrEqual(3);
      expect(requests.every((request) => request.method === 'POST' && request.status === 200)).toBe(true);
      const minted = await tokenRequestsOf(ORDERS.account);
      expect(minted.length).toBeGreaterThanOrEqual(requests.length);
      expect(minted.every((request) => request.code === 201 && request.user === `system:serviceaccount:${NAMESPACE}:${WORKER.name}`)).toBe(
        true,
      );
    },
  );

  test('no workflow history holds the client secret or any token of the API server', async () => {
    // Every token the API server signs starts with the same header: searching for it finds any.
    expect(decodeJwt(podTokens[0]!).iss).toBe(kube.issuer);
    await expectNoSecretsInHistories(
      stack.client,
      [ORDERS, REFUSED].map((client) => workflowIdFor(client.clientId)),
      [CLIENT_SECRET, tokenHeader, ...podTokens],
    );
  });
});
