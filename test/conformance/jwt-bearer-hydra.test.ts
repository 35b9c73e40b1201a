/**
 * The JWT-bearer grant (RFC 7523 §2.1, `grant: 'jwt-bearer'`) end to end against ORY Hydra v2.3.0
 * (test/support/hydra.ts): Hydra trusts an issuer's key for a subject through a trust relationship
 * made with its admin API, and the client still authenticates (Hydra requires it). The worker
 * signs the assertion with `keyRef`, or sends one the platform minted (`assertionRef`); the token
 * lands in Redis and Hydra's introspection says it is the subject's. An issuer Hydra does not
 * trust is `invalid_grant`: the client is parked after one request.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startHydra, type HydraServer } from '../support/hydra.js';
import { eventually, startTokenStack, tokenAfterGeneration, type TokenStack } from '../support/token-stack.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** A secret that form-encoding changes (RFC 6749 §2.3.1): Hydra decodes the Basic credentials. */
const CLIENT_SECRET = 'jwt-bearer secret/with+reserved&chars=~';
const SIGNED = { clientId: 'jwt-bearer-signed', subject: 'svc-billing' };
const MINTED = { clientId: 'jwt-bearer-minted', issuer: 'https://spiffe.example', subject: 'spiffe://example.org/billing' };
const UNTRUSTED = { clientId: 'jwt-bearer-untrusted', subject: 'svc-nobody' };
const grantKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const platformKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const untrustedKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });

let dir: string;
let hydra: HydraServer;
let stack: TokenStack;
const minted: string[] = [];

async function file(name: string, content: string): Promise<`file:${string}`> {
  const path = join(dir, name);
  await writeFile(path, content, { mode: 0o600 });
  return `file:${path}`;
}

const pem = (key: KeyObject) => key.export({ format: 'pem', type: 'pkcs8' }) as string;

/** A Hydra client that may use the grant, authenticating with client_secret_basic. */
async function createClient(clientId: string): Promise<void> {
  await hydra.admin('POST', '/admin/clients', {
    client_id: clientId,
    client_secret: CLIENT_SECRET,
    grant_types: [JWT_BEARER],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read',
  });
}

