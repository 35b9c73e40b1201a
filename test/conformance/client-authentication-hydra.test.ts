/**
 * The client credentials grant against a second real IAM, ORY Hydra v2.3.0 (test/support/hydra.ts):
 * `client_secret_basic` with a secret that form-encoding changes (RFC 6749 §2.3.1: Hydra decodes
 * the Basic credentials), `client_secret_post`, `private_key_jwt`, and a registration by issuer
 * (its discovery document names the token endpoint). Clients are made with Hydra's admin API
 * (/admin/clients); each token lands in Redis, renews, and Hydra's introspection says it is the
 * client's. A wrong secret is parked after exactly one request.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { workflowIdFor } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startHydra, type HydraServer } from '../support/hydra.js';
import { eventually, startTokenStack, tokenAfterGeneration, type TokenStack } from '../support/token-stack.js';

/** Space, `/`, `+`, `&`, `=`, `%` and `:` all change under form-encoding; a decoder that skips it fails. */
const ENCODED_SECRET = 'basic secret/with+reserved&chars=%41:~';
const POST_SECRET = 'post-secret-0123456789';
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 });

let dir: string;
let hydra: HydraServer;
let stack: TokenStack;

async function file(name: string, content: string): Promise<`file:${string}`> {
  const path = join(dir, name);
  await writeFile(path, content, { mode: 0o600 });
  return `file:${path}`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'client-auth-hydra-'));
  hydra = await startHydra({ accessTokenTtl: '4s' });
  const client = (clientId: string, fields: Record<string, unknown>) =>
    hydra.admin('POST', '/admin/clients', { client_id: clientId, grant_types: ['client_credentials'], scope: 'read', ...fields });
  await client('hydra-basic', { client_secret: ENCODED_SECRET, token_endpoint_auth_method: 'client_secret_basic' });
  await client('hydra-post', { client_secret: POST_SECRET, token_endpoint_auth_method: 'client_secret_post' });
  await client('hydra-by-issuer', { client_secret: POST_SECRET, token_endpoint_auth_method: 'client_secret_post' });
  await client('hydra-wrong-secret', { client_secret: POST_SECRET, token_endpoint_auth_method: 'client_secret_basic' });
  await client('hydra-key-jwt', {
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [{ ...(await exportJWK(signingKey.publicKey)), kid: 'hydra-key-1', alg: 'RS256', use: 'sig' }] },
  });
  stack = await startTokenStack();
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  await hydra?.destroy();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('client authentication against ORY Hydra', () => {
  const cases: { clientId: string; fields: () => Promise<Partial<ClientRegistration>> }[] = [
    {
      clientId: 'hydra-basic',
      fields: async () => ({ authMethod: 'client_secret_basic', secretRef: await file('basic.secret', ENCODED_SECRET) }),
    },
    {
      clientId: 'hydra-post',
      fields: async () => ({ authMethod: 'client_secret_post', secretRef: await file('post.secret', POST_SECRET) }),
    },
    {
      clientId: 'hydra-key-jwt',
      fields: async () => ({
        authMethod: 'private_key_jwt',
        keyRef: await file('key.pem', signingKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string),
        keyId: 'hydra-key-1',
      }),
    },
  ];

  test.each(cases)('$clientId: a token in Redis that renews, the client by Hydra', { timeout: 120_000 }, async ({ clientId, fields }) => {
    const before = hydra.publicRequests().length;
    await stack.admin.register({ clientId, tokenUrl: hydra.tokenUrl, scope: 'read', ...(await fields()) } as ClientRegistration);

    const first = await tokenAfterGeneration(stack, clientId, 0);
    const renewed = await tokenAfterGeneration(stack, clientId, 1);
    expect(renewed.access_token).not.toBe(first.access_token);
    expect(await hydra.introspect(renewed.access_token!)).toMatchObject({
      active: true,
      client_id: clientId,
      sub: clientId,
      scope: 'read',
    });
    expect(await stack.admin.status(clientId)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
    // Hydra granted every token request it saw (this client's two, and earlier clients' renewals).
    const requests = hydra.publicRequests().slice(before);
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(requests.every((request) => request.method === 'POST' && request.path === '/oauth2/token' && request.status === 200)).toBe(true);
  });

  test('a registration by issuer finds the token endpoint in the discovery document', { timeout: 120_000 }, async () => {
    const before = hydra.publicRequests().length;
    await stack.admin.register({
      clientId: 'hydra-by-issuer',
      issuer: hydra.issuer,
      authMethod: 'client_secret_post',
      secretRef: await file('by-issuer.secret', POST_SECRET),
      scope: 'read',
    });

    const token = await tokenAfterGeneration(stack, 'hydra-by-issuer', 0);
    expect(await hydra.introspect(token.access_token!)).toMatchObject({ active: true, client_id: 'hydra-by-issuer' });
    expect(hydra.publicRequests().slice(before)).toContainEqual({ method: 'GET', path: '/.well-known/openid-configuration', status: 200 });
  });

  test('a wrong secret is parked after exactly one request', { timeout: 120_000 }, async () => {
    const before = hydra.publicRequests().length;
    await stack.admin.register({
      clientId: 'hydra-wrong-secret',
      tokenUrl: hydra.tokenUrl,
      authMethod: 'client_secret_basic',
      secretRef: await file('wrong.secret', `${POST_SECRET}-wrong`),
      scope: 'read',
    });

    const status = await eventually(
      async () => {
        const s = await stack.admin.status('hydra-wrong-secret');
        return s.state === 'credentials_rejected' ? s : undefined;
      },
      60_000,
      'hydra-wrong-secret credentials_rejected',
    );
    expect(status.lastError).toMatchObject({ kind: 'credentials_rejected', status: 401, oauthError: 'invalid_client' });
    // Give a retry loop the time to show itself: there must be none.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const refused = hydra
      .publicRequests()
      .slice(before)
      .filter((request) => request.status !== 200);
    expect(refused).toEqual([{ method: 'POST', path: '/oauth2/token', status: 401 }]);
  });

  test('no workflow history holds a secret or the key', async () => {
    await expectNoSecretsInHistories(
      stack.client,
      ['hydra-basic', 'hydra-post', 'hydra-key-jwt', 'hydra-by-issuer', 'hydra-wrong-secret'].map(workflowIdFor),
      [ENCODED_SECRET, POST_SECRET, signingKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string],
    );
  });
});
