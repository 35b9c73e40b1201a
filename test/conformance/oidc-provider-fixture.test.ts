// Proves the oidc-provider fixture with plain fetch, so conformance suites for the token client can
// trust what it answers. Quirks a token client must tolerate are pinned here as tests too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startOidcProvider } from '../support/oidc-provider.js';
import type { OidcProviderFixture, SecretAuthMethod } from '../support/oidc-provider.js';

const TTL_SECONDS = 5;
// Every character RFC 6749 §2.3.1's form-urlencoding changes, and `:` that would split Basic.
const TRICKY_SECRET = 'p:ss+w%rd with space';
// Typed as the field it stands for, so log entries compare with toEqual without leaking `any`.
const ANY_TIME = expect.any(Number) as number;

const clients = {
  client_secret_basic: { clientId: 'basic-client', clientSecret: TRICKY_SECRET },
  client_secret_post: { clientId: 'post-client', clientSecret: 'post-secret' },
} as const satisfies Record<SecretAuthMethod, { clientId: string; clientSecret: string }>;

// application/x-www-form-urlencoded serialization of one value (space → `+`, `%` → `%25`, …).
function formUrlEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice('v='.length);
}

// RFC 6749 §2.3.1: form-urlencode id and secret, join with `:`, base64 the result.
function basicAuthorization(clientId: string, clientSecret: string): string {
  const credentials = `${formUrlEncode(clientId)}:${formUrlEncode(clientSecret)}`;
  return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
}

interface TokenRequest {
  authMethod: SecretAuthMethod;
  clientId: string;
  clientSecret: string;
  scope?: string;
}

async function requestToken(
  tokenUrl: string,
  request: TokenRequest,
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  if (request.scope !== undefined) {
    form.set('scope', request.scope);
  }
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (request.authMethod === 'client_secret_basic') {
    headers.authorization = basicAuthorization(request.clientId, request.clientSecret);
  } else {
    form.set('client_id', request.clientId);
    form.set('client_secret', request.clientSecret);
  }
  const response = await fetch(tokenUrl, { method: 'POST', headers, body: form });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
}

