/**
 * The token lifecycle end to end: the real Temporal dev server, a real redis-server and the IAM
 * emulator over HTTP. Token lifetimes of a few seconds stand in for the IAM's 300 s.
 */
import { createHash } from 'node:crypto';
import proto from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import {
  activeAt,
  storedToken as storedTokenIn,
  tokenWithGenerationAbove as tokenWithGenerationAboveIn,
} from '../support/failure-scenarios.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { firstRenewal } from '../support/workflow-history.js';

const LIFETIME_SECONDS = 3;
const SECRETS = {
  basic: 'b4sic:secret+with%odd chars é',
  post: 'p0st-secret',
  rejected: 'the-right-secret',
};

let iam: IamEmulator;
let stack: TokenStack;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: LIFETIME_SECONDS,
    clients: [
      { clientId: 'orders-basic', clientSecret: SECRETS.basic, scopes: ['orders:read'] },
      { clientId: 'orders-post', clientSecret: SECRETS.post },
      { clientId: 'forced', clientSecret: SECRETS.post },
      { clientId: 'history', clientSecret: SECRETS.post },
      { clientId: 'wrong-secret', clientSecret: SECRETS.rejected },
      { clientId: 'removable', clientSecret: SECRETS.post },
      { clientId: 'cancelled', clientSecret: SECRETS.post },
    ],
  });
  stack = await startTokenStack({
    env: { BASIC_SECRET: SECRETS.basic, POST_SECRET: SECRETS.post, WRONG_SECRET: 'not-the-secret' },
  });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
});

function registration(clientId: string, overrides: Partial<ClientRegistration> = {}): ClientRegistration {
  return { clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:POST_SECRET', ...overrides };
}

const storedToken = (clientId: string) => storedTokenIn(stack.redis, clientId);
const tokenWithGenerationAbove = (clientId: string, generation: number, timeoutMs = 15_000) =>
  tokenWithGenerationAboveIn(stack.redis, clientId, generation, timeoutMs);

const sha256Prefix = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

describe.each([
  { authMethod: 'client_secret_basic' as const, clientId: 'orders-basic', secretRef: 'env:BASIC_SECRET' as const, scope: 'orders:read' },
  { authMethod: 'client_secret_post' as const, clientId: 'orders-post', secretRef: 'env:POST_SECRET' as const, scope: undefined },
])('$authMethod against the IAM emulator', ({ authMethod, clientId, secretRef, scope }) => {
  test('the token appears in Redis with every contract field and renews at 0.85 × its lifetime', async () => {
    await stack.admin.register(registration(clientId, { authMethod, secretRef, ...(scope && { scope }) }));

    const first = await tokenWithGenerationAbove(clientId, 0);
    const issued = iam.requestsFor(clientId).filter((r) => r.outcome === 'issued');
    expect(issued).toHaveLength(1);
    expect(issued[0]!.authMethod).toBe(authMethod);
    expect(first).toEqual({
      access_token: issued[0]!.accessToken,
      token_type: 'Bearer',
      expires_at: expect.stringMatching(/^\d{13}$/) as string,
      obtained_at: expect.stringMatching(/^\d{13}$/) as string,
      refresh_at: expect.stringMatching(/^\d{13}$/) as string,
      scope: scope ?? '',
      generation: '1',
      fingerprint: sha256Prefix(issued[0]!.accessToken!),
      client_id: clientId,
    });
    // Redis never serves an expired token: the key goes no later than the token.
    const expireTime = await stack.redis.call('PEXPIRETIME', tokenKey('oauth:', clientId));
    expect(Number(expireTime)).toBeLessThanOrEqual(Number(first.expires_at));
    expect(Number(first.expires_at) - issued[0]!.at).toBeLessThanOrEqual(LIFETIME_SECONDS * 1000);

    const second = await tokenWithGenerationAbove(clientId, 1, LIFETIME_SECONDS * 1000 + 30_000);
    expect(second.generation).toBe('2');
    expect(second.access_token).not.toBe(first.access_token);
    // The workflow chose to renew 0.85 × the lifetime after the first request left, less up to
    // 5 % jitter; the renewal reached the IAM no earlier (how much later is the machine's).
    const renewal = await firstRenewal(stack.client, workflowIdFor(clientId), LIFETIME_SECONDS);
    expect(renewal.fraction).toBeGreaterThanOrEqual(0.8);
    expect(renewal.fraction).toBeLessThanOrEqual(0.85);
    const renewals = iam.requestsFor(clientId).filter((r) => r.outcome === 'issued');
    expect(renewals[1]!.at).toBeGreaterThanOrEqual(renewal.at);

    const status = await stack.admin.status(clientId);
    expect(status).toMatchObject({ clientId, state: 'active', consecutiveFailures: 0, lastError: null });
    expect(status.generation).toBeGreaterThanOrEqual(2);
  });
});

test('forceRefresh yields a new token, and one naming an old fingerprint sends no request', async () => {
  const clientId = 'forced';
  // A long lifetime keeps the scheduled renewal out of the way of the forced one.
  iam.setTokenLifetime(60);
  await stack.admin.register(registration(clientId, { policy: { minForcedRefreshIntervalMs: 0, refreshFraction: 0.9 } }));
  try {
    const first = await tokenWithGenerationAbove(clientId, 0);
    // A refresh while the first request is still in flight would join it (coalescing).
    await activeAt(stack, clientId, 1);
    const status = await stack.admin.refresh(clientId, { reason: 'test', wait: true });
    expect(status?.generation).toBe(2);
    const second = await tokenWithGenerationAbove(clientId, 1);
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(status?.fingerprint).toBe(second.fingerprint);

    const before = iam.requestsFor(clientId).length;
    const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
    await handle.signal('forceRefresh', { rejectedFingerprint: first.fingerprint, reason: 'stale 401' });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(iam.requestsFor(clientId).length).toBe(before);
    expect((await storedToken(clientId))?.generation).toBe('2');

    await handle.signal('forceRefresh', { rejectedFingerprint: second.fingerprint, reason: 'current 401' });
    const third = await tokenWithGenerationAbove(clientId, 2);
    expect(iam.requestsFor(clientId).length).toBe(before + 1);
    expect(third.generation).toBe('3');
  } finally {
    iam.setTokenLifetime(LIFETIME_SECONDS);
  }
});

test('after several cycles the history holds neither the client secret nor any issued token', async () => {
  const clientId = 'history';
  await stack.admin.register(registration(clientId));
  await tokenWithGenerationAbove(clientId, 2, 20_000);
  const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
  const history = await handle.fetchHistory();
  const bytes = Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish());
  const tokens = iam.requestsFor(clientId).flatMap((r) => (r.accessToken ? [r.accessToken] : []));
  expect(tokens.length).toBeGreaterThanOrEqual(3);
  for (const secret of [SECRETS.post, ...tokens]) {
    expect(bytes.includes(Buffer.from(secret)), `history contains ${secret.slice(0, 6)}…`).toBe(false);
    expect(bytes.includes(Buffer.from(Buffer.from(secret).toString('base64').slice(0, 20))), 'history contains it in base64').toBe(false);
  }
  // …while the metadata operators need is there.
  expect(bytes.includes(Buffer.from((await storedToken(clientId))!.fingerprint!))).toBe(true);
  const description = await handle.describe();
  expect(JSON.stringify(description.raw)).not.toContain(SECRETS.post);
});