/** Hydra trusts `key` to sign assertions of `issuer` about `subject` (its trust relationships). */
async function trust(issuer: string, subject: string, key: KeyObject, kid: string): Promise<void> {
  await hydra.admin('POST', '/admin/trust/grants/jwt-bearer/issuers', {
    issuer,
    subject,
    scope: ['read'],
    jwk: { ...(await exportJWK(key)), kid, alg: 'ES256', use: 'sig' },
    expires_at: new Date(Date.now() + 3_600_000).toISOString(),
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jwt-bearer-hydra-'));
  hydra = await startHydra({ accessTokenTtl: '4s' });
  for (const client of [SIGNED, MINTED, UNTRUSTED]) await createClient(client.clientId);
  await trust(SIGNED.clientId, SIGNED.subject, grantKey.publicKey, 'grant-key');
  await trust(MINTED.issuer, MINTED.subject, platformKey.publicKey, 'platform-key');
  stack = await startTokenStack();
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await hydra?.destroy();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function tokenRequestsOf(before: number) {
  return hydra
    .publicRequests()
    .slice(before)
    .filter((request) => request.path === '/oauth2/token');
}

describe('the JWT-bearer grant against ORY Hydra', () => {
  test('an assertion signed with keyRef: tokens for the trusted subject land in Redis and renew', { timeout: 120_000 }, async () => {
    const before = hydra.publicRequests().length;
    await stack.admin.register({
      clientId: SIGNED.clientId,
      tokenUrl: hydra.tokenUrl,
      authMethod: 'client_secret_basic',
      secretRef: await file('signed.secret', CLIENT_SECRET),
      grant: 'jwt-bearer',
      keyRef: await file('grant-key.pem', pem(grantKey.privateKey)),
      keyId: 'grant-key',
      assertionSubject: SIGNED.subject,
      scope: 'read',
    });

    const first = await tokenAfterGeneration(stack, SIGNED.clientId, 0);
    const renewed = await tokenAfterGeneration(stack, SIGNED.clientId, 2);
    expect(renewed.access_token).not.toBe(first.access_token);
    expect(await hydra.introspect(renewed.access_token!)).toMatchObject({
      active: true,
      sub: SIGNED.subject,
      client_id: SIGNED.clientId,
      scope: 'read',
    });
    expect(await stack.admin.status(SIGNED.clientId)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
    // Every token request Hydra saw was granted: one per generation, none refused.
    const requests = tokenRequestsOf(before);
    expect(requests.length).toBeGreaterThanOrEqual(3);
    expect(requests.every((request) => request.method === 'POST' && request.status === 200)).toBe(true);
  });

  test('assertions the platform minted (assertionRef) are sent as they are, a fresh one per renewal', { timeout: 120_000 }, async () => {
    // Hydra refuses a jti it has seen (RFC 7523 §3 allows it): the platform writes a new assertion
    // more often than the worker renews, as a SPIFFE helper or a short projected token would.
    const mint = async () => {
      const now = Math.floor(Date.now() / 1000);
      const jwt = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'platform-key' })
        .setIssuer(MINTED.issuer)
        .setSubject(MINTED.subject)
        .setAudience(hydra.tokenUrl)
        .setJti(randomUUID())
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(platformKey.privateKey);
      minted.push(jwt);
      return file('minted.jwt', `${jwt}\n`);
    };
    const assertionRef = await mint();
    const rotation = setInterval(() => void mint(), 1_000);
    try {
      const before = hydra.publicRequests().length;
      await stack.admin.register({
        clientId: MINTED.clientId,
        tokenUrl: hydra.tokenUrl,
        authMethod: 'client_secret_basic',
        secretRef: await file('minted.secret', CLIENT_SECRET),
        grant: 'jwt-bearer',
        assertionRef,
        scope: 'read',
      });

      const token = await tokenAfterGeneration(stack, MINTED.clientId, 2);
      expect(await hydra.introspect(token.access_token!)).toMatchObject({ active: true, sub: MINTED.subject, client_id: MINTED.clientId });
      expect(await stack.admin.status(MINTED.clientId)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
      const requests = tokenRequestsOf(before);
      expect(requests.every((request) => request.status === 200)).toBe(true);
    } finally {
      clearInterval(rotation);
    }
    // Without rotations its next renewal would reuse a jti: it ends here.
    await stack.admin.remove(MINTED.clientId);
  });

  test('an issuer Hydra does not trust is invalid_grant: parked after exactly one request', { timeout: 120_000 }, async () => {
    const before = hydra.publicRequests().length;
    await stack.admin.register({
      clientId: UNTRUSTED.clientId,
      tokenUrl: hydra.tokenUrl,
      authMethod: 'client_secret_basic',
      secretRef: await file('untrusted.secret', CLIENT_SECRET),
      grant: 'jwt-bearer',
      keyRef: await file('untrusted-key.pem', pem(untrustedKey.privateKey)),
      assertionSubject: UNTRUSTED.subject,
      scope: 'read',
    });

    const status = await eventually(
      async () => {
        const s = await stack.admin.status(UNTRUSTED.clientId);
        return s.state === 'credentials_rejected' ? s : undefined;
      },
      60_000,
      `${UNTRUSTED.clientId} credentials_rejected`,
    );
    expect(status.lastError).toMatchObject({ kind: 'credentials_rejected', status: 400, oauthError: 'invalid_grant' });
    // Give a retry loop the time to show itself: there must be none.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const theirs = tokenRequestsOf(before).filter((request) => request.status !== 200);
    expect(theirs).toEqual([{ method: 'POST', path: '/oauth2/token', status: 400 }]);
    expect(await stack.redis.exists(tokenKey('oauth:', UNTRUSTED.clientId))).toBe(0);
  });

  test('no workflow history holds the client secret, a key or an assertion', async () => {
    await expectNoSecretsInHistories(
      stack.client,
      [SIGNED, MINTED, UNTRUSTED].map((client) => workflowIdFor(client.clientId)),
      [CLIENT_SECRET, ...minted, pem(grantKey.privateKey), pem(untrustedKey.privateKey)],
    );
  });
});
