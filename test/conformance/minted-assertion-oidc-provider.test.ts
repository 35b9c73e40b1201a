/**
 * A client assertion the platform minted (`assertionRef`, docs/design.md, "Without a stored
 * secret"), end to end against panva's oidc-provider: the test plays the platform (the kubelet
 * projecting a service-account token, a SPIFFE helper), signing assertions with a key the IAM holds
 * for the client and rewriting the file while renewals run. The worker signs nothing.
 *
 * The failed-login budget proves such a client by the assertion's identity (`iss`, `sub`, `aud`),
 * not its bytes: with the host's budget spent, rotated assertions still renew without waiting.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { LoginBudget } from '../../activities/login-budget.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startOidcProvider, type OidcProviderFixture } from '../support/oidc-provider.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const TTL_SECONDS = 3;
const ROTATE_EVERY_MS = 1_000;
const ROTATING = 'minted-rotating';
const EXPIRED = 'minted-expired';
const platformKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });

let dir: string;
let provider: OidcProviderFixture;
let stack: TokenStack;
let rotation: NodeJS.Timeout | undefined;
const written: string[] = [];

/** An assertion as a platform mints it: iss = sub = the client, aud the token endpoint, a fresh jti (RFC 7523 §3). */
async function mint(clientId: string, expiresInSeconds: number): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'platform-key-1' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(provider.tokenUrl)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + expiresInSeconds)
    .sign(platformKey.privateKey);
}

/** Writes the assertion file the way the kubelet does: a new file renamed over the old, never a half-written one. */
async function writeAssertion(path: string, jwt: string): Promise<void> {
  await writeFile(`${path}.tmp`, `${jwt}\n`, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
  written.push(jwt);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'minted-assertion-'));
  const jwks = { keys: [{ ...(await exportJWK(platformKey.publicKey)), kid: 'platform-key-1', alg: 'ES256', use: 'sig' }] };
  provider = await startOidcProvider({
    accessTokenTtlSeconds: TTL_SECONDS,
    clients: [ROTATING, EXPIRED].map((clientId) => ({ clientId, authMethod: 'private_key_jwt' as const, jwks })),
  });
  // One rejected login spends a host's budget: only proven credentials are sent after it.
  stack = await startTokenStack({ loginBudget: { maxRejections: 1, windowMs: 600_000 } });
});

afterAll(async () => {
  clearInterval(rotation);
  await stack?.stop();
  await provider?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function generationAbove(clientId: string, generation: number, timeoutMs: number): Promise<number> {
  return eventually(
    async () => {
      const current = Number((await stack.redis.hget(tokenKey('oauth:', clientId), 'generation')) ?? 0);
      return current > generation ? current : undefined;
    },
    timeoutMs,
    `${clientId} generation > ${generation}`,
  );
}

test('a rotated assertion file renews without waiting for a spent failed-login budget', { timeout: 120_000 }, async () => {
  const path = join(dir, 'rotating.jwt');
  await writeAssertion(path, await mint(ROTATING, 600));
  rotation = setInterval(() => void mint(ROTATING, 600).then((jwt) => writeAssertion(path, jwt)), ROTATE_EVERY_MS);
  await stack.admin.register({
    clientId: ROTATING,
    tokenUrl: provider.tokenUrl,
    authMethod: 'private_key_jwt',
    assertionRef: `file:${path}`,
  });
  await generationAbove(ROTATING, 0, 30_000);

  // Another client's rejected login spends the host's budget: unproven credentials would now wait ten minutes.
  const budget = new LoginBudget(stack.redis, { maxRejections: 1, windowMs: 600_000 });
  await budget.rejected('someone-else', new URL(provider.tokenUrl).origin);
  expect((await budget.takeTurn(new URL(provider.tokenUrl).origin)).state).toBe('exhausted');

  await generationAbove(ROTATING, 3, 4 * TTL_SECONDS * 1000 + 60_000);
  clearInterval(rotation);
  const status = await stack.admin.status(ROTATING);
  expect(status).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });

  const requests = provider.requests.filter((request) => request.clientId === ROTATING);
  expect(requests.length).toBeGreaterThanOrEqual(4);
  expect(requests.every((request) => request.status === 200 && request.authMethod === 'private_key_jwt')).toBe(true);
  // Each request sent the file as it was then: a different assertion every time, all the platform's.
  const jtis = requests.map((request) => request.assertion!.jti);
  expect(new Set(jtis).size).toBe(jtis.length);
  const mintedJtis = new Set(written.map((jwt) => decodeJwt(jwt).jti));
  expect(jtis.every((jti) => mintedJtis.has(jti as string))).toBe(true);
});

test('an expired assertion is secret_unavailable, named with its reference and expiry, and nothing reaches the IAM', async () => {
  const path = join(dir, 'expired.jwt');
  const jwt = await mint(EXPIRED, -60);
  await writeAssertion(path, jwt);
  const expiry = new Date((Math.floor(Date.now() / 1000) - 60) * 1000);
  await stack.admin.register({
    clientId: EXPIRED,
    tokenUrl: provider.tokenUrl,
    authMethod: 'private_key_jwt',
    assertionRef: `file:${path}`,
  });

  const status = await eventually(
    async () => {
      const s = await stack.admin.status(EXPIRED);
      return s.lastError?.kind === 'secret_unavailable' ? s : undefined;
    },
    30_000,
    `${EXPIRED} secret_unavailable`,
  );
  expect(status.lastError!.message).toContain(`assertionRef: the assertion in file:${path} expired at`);
  const named = /expired at (\S+);/.exec(status.lastError!.message)![1]!;
  expect(Math.abs(Date.parse(named) - expiry.getTime())).toBeLessThanOrEqual(2_000);
  expect(provider.requests.filter((request) => request.clientId === EXPIRED)).toEqual([]);
});

test('no workflow history holds an assertion', async () => {
  expect(written.length).toBeGreaterThan(1);
  await expectNoSecretsInHistories(stack.client, [workflowIdFor(ROTATING), workflowIdFor(EXPIRED)], written);
});