test('a wrong secret parks the workflow in credentials_rejected after exactly one request', async () => {
  const clientId = 'wrong-secret';
  await stack.admin.register(registration(clientId, { secretRef: 'env:WRONG_SECRET' }));
  const status = await eventually(async () => {
    const s = await stack.admin.status(clientId);
    return s.state === 'credentials_rejected' ? s : undefined;
  });
  expect(status.lastError).toMatchObject({ kind: 'credentials_rejected', status: 401, oauthError: 'unauthorized_client' });
  await new Promise((resolve) => setTimeout(resolve, 4000));
  expect(iam.requestsFor(clientId).map((r) => r.outcome)).toEqual(['unauthorized_client']);
  expect(await storedToken(clientId)).toBeUndefined();
  await expect(stack.admin.refresh(clientId, { wait: true })).rejects.toThrow(/rejected the credentials/);
});

test('remove with purge stops the workflow and deletes the token', async () => {
  const clientId = 'removable';
  await stack.admin.register(registration(clientId));
  await tokenWithGenerationAbove(clientId, 0);
  const final = await stack.admin.remove(clientId, { purge: true });
  expect(final.state).toBe('stopped');
  expect(await storedToken(clientId)).toBeUndefined();
  const description = await stack.client.workflow.getHandle(workflowIdFor(clientId)).describe();
  expect(description.status.name).toBe('COMPLETED');
});

test("a cancellation (the Temporal UI's Cancel) stops the workflow like remove without purge, as cancelled: the token stays until it expires", async () => {
  const clientId = 'cancelled';
  await stack.admin.register(registration(clientId));
  const first = await tokenWithGenerationAbove(clientId, 0);
  const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
  await handle.cancel();

  await expect(handle.result()).rejects.toThrow('Workflow execution cancelled');
  expect((await handle.describe()).status.name).toBe('CANCELLED');
  expect(await stack.admin.status(clientId)).toMatchObject({ state: 'stopped' });
  expect((await storedToken(clientId))?.generation).toBe(first.generation);
  const requests = iam.requestsFor(clientId).length;
  await new Promise((resolve) => setTimeout(resolve, LIFETIME_SECONDS * 1000));
  expect(iam.requestsFor(clientId)).toHaveLength(requests);
});