describe('oidc-provider fixture', () => {
  let op: OidcProviderFixture;

  beforeAll(async () => {
    op = await startOidcProvider({
      accessTokenTtlSeconds: TTL_SECONDS,
      clients: [
        { ...clients.client_secret_basic, authMethod: 'client_secret_basic' },
        { ...clients.client_secret_post, authMethod: 'client_secret_post', scope: 'api:read' },
      ],
    });
  });

  afterAll(async () => {
    await op.close();
  });

  it('advertises its token endpoint, the client credentials grant and both secret methods in discovery', async () => {
    const response = await fetch(`${op.issuer}/.well-known/openid-configuration`);
    const metadata = (await response.json()) as Record<string, unknown>;

    expect(response.status).toBe(200);
    expect(metadata.issuer).toBe(op.issuer);
    expect(metadata.token_endpoint).toBe(op.tokenUrl);
    expect(metadata.grant_types_supported).toContain('client_credentials');
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['client_secret_basic', 'client_secret_post']));
  });

  it.each([
    { authMethod: 'client_secret_basic', scope: 'api:read api:write' },
    { authMethod: 'client_secret_post', scope: 'api:read' },
  ] as const)(
    'issues a Bearer token for $authMethod with expires_in equal to the TTL and the granted scope',
    async ({ authMethod, scope }) => {
      const { clientId, clientSecret } = clients[authMethod];
      const before = op.requests.length;
      const startedAt = Date.now();

      const { status, body } = await requestToken(op.tokenUrl, { authMethod, clientId, clientSecret, scope });

      expect(status).toBe(200);
      expect(body.access_token).toEqual(expect.any(String));
      expect(String(body.token_type).toLowerCase()).toBe('bearer');
      expect(body.expires_in).toBe(TTL_SECONDS);
      expect(body.scope).toBe(scope);
      expect(body).not.toHaveProperty('refresh_token');
      expect(op.requests.slice(before)).toEqual([{ at: ANY_TIME, clientId, authMethod, status: 200 }]);
      expect(op.requests[before]?.at).toBeGreaterThanOrEqual(startedAt);
      expect(op.requests[before]?.at).toBeLessThanOrEqual(Date.now());
    },
  );

  it.each(['client_secret_basic', 'client_secret_post'] as const)(
    'answers a wrong secret over %s with 401 invalid_client and logs it',
    async (authMethod) => {
      const { clientId } = clients[authMethod];
      const before = op.requests.length;

      const { status, headers, body } = await requestToken(op.tokenUrl, { authMethod, clientId, clientSecret: 'wrong' });

      expect(status).toBe(401);
      expect(body.error).toBe('invalid_client');
      // RFC 6749 §5.2: a client that authenticated with a header is challenged with that scheme.
      if (authMethod === 'client_secret_basic') {
        expect(headers.get('www-authenticate')).toMatch(/^Basic .*error="invalid_client"/);
      }
      expect(op.requests.slice(before)).toEqual([{ at: ANY_TIME, clientId, authMethod, status: 401, error: 'invalid_client' }]);
    },
  );

  it('answers an unknown client with 401 invalid_client and logs the id it was given', async () => {
    const before = op.requests.length;

    const { status, body } = await requestToken(op.tokenUrl, {
      authMethod: 'client_secret_post',
      clientId: 'nobody',
      clientSecret: 'whatever',
    });

    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
    expect(op.requests.slice(before)).toEqual([
      { at: ANY_TIME, clientId: 'nobody', authMethod: 'client_secret_post', status: 401, error: 'invalid_client' },
    ]);
  });

  it('refuses a scope the client was not registered for with 400 invalid_scope', async () => {
    const before = op.requests.length;

    const { status, body } = await requestToken(op.tokenUrl, {
      authMethod: 'client_secret_basic',
      ...clients.client_secret_basic,
      scope: 'api:read api:admin',
    });

    expect(status).toBe(400);
    expect(body.error).toBe('invalid_scope');
    expect(op.requests.slice(before)).toEqual([
      {
        at: ANY_TIME,
        clientId: clients.client_secret_basic.clientId,
        authMethod: 'client_secret_basic',
        status: 400,
        error: 'invalid_scope',
      },
    ]);
  });

  it('drops a scope the provider has never heard of instead of refusing it (RFC 6749 §3.3 allows both)', async () => {
    const { status, body } = await requestToken(op.tokenUrl, {
      authMethod: 'client_secret_basic',
      ...clients.client_secret_basic,
      scope: 'api:read no-such-scope',
    });

    expect(status).toBe(200);
    expect(body.scope).toBe('api:read');
  });

  it('omits scope from the response when none was requested', async () => {
    const { status, body } = await requestToken(op.tokenUrl, { authMethod: 'client_secret_post', ...clients.client_secret_post });

    expect(status).toBe(200);
    expect(body).not.toHaveProperty('scope');
  });

  it('rejects Basic credentials that were not form-urlencoded first (RFC 6749 §2.3.1)', async () => {
    const { clientId, clientSecret } = clients.client_secret_basic;
    const raw = `Basic ${Buffer.from(`${clientId}:${clientSecret}`, 'utf8').toString('base64')}`;
    const before = op.requests.length;

    const response = await fetch(op.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: raw },
      body: new URLSearchParams({ grant_type: 'client_credentials' }),
    });
    const body = (await response.json()) as Record<string, unknown>;

    // `%rd` is not a valid percent-escape, so the provider cannot even decode the secret.
    expect(response.status).toBe(400);
    expect(body.error).toBe('invalid_request');
    expect(op.requests.slice(before)).toEqual([
      { at: ANY_TIME, clientId, authMethod: 'client_secret_basic', status: 400, error: 'invalid_request' },
    ]);
  });

  it('accepts client_secret_post from a client registered for client_secret_basic (it does not enforce the choice)', async () => {
    const before = op.requests.length;

    const { status } = await requestToken(op.tokenUrl, { authMethod: 'client_secret_post', ...clients.client_secret_basic });

    expect(status).toBe(200);
    expect(op.requests.slice(before)).toEqual([
      { at: ANY_TIME, clientId: clients.client_secret_basic.clientId, authMethod: 'client_secret_post', status: 200 },
    ]);
  });

  it('issues tokens that live 3 s when no TTL is given', async () => {
    const defaults = await startOidcProvider({
      clients: [{ clientId: 'c', clientSecret: 's', authMethod: 'client_secret_basic' }],
    });
    try {
      const { status, body } = await requestToken(defaults.tokenUrl, {
        authMethod: 'client_secret_basic',
        clientId: 'c',
        clientSecret: 's',
      });

      expect(status).toBe(200);
      expect(body.expires_in).toBe(3);
      expect(defaults.requests).toEqual([{ at: ANY_TIME, clientId: 'c', authMethod: 'client_secret_basic', status: 200 }]);
    } finally {
      await defaults.close();
    }
  });

  it('refuses options it cannot honour, naming each problem', async () => {
    const client = { clientId: 'dup', clientSecret: 's', authMethod: 'client_secret_basic' } as const;

    await expect(startOidcProvider({ accessTokenTtlSeconds: 1.5, clients: [client, client] })).rejects.toThrow(
      "startOidcProvider: accessTokenTtlSeconds must be a positive integer, got 1.5; clients[1].clientId 'dup' is registered twice",
    );
  });
});
