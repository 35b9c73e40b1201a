/**
 * The worker's minter of service-account assertions (activities/service-account-tokens.ts)
 * against the suite's real kube-apiserver: the token it keeps and when it mints anew (its 80 %
 * point, judged by an injected clock; a spent token), and each refusal of the API server as a
 * typed error that names the account and never holds a token.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SERVICE_ACCOUNT_TOKEN_SECONDS, ServiceAccountTokenError, ServiceAccountTokens } from '../../activities/service-account-tokens.js';
import { startKubeApiServer, type KubeApiServer } from '../support/kube-apiserver.js';

const NAMESPACE = 'minting';
const WORKER = { namespace: NAMESPACE, name: 'worker' };
const AUDIENCE = 'https://iam.example/oauth2/token';

let kube: KubeApiServer;
let dir: string;
let podDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  kube = await startKubeApiServer();
  dir = await mkdtemp(join(tmpdir(), 'service-account-tokens-'));
  await kube.createNamespace(NAMESPACE);
  for (const account of [WORKER.name, 'orders', 'billing']) await kube.createServiceAccount(NAMESPACE, account);
  await kube.allowTokenRequests(NAMESPACE, ['orders', 'ghost'], WORKER);
  podDir = join(dir, 'serviceaccount');
  await kube.writeServiceAccountMount(podDir, WORKER.namespace, WORKER.name);
  env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: new URL(kube.url).port, KUBERNETES_SERVICE_ACCOUNT_DIR: podDir };
}, 1_800_000);

afterAll(async () => {
  await kube?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function mintsFor(account: string): Promise<number> {
  return (await kube.auditedRequests()).filter((request) => request.subresource === 'token' && request.name === account).length;
}

describe('ServiceAccountTokens against kube-apiserver', () => {
  test('keeps a token until 80 % of its lifetime or until it is spent, then mints anew', async () => {
    let now = Date.now();
    const tokens = new ServiceAccountTokens({ now: () => now });
    const orders = { namespace: NAMESPACE, name: 'orders' };
    const before = await mintsFor('orders');

    const first = await tokens.token(orders, AUDIENCE, env);
    const claims = decodeJwt(first.token.reveal());
    expect(claims).toMatchObject({ iss: kube.issuer, sub: `system:serviceaccount:${NAMESPACE}:orders`, aud: [AUDIENCE] });
    expect(claims.exp! - claims.iat!).toBe(SERVICE_ACCOUNT_TOKEN_SECONDS);
    // Printing it never shows it.
    expect(String(first.token)).toBe('[redacted]');

    // The reads of one request share it: one TokenRequest.
    expect((await tokens.token(orders, AUDIENCE, env)).token.reveal()).toBe(first.token.reveal());
    expect(await mintsFor('orders')).toBe(before + 1);
    // Another audience is another token.
    const other = await tokens.token(orders, 'https://other.example/token', env);
    expect(decodeJwt(other.token.reveal()).aud).toEqual(['https://other.example/token']);

    // Just before its 80 % point it is kept; at it, a new one is minted.
    now += SERVICE_ACCOUNT_TOKEN_SECONDS * 1000 * 0.8 - 5_000;
    expect((await tokens.token(orders, AUDIENCE, env)).token.reveal()).toBe(first.token.reveal());
    now += 10_000;
    const second = await tokens.token(orders, AUDIENCE, env);
    expect(second.token.reveal()).not.toBe(first.token.reveal());

    // Once sent, it is not handed out again.
    second.spend();
    const third = await tokens.token(orders, AUDIENCE, env);
    expect(third.token.reveal()).not.toBe(second.token.reveal());
    expect(decodeJwt(third.token.reveal()).jti).not.toBe(decodeJwt(second.token.reveal()).jti);
    expect(await mintsFor('orders')).toBe(before + 4);
  });

  test.each([
    [
      'an account the Role does not name: forbidden, naming the account and the permission',
      'billing',
      'forbidden',
      /^assertionRef: serviceaccount:minting\/billing: the worker may not mint its tokens \(403\): its service account needs RBAC permission to create serviceaccounts\/token for this account: .*cannot create resource "serviceaccounts\/token"/,
    ],
    [
      'an account that does not exist: not_found',
      'ghost',
      'not_found',
      /^assertionRef: serviceaccount:minting\/ghost: no such service account \(404\)/,
    ],
  ])('%s', async (_what, account, reason, message) => {
    const failure = new ServiceAccountTokens().token({ namespace: NAMESPACE, name: account }, AUDIENCE, env);
    await expect(failure).rejects.toBeInstanceOf(ServiceAccountTokenError);
    await expect(failure).rejects.toMatchObject({ reason, kind: 'secret_unavailable', message: expect.stringMatching(message) as unknown });
  });

  test('a pod token the API server does not accept is unauthorized, and the message holds no token', async () => {
    const badDir = join(dir, 'bad-serviceaccount');
    await kube.writeServiceAccountMount(badDir, WORKER.namespace, WORKER.name);
    const forged = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl';
    await writeFile(join(badDir, 'token'), forged);
    const error = await new ServiceAccountTokens()
      .token({ namespace: NAMESPACE, name: 'orders' }, AUDIENCE, { ...env, KUBERNETES_SERVICE_ACCOUNT_DIR: badDir })
      .catch((err: unknown) => err);
    expect(error).toMatchObject({ reason: 'unauthorized' });
    expect((error as Error).message).toBe(
      "assertionRef: serviceaccount:minting/orders: the Kubernetes API refused the worker's own service-account token (401): is it expired or from another cluster?",
    );
    expect((error as Error).message).not.toContain(forged);
  });

  test('an API server that does not answer is unreachable', async () => {
    await expect(
      new ServiceAccountTokens().token({ namespace: NAMESPACE, name: 'orders' }, AUDIENCE, { ...env, KUBERNETES_SERVICE_PORT: '1' }),
    ).rejects.toMatchObject({
      reason: 'unreachable',
      message: 'assertionRef: serviceaccount:minting/orders: the Kubernetes API at https://127.0.0.1:1 did not answer (ECONNREFUSED)',
    });
  });
});
