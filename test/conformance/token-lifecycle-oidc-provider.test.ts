/**
 * The token lifecycle against panva's oidc-provider, a certified OpenID Provider: what the worker
 * sends must satisfy a real, strict token endpoint, not only the project's own emulator. Token
 * lifetimes of a few seconds stand in for the IAM's 300 s.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tokenKey } from '../../shared/redis-layout.js';
import { startOidcProvider, type OidcProviderFixture, type SecretAuthMethod, type TokenEndpointRequest } from '../support/oidc-provider.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { firstRenewal } from '../support/workflow-history.js';
import { workflowIdFor } from '../../workflows/messages.js';

const TTL_SECONDS = 3;
const SCOPE = 'api:read';
// Every character RFC 6749 §2.3.1's form-urlencoding changes, and `:` that would split Basic.
const BASIC_SECRET = 'b4sic:p+ss%20w%rd with space';
const POST_SECRET = 'p0st-secret';
// Typed as the field it stands for, so log entries compare with toEqual without leaking `any`.
const ANY_TIME = expect.any(Number) as number;
const UNIX_MS = expect.stringMatching(/^\d{13}$/) as string;
const OPAQUE_TOKEN = expect.stringMatching(/^\S{20,}$/) as string;

const CASES = [
  { authMethod: 'client_secret_basic', clientId: 'conformance-basic', secret: BASIC_SECRET, secretRef: 'env:BASIC_SECRET' },
  { authMethod: 'client_secret_post', clientId: 'conformance-post', secret: POST_SECRET, secretRef: 'env:POST_SECRET' },
] as const satisfies readonly { authMethod: SecretAuthMethod; clientId: string; secret: string; secretRef: `env:${string}` }[];

const rejectedClientId = (authMethod: SecretAuthMethod) => `conformance-rejected-${authMethod}`;

let provider: OidcProviderFixture;
let stack: TokenStack;

beforeAll(async () => {
  provider = await startOidcProvider({
    accessTokenTtlSeconds: TTL_SECONDS,
    clients: CASES.flatMap(({ authMethod, clientId, secret }) => [
      { clientId, clientSecret: secret, authMethod },
      { clientId: rejectedClientId(authMethod), clientSecret: secret, authMethod },
    ]),
  });
  stack = await startTokenStack({
    env: { BASIC_SECRET, POST_SECRET, WRONG_SECRET: 'not:the+right%secret' },
  });
});

afterAll(async () => {
  await stack?.stop();
  await provider?.close();
});

function requestsFor(clientId: string): TokenEndpointRequest[] {
  return provider.requests.filter((request) => request.clientId === clientId);
}

async function storedToken(clientId: string): Promise<Record<string, string> | undefined> {
  const hash = await stack.redis.hgetall(tokenKey('oauth:', clientId));
  return Object.keys(hash).length === 0 ? undefined : hash;
}

async function tokenWithGenerationAbove(clientId: string, generation: number, timeoutMs: number) {
  return eventually(
    async () => {
      const token = await storedToken(clientId);
      return token !== undefined && Number(token.generation) > generation ? token : undefined;
    },
    timeoutMs,
    `${clientId} generation > ${generation}`,
  );
}

const sha256Prefix = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

describe.each(CASES)('$authMethod against oidc-provider', ({ authMethod, clientId, secretRef }) => {
  test('the token lands in Redis with every contract field after one accepted request, and is renewed at 0.85 × its lifetime', async () => {
    await stack.admin.register({ clientId, tokenUrl: provider.tokenUrl, authMethod, secretRef, scope: SCOPE });

    const first = await tokenWithGenerationAbove(clientId, 0, 30_000);
    expect(requestsFor(clientId)).toEqual([{ at: ANY_TIME, clientId, authMethod, status: 200 }]);
    const issuedAt = requestsFor(clientId)[0]!.at;
    expect(first).toEqual({
      access_token: OPAQUE_TOKEN,
      token_type: 'Bearer',
      expires_at: UNIX_MS,
      obtained_at: UNIX_MS,
      refresh_at: UNIX_MS,
      scope: SCOPE,
      generation: '1',
      fingerprint: sha256Prefix(first.access_token!),
      client_id: clientId,
    });
    // The lifetime is counted from before the request left the worker, so it ends no later than
    // the provider's own count from when the request arrived.
    expect(Number(first.expires_at) - issuedAt).toBeLessThanOrEqual(TTL_SECONDS * 1000);
    expect(Number(first.expires_at) - Number(first.obtained_at)).toBeGreaterThan(0);
    expect(Number(first.refresh_at)).toBeLessThan(Number(first.expires_at));
    // Redis never serves an expired token: the key goes no later than the token.
    const expireTime = Number(await stack.redis.call('PEXPIRETIME', tokenKey('oauth:', clientId)));
    expect(expireTime).toBeGreaterThan(0);
    expect(expireTime).toBeLessThanOrEqual(Number(first.expires_at));

    const second = await tokenWithGenerationAbove(clientId, 1, TTL_SECONDS * 1000 + 30_000);
    expect(second).toMatchObject({ generation: '2', token_type: 'Bearer', scope: SCOPE, client_id: clientId });
    expect(second.access_token).not.toBe(first.access_token);
    expect(second.fingerprint).toBe(sha256Prefix(second.access_token!));
    const accepted = requestsFor(clientId);
    expect(accepted.slice(0, 2)).toEqual([
      { at: ANY_TIME, clientId, authMethod, status: 200 },
      { at: ANY_TIME, clientId, authMethod, status: 200 },
    ]);
    // The workflow chose to renew 0.85 × the lifetime after the first request left, less up to
    // 5 % jitter; the renewal reached the provider no earlier (how much later is the machine's).
    const renewal = await firstRenewal(stack.client, workflowIdFor(clientId), TTL_SECONDS);
    expect(renewal.fraction).toBeGreaterThanOrEqual(0.8);
    expect(renewal.fraction).toBeLessThanOrEqual(0.85);
    expect(accepted[1]!.at).toBeGreaterThanOrEqual(renewal.at);

    const status = await stack.admin.status(clientId);
    expect(status).toMatchObject({ clientId, state: 'active', consecutiveFailures: 0, lastError: null, backoffUntil: null });
  });

  test('a wrong secret parks the workflow in credentials_rejected after exactly one request', async () => {
    const rejected = rejectedClientId(authMethod);
    await stack.admin.register({
      clientId: rejected,
      tokenUrl: provider.tokenUrl,
      authMethod,
      secretRef: 'env:WRONG_SECRET',
      scope: SCOPE,
    });

    const status = await eventually(
      async () => {
        const s = await stack.admin.status(rejected);
        return s.state === 'credentials_rejected' ? s : undefined;
      },
      30_000,
      `${rejected} credentials_rejected`,
    );
    expect(status.lastError).toMatchObject({ kind: 'credentials_rejected', status: 401, oauthError: 'invalid_client' });
    expect(status.backoffUntil).toBeNull();

    // Retrying rejected credentials is what gets an IP blocked (docs/design.md, "No login loop"):
    // nothing more is sent.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(requestsFor(rejected)).toEqual([{ at: ANY_TIME, clientId: rejected, authMethod, status: 401, error: 'invalid_client' }]);
    expect(await storedToken(rejected)).toBeUndefined();
    expect((await stack.admin.status(rejected)).state).toBe('credentials_rejected');
  });
});
