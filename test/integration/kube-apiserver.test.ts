/**
 * The suite's Kubernetes control plane (test/support/kube-apiserver.ts): kube-apiserver v1.34 on
 * Debian's etcd, no kubelet. What the chart and the service-account reference kind rely on is
 * real: readiness, TokenRequest tokens and their issuer's keys, RBAC on `serviceaccounts/token`,
 * and the API's own validation of objects in a server-side dry run.
 */
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startKubeApiServer, type KubeApiServer } from '../support/kube-apiserver.js';

const NAMESPACE = 'control-plane-test';
const AUDIENCE = 'https://iam.example/oauth2/token';

let kube: KubeApiServer;

beforeAll(async () => {
  kube = await startKubeApiServer();
  await kube.createNamespace(NAMESPACE);
  for (const account of ['orders', 'billing', 'minter']) await kube.createServiceAccount(NAMESPACE, account);
}, 1_800_000);

afterAll(async () => {
  await kube?.stop();
});

/** A Deployment the API accepts, to vary one field of. */
function deployment(name: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'worker', image: 'token-lifecycle-worker:test' }] },
      },
      ...spec,
    },
  };
}

describe('the suite’s kube-apiserver', () => {
  test('answers /readyz with every check passed', async () => {
    const response = await kube.request<string>('GET', '/readyz', undefined, { searchParams: { verbose: '1' } });
    expect(response.status).toBe(200);
    expect(response.body).toMatch(/readyz check passed/);
    expect(await kube.request('GET', '/version')).toMatchObject({ status: 200, body: { gitVersion: 'v1.34.4' } });
  });

  test('refuses a request without credentials', async () => {
    expect((await kube.request('GET', '/api/v1/namespaces', undefined, { token: 'not-a-token' })).status).toBe(401);
  });

  test('TokenRequest mints a token with iss, sub, aud and exp, signed by a key /openid/v1/jwks serves', async () => {
    const before = Math.floor(Date.now() / 1000);
    const token = await kube.requestToken(NAMESPACE, 'orders', { audiences: [AUDIENCE], expirationSeconds: 600 });

    const discovery = await kube.request<{ issuer: string; jwks_uri: string }>('GET', '/.well-known/openid-configuration');
    expect(discovery).toMatchObject({ status: 200, body: { issuer: kube.issuer, jwks_uri: `${kube.url}/openid/v1/jwks` } });
    const jwks = await kube.request<JSONWebKeySet>('GET', '/openid/v1/jwks');
    expect(jwks.status).toBe(200);
    expect(jwks.body.keys).toHaveLength(1);
    expect(jwks.body.keys[0]).toMatchObject({ kty: 'RSA', use: 'sig', alg: 'RS256', kid: decodeProtectedHeader(token).kid });

    // Verified with the served key alone: what an IAM that trusts this issuer does.
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.body), { issuer: kube.issuer, audience: AUDIENCE });
    expect(payload.sub).toBe(`system:serviceaccount:${NAMESPACE}:orders`);
    expect(payload.aud).toEqual([AUDIENCE]);
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(payload.iat).toBeGreaterThanOrEqual(before - 5);
    expect(typeof payload.jti).toBe('string');
  });

  test('TokenRequest refuses a lifetime under ten minutes', async () => {
    await expect(kube.requestToken(NAMESPACE, 'orders', { expirationSeconds: 599 })).rejects.toThrow(/answered 422.*expirationSeconds/s);
  });

  test('RBAC: create on serviceaccounts/token only for the named accounts', async () => {
    const minterToken = await kube.requestToken(NAMESPACE, 'minter');
    // Before the Role: refused.
    await expect(kube.requestToken(NAMESPACE, 'orders', { token: minterToken })).rejects.toThrow(/answered 403/);

    await kube.allowTokenRequests(NAMESPACE, ['orders'], { namespace: NAMESPACE, name: 'minter' });
    const token = await kube.requestToken(NAMESPACE, 'orders', { token: minterToken, audiences: [AUDIENCE] });
    const { payload } = await jwtVerify(token, createLocalJWKSet((await kube.request<JSONWebKeySet>('GET', '/openid/v1/jwks')).body));
    expect(payload.sub).toBe(`system:serviceaccount:${NAMESPACE}:orders`);
    // An account the Role does not name stays refused, with RBAC's reason.
    const refused = await kube.request<{ reason: string; message: string }>(
      'POST',
      `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/billing/token`,
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [AUDIENCE] } },
      { token: minterToken },
    );
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ reason: 'Forbidden' });
    expect(refused.body.message).toContain(`cannot create resource "serviceaccounts/token"`);
    // The audit log saw both answers.
    const minted = (await kube.auditedRequests()).filter(
      (request) => request.subresource === 'token' && request.user === `system:serviceaccount:${NAMESPACE}:minter`,
    );
    expect(minted.map(({ verb, name, code }) => ({ verb, name, code }))).toEqual([
      { verb: 'create', name: 'orders', code: 403 },
      { verb: 'create', name: 'orders', code: 201 },
      { verb: 'create', name: 'billing', code: 403 },
    ]);
  });

  test('a server-side dry run validates a Deployment and stores nothing', async () => {
    const path = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments`;
    const dryRun = { dryRun: 'All', fieldValidation: 'Strict' };

    const accepted = await kube.request<{ spec: { strategy: { type: string } } }>('POST', path, deployment('worker'), {
      searchParams: dryRun,
    });
    expect(accepted.status).toBe(201);
    // Defaulting ran: the API filled in the rollout strategy.
    expect(accepted.body.spec.strategy.type).toBe('RollingUpdate');
    expect((await kube.request('GET', `${path}/worker`)).status).toBe(404);

    const unknown = await kube.request<{ message: string }>('POST', path, deployment('typo', { replicaz: 2 }), { searchParams: dryRun });
    expect(unknown.status).toBe(400);
    expect(unknown.body.message).toContain('unknown field "spec.replicaz"');

    const invalid = await kube.request<{ reason: string; message: string }>('POST', path, deployment('negative', { replicas: -1 }), {
      searchParams: dryRun,
    });
    expect(invalid.status).toBe(422);
    expect(invalid.body).toMatchObject({ reason: 'Invalid' });
    expect(invalid.body.message).toContain('spec.replicas');
  });

  test('the admin kubeconfig names the server, its CA and the admin token', async () => {
    const config = JSON.parse(await readFile(kube.adminKubeconfigPath, 'utf8')) as {
      clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
      users: { user: { token: string } }[];
    };
    expect(config.clusters[0]!.cluster.server).toBe(kube.url);
    expect(Buffer.from(config.clusters[0]!.cluster['certificate-authority-data'], 'base64').toString()).toBe(kube.caPem);
    expect(config.users[0]!.user.token).toBe(kube.adminToken);
  });
});
