/**
 * The IAM emulator behaves like the provider (a Keycloak realm and its edge), so tests of the
 * token client and of the workflow can rely on it. Real HTTP on 127.0.0.1 through `fetch`.
 */
import { request as httpRequest, Agent } from 'node:http';
import { afterEach, describe, expect, test } from 'vitest';
import { basicAuthorization } from '../../dev/iam-emulator/clients.js';
import {
  ADMIN_PATH,
  RESOURCE_PATH,
  startIamEmulator,
  type EmulatorClient,
  type IamEmulator,
  type IamEmulatorOptions,
} from '../../dev/iam-emulator/emulator.js';

const ORDERS: SecretClient = { clientId: 'orders-service', clientSecret: 'orders-secret', scopes: ['orders:read', 'orders:write'] };
const ADMIN: SecretClient = { clientId: 'admin-tool', clientSecret: 'admin-secret', scopes: ['admin'] };
const DISABLED: SecretClient = { clientId: 'disabled-client', clientSecret: 'disabled-secret', enabled: false };
const NO_SERVICE_ACCOUNT: SecretClient = { clientId: 'no-service-account', clientSecret: 'nsa-secret', serviceAccountsEnabled: false };
/** Every character RFC 6749 §2.3.1's encoding exists for. */
const SPECIAL: SecretClient = { clientId: 'ñame:with+special %chars', clientSecret: 'p@ss:w+rd%20 é€/=' };
const CLIENTS = [ORDERS, ADMIN, DISABLED, NO_SERVICE_ACCOUNT, SPECIAL];

const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };
const GRANT = { grant_type: 'client_credentials' };
/** The clients of these tests authenticate with a secret. */
type SecretClient = EmulatorClient & { clientSecret: string };
const INVALID_CREDENTIALS = 'Invalid client or Invalid client credentials';

/** A controllable clock for the tests that are about time (windows, expiry). */
const START = Date.UTC(2025, 0, 1);
let clock = START;
const fakeClock = () => clock;

const running: IamEmulator[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((iam) => iam.close()));
  clock = START;
});

async function start(options: Partial<IamEmulatorOptions> = {}): Promise<IamEmulator> {
  const iam = await startIamEmulator({ clients: CLIENTS, ...options });
  running.push(iam);
  return iam;
}

/** A token request with client_secret_basic. */
function postBasic(url: string, client: SecretClient, params: Record<string, string> = GRANT): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { ...FORM, Authorization: basicAuthorization(client.clientId, client.clientSecret) },
    body: new URLSearchParams(params),
  });
}

/** A token request with client_secret_post. */
function postForm(url: string, client: SecretClient, params: Record<string, string> = GRANT): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: FORM,
    body: new URLSearchParams({ ...params, client_id: client.clientId, client_secret: client.clientSecret }),
  });
}

/** The network error a failed fetch saw: undici wraps it as `cause`. */
async function networkError(response: Promise<Response>): Promise<{ message: string; code: unknown }> {
  const error = await response.then(
    (res) => {
      throw new Error(`expected a network error, got HTTP ${res.status}`);
    },
    (error: unknown) => error as Error & { cause?: { code?: unknown } },
  );
  expect(error.message).toBe('fetch failed');
  return { message: error.message, code: error.cause?.code };
}

function decodeJwtPayload(token: string): Record<string, unknown> {
  const payload = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}

describe('token endpoint', () => {
  test("client_secret_basic gets a token with exactly Keycloak's fields and no-store headers", async () => {
    const iam = await start();
    const res = await postBasic(iam.tokenUrl(), ORDERS);

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('pragma')).toBe('no-cache');
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toEqual({
      access_token: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/) as unknown,
      expires_in: 300,
      refresh_expires_in: 0,
      token_type: 'Bearer',
      'not-before-policy': 0,
      scope: '',
    });
    expect(iam.isTokenActive(body.access_token as string)).toBe(true);
    expect(iam.issuedTokens.map((token) => [token.clientId, token.accessToken])).toEqual([['orders-service', body.access_token]]);
  });

  test('client_secret_post gets a token with the requested scope granted', async () => {
    const iam = await start();
    const res = await postForm(iam.tokenUrl(), ORDERS, { ...GRANT, scope: 'orders:read  orders:write' });

    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.scope).toBe('orders:read orders:write');
    expect(iam.requests.map((entry) => [entry.clientId, entry.authMethod, entry.outcome])).toEqual([
      ['orders-service', 'client_secret_post', 'issued'],
    ]);
  });

  test('every issue is a new token whose JWT claims match the client and expires_in', async () => {
    clock = START + 123_456;
    const iam = await start({ now: fakeClock });
    const first = (await (await postBasic(iam.tokenUrl(), ORDERS)).json()) as { access_token: string };
    const second = (await (await postBasic(iam.tokenUrl(), ORDERS)).json()) as { access_token: string };

    expect(first.access_token).not.toBe(second.access_token);
    expect(decodeJwtPayload(first.access_token)).toMatchObject({
      azp: 'orders-service',
      iss: `${iam.url}/realms/demo`,
      iat: Math.floor(clock / 1000),
      exp: Math.ceil((clock + 300_000) / 1000),
      typ: 'Bearer',
    });
  });

  test('Basic credentials are form-urldecoded after splitting at the first colon (RFC 6749 §2.3.1)', async () => {
    const iam = await start();
    // Encoded by hand, so the test does not depend on the helper it also checks.
    const encoded = '%C3%B1ame%3Awith%2Bspecial+%25chars:p%40ss%3Aw%2Brd%2520+%C3%A9%E2%82%AC%2F%3D';
    const authorization = `Basic ${Buffer.from(encoded, 'utf8').toString('base64')}`;
    expect(basicAuthorization(SPECIAL.clientId, SPECIAL.clientSecret)).toBe(authorization);

    const res = await fetch(iam.tokenUrl(), {
      method: 'POST',
      headers: { ...FORM, Authorization: authorization },
      body: 'grant_type=client_credentials',
    });

    expect(res.status).toBe(200);
    expect(iam.requests.map((entry) => [entry.clientId, entry.outcome])).toEqual([[SPECIAL.clientId, 'issued']]);
  });

  test('client_secret_post carries the same special characters in the form body', async () => {
    const iam = await start();
    const res = await postForm(iam.tokenUrl(), SPECIAL);

    expect(res.status).toBe(200);
  });

  test('a client that does not form-urlencode its Basic credentials is refused', async () => {
    const plusClient: SecretClient = { clientId: 'plus-client', clientSecret: 'a+b' };
    const iam = await start({ clients: [plusClient, ORDERS] });
    const raw = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`, 'utf8').toString('base64')}`;
    const send = (authorization: string) =>
      fetch(iam.tokenUrl(), { method: 'POST', headers: { ...FORM, Authorization: authorization }, body: 'grant_type=client_credentials' });

    // An unencoded '+' decodes to a space, so the secret no longer matches.
    const plus = await send(raw(plusClient.clientId, plusClient.clientSecret));
    expect(plus.status).toBe(401);
    expect(await plus.json()).toEqual({ error: 'unauthorized_client', error_description: INVALID_CREDENTIALS });
    // A lone '%' is not a valid escape: the header is malformed.
    const percent = await send(raw(ORDERS.clientId, '100%'));
    expect(percent.status).toBe(401);
    expect(await percent.json()).toEqual({ error: 'invalid_client', error_description: 'Malformed Basic authorization header' });
    // Encoded as the RFC says, the same secret works.
    expect((await postBasic(iam.tokenUrl(), plusClient)).status).toBe(200);
  });

  interface ErrorCase {
    name: string;
    send: (iam: IamEmulator) => Promise<Response>;
    status: number;
    error: string;
    description: string;
    challenge: string | null;
  }

  const errorCases: ErrorCase[] = [
    {
      name: 'a wrong secret with client_secret_basic is 401 unauthorized_client with a Basic challenge',
      send: (iam) => postBasic(iam.tokenUrl(), { ...ORDERS, clientSecret: 'wrong' }),
      status: 401,
      error: 'unauthorized_client',
      description: INVALID_CREDENTIALS,
      challenge: 'Basic realm="demo"',
    },
    {
      name: 'a wrong secret with client_secret_post is 401 unauthorized_client without a challenge',
      send: (iam) => postForm(iam.tokenUrl(), { ...ORDERS, clientSecret: 'wrong' }),
      status: 401,
      error: 'unauthorized_client',
      description: INVALID_CREDENTIALS,
      challenge: null,
    },
    {
      name: 'an unknown client is 401 invalid_client',
      send: (iam) => postBasic(iam.tokenUrl(), { clientId: 'nobody', clientSecret: 'x' }),
      status: 401,
      error: 'invalid_client',
      description: INVALID_CREDENTIALS,
      challenge: 'Basic realm="demo"',
    },
    {
      name: 'a disabled client is 401 invalid_client',
      send: (iam) => postForm(iam.tokenUrl(), DISABLED),
      status: 401,
      error: 'invalid_client',
      description: INVALID_CREDENTIALS,
      challenge: null,
    },
    {
      name: 'a client without service accounts is 401 unauthorized_client',
      send: (iam) => postBasic(iam.tokenUrl(), NO_SERVICE_ACCOUNT),
      status: 401,
      error: 'unauthorized_client',
      description: 'Client not enabled to retrieve service account',
      challenge: 'Basic realm="demo"',
    },
    {
      name: 'a scope the client may not have is 400 invalid_scope',
      send: (iam) => postBasic(iam.tokenUrl(), ORDERS, { ...GRANT, scope: 'orders:read admin' }),
      status: 400,
      error: 'invalid_scope',
      description: 'Invalid scopes: orders:read admin',
      challenge: null,
    },
    {
      name: 'a request without grant_type is 400 invalid_request',
      send: (iam) => postBasic(iam.tokenUrl(), ORDERS, {}),
      status: 400,
      error: 'invalid_request',
      description: 'Missing form parameter: grant_type',
      challenge: null,
    },
    {
      name: 'another grant type is 400 unsupported_grant_type',
      send: (iam) => postBasic(iam.tokenUrl(), ORDERS, { grant_type: 'password' }),
      status: 400,
      error: 'unsupported_grant_type',
      description: 'Unsupported grant_type',
      challenge: null,
    },
    {
      name: 'a request without client credentials is 401 invalid_client with a Basic challenge',
      send: (iam) => fetch(iam.tokenUrl(), { method: 'POST', headers: FORM, body: 'grant_type=client_credentials' }),
      status: 401,
      error: 'invalid_client',
      description: 'Missing client credentials: use client_secret_basic or client_secret_post',
      challenge: 'Basic realm="demo"',
    },
    {
      name: 'credentials both in the header and in the body are 400 invalid_request',
      send: (iam) => postBasic(iam.tokenUrl(), ORDERS, { ...GRANT, client_secret: ORDERS.clientSecret }),
      status: 400,
      error: 'invalid_request',
      description: 'Use one client authentication method: credentials were sent both in the Authorization header and in the body',
      challenge: null,
    },
    {
      name: 'a JSON body is 400 invalid_request',
      send: (iam) =>
        fetch(iam.tokenUrl(), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ ...GRANT, client_id: ORDERS.clientId, client_secret: ORDERS.clientSecret }),
        }),
      status: 400,
      error: 'invalid_request',
      description: 'Content-Type must be application/x-www-form-urlencoded',
      challenge: null,
    },
    {
      name: 'a repeated parameter is 400 invalid_request',
      send: (iam) =>
        fetch(iam.tokenUrl(), {
          method: 'POST',
          headers: { ...FORM, Authorization: basicAuthorization(ORDERS.clientId, ORDERS.clientSecret) },
          body: 'grant_type=client_credentials&scope=orders:read&scope=orders:write',
        }),
      status: 400,
      error: 'invalid_request',
      description: 'Duplicated parameter: scope',
      challenge: null,
    },
  ];

  test.each(errorCases)('$name', async ({ send, status, error, description, challenge }) => {
    const iam = await start();
    const res = await send(iam);

    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('www-authenticate')).toBe(challenge);
    expect(await res.json()).toEqual({ error, error_description: description });
    expect(iam.requests.map((entry) => [entry.outcome, entry.status])).toEqual([[error, status]]);
    expect(iam.issuedTokens).toEqual([]);
  });

  test('GET on the token endpoint is 405 with Allow: POST', async () => {
    const iam = await start();
    const res = await fetch(iam.tokenUrl());

    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(await res.json()).toEqual({ error: 'invalid_request', error_description: 'HTTP 405 Method Not Allowed' });
  });

  test('the legacy /auth path serves the same realm', async () => {
    const iam = await start();
    const res = await postBasic(iam.legacyTokenUrl(), ORDERS);

    expect(iam.legacyTokenUrl()).toBe(`${iam.url}/auth/realms/demo/protocol/openid-connect/token`);
    expect(res.status).toBe(200);
    expect(iam.requests.map((entry) => [entry.path, entry.outcome])).toEqual([
      ['/auth/realms/demo/protocol/openid-connect/token', 'issued'],
    ]);
  });

  test("a token request for another realm gets Keycloak's 404", async () => {
    const iam = await start({ realm: 'prod' });
    const res = await postBasic(iam.tokenUrl('staging'), ORDERS);

    expect(iam.tokenUrl()).toBe(`${iam.url}/realms/prod/protocol/openid-connect/token`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'Realm does not exist' });
  });

  test('extra parameters such as audience and resource are accepted and logged, the secret is not', async () => {
    const iam = await start();
    const res = await postForm(iam.tokenUrl(), ORDERS, { ...GRANT, audience: 'orders-api', resource: 'https://api.example/orders' });
    const body = (await res.json()) as { access_token: string };

    expect(res.status).toBe(200);
    expect(iam.requests[0]?.params).toEqual({
      grant_type: 'client_credentials',
      client_id: 'orders-service',
      audience: 'orders-api',
      resource: 'https://api.example/orders',
    });
    expect(decodeJwtPayload(body.access_token).aud).toBe('orders-api');
  });

  test('omitExpiresIn leaves expires_in out while the token still expires after the lifetime', async () => {
    const iam = await start({ omitExpiresIn: true, tokenLifetimeSeconds: 30, now: fakeClock });
    const body = (await (await postBasic(iam.tokenUrl(), ORDERS)).json()) as Record<string, unknown>;

    expect(Object.keys(body).sort()).toEqual(['access_token', 'not-before-policy', 'refresh_expires_in', 'scope', 'token_type']);
    clock += 29_999;
    expect(iam.isTokenActive(body.access_token as string)).toBe(true);
    clock += 1;
    expect(iam.isTokenActive(body.access_token as string)).toBe(false);
  });

  test('setTokenLifetime changes expires_in of tokens issued afterwards', async () => {
    const iam = await start({ tokenLifetimeSeconds: 60 });
    const before = (await (await postBasic(iam.tokenUrl(), ORDERS)).json()) as { expires_in: number };
    iam.setTokenLifetime(2);
    const after = (await (await postBasic(iam.tokenUrl(), ORDERS)).json()) as { expires_in: number };

    expect([before.expires_in, after.expires_in]).toEqual([60, 2]);
    expect(() => iam.setTokenLifetime(1.5)).toThrow('setTokenLifetime(seconds) must be a positive integer of seconds, got 1.5');
  });

  test('setClientSecret rotates the secret: the old one is refused, the new one works', async () => {
    const iam = await start();
    iam.setClientSecret(ORDERS.clientId, 'rotated');

    const old = await postBasic(iam.tokenUrl(), ORDERS);
    const rotated = await postBasic(iam.tokenUrl(), { ...ORDERS, clientSecret: 'rotated' });

    expect(old.status).toBe(401);
    expect(rotated.status).toBe(200);
    expect(() => iam.setClientSecret('nobody', 'x')).toThrow("Unknown emulator client 'nobody'");
  });

  test('the discovery document names the issuer and the token endpoint', async () => {
    const iam = await start();
    const res = await fetch(`${iam.url}/realms/demo/.well-known/openid-configuration`);

    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      issuer: `${iam.url}/realms/demo`,
      token_endpoint: iam.tokenUrl(),
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'ES256', 'EdDSA'],
      scopes_supported: ['admin', 'orders:read', 'orders:write'],
    });
  });
});

describe("the provider's edge", () => {
  test('above 50 requests in one second from one IP the edge answers 429 with Retry-After: 1', async () => {
    const iam = await start({ now: fakeClock });
    const responses = await Promise.all(Array.from({ length: 51 }, () => postBasic(iam.tokenUrl(), ORDERS)));
    const limited = responses.filter((res) => res.status === 429);
    await Promise.all(responses.map((res) => res.text()));

    expect(responses.filter((res) => res.status === 200)).toHaveLength(50);
    expect(limited).toHaveLength(1);
    expect(limited[0]?.headers.get('retry-after')).toBe('1');
    expect(iam.requests.filter((entry) => entry.outcome === 'rate_limited').map((entry) => [entry.clientId, entry.status])).toEqual([
      ['orders-service', 429],
    ]);
  });

  test('the rate limit is a sliding one-second window', async () => {
    const iam = await start({ rateLimitPerSecond: 2, now: fakeClock });
    const statuses: number[] = [];
    const send = async () => {
      const res = await postBasic(iam.tokenUrl(), ORDERS);
      statuses.push(res.status);
      await res.body?.cancel();
    };

    await send(); // t = 0
    clock += 500;
    await send(); // t = 500
    await send(); // t = 500: third in the window
    clock += 500;
    await send(); // t = 1000: the first left the window
    await send(); // t = 1000: two in (0, 1000] again

    expect(statuses).toEqual([200, 200, 429, 200, 429]);
    const limited = await postBasic(iam.tokenUrl(), ORDERS);
    expect(await limited.json()).toEqual({ error: 'too_many_requests' });
  });

  test('ten failed logins from one IP get it blocked: connections are reset, and unblockAll heals', async () => {
    const iam = await start();
    for (let attempt = 1; attempt <= 10; attempt++) {
      const res = await postBasic(iam.tokenUrl(), { ...ORDERS, clientSecret: `wrong-${attempt}` });
      expect(res.status).toBe(401);
      await res.body?.cancel();
    }

    expect(iam.blockedAddresses).toEqual(['127.0.0.1']);
    expect(await networkError(postBasic(iam.tokenUrl(), ORDERS))).toEqual({ message: 'fetch failed', code: 'ECONNRESET' });
    // Refused before the body was read: the entry names no client.
    expect(iam.requests.at(-1)).toMatchObject({ remoteAddress: '127.0.0.1', outcome: 'blocked' });
    expect(iam.requests.at(-1)?.clientId).toBeUndefined();
    expect(iam.issuedTokens).toEqual([]);

    iam.unblockAll();
    expect(iam.blockedAddresses).toEqual([]);
    expect((await postBasic(iam.tokenUrl(), ORDERS)).status).toBe(200);
    // Past failures are forgotten too: one more does not block again.
    expect((await postBasic(iam.tokenUrl(), { ...ORDERS, clientSecret: 'wrong' })).status).toBe(401);
    expect(iam.blockedAddresses).toEqual([]);
  });

  test('only failed authentications count towards a block, and only within the window', async () => {
    const iam = await start({ blockAfterFailedLogins: 3, blockWindowMs: 10_000, now: fakeClock });
    const fail = async () => (await postBasic(iam.tokenUrl(), { ...ORDERS, clientSecret: 'wrong' })).status;

    // Not authentication failures: a bad scope, and a client without service accounts.
    expect((await postBasic(iam.tokenUrl(), ORDERS, { ...GRANT, scope: 'admin' })).status).toBe(400);
    expect((await postBasic(iam.tokenUrl(), NO_SERVICE_ACCOUNT)).status).toBe(401);
    expect([await fail(), await fail()]).toEqual([401, 401]);
    clock += 10_000; // both failures leave the window
    expect([await fail(), await fail()]).toEqual([401, 401]);
    expect(iam.blockedAddresses).toEqual([]);
    expect(await fail()).toBe(401);
    expect(iam.blockedAddresses).toEqual(['127.0.0.1']);
  });

  test('a block lasts blockDurationMs', async () => {
    const iam = await start({ blockDurationMs: 5_000, now: fakeClock });
    iam.block('127.0.0.1');

    expect((await networkError(postBasic(iam.tokenUrl(), ORDERS))).code).toBe('ECONNRESET');
    clock += 4_999;
    expect((await networkError(postBasic(iam.tokenUrl(), ORDERS))).code).toBe('ECONNRESET');
    clock += 1;
    expect((await postBasic(iam.tokenUrl(), ORDERS)).status).toBe(200);
  });

  test('a new connection from a blocked IP is reset at connect, before any HTTP is read', async () => {
    clock = START + 42;
    const iam = await start({ now: fakeClock });
    iam.block('127.0.0.1');

    expect(await nodePost(iam.tokenUrl(), { agent: false })).toEqual({ error: 'ECONNRESET' });
    expect(iam.requests).toEqual([{ at: START + 42, remoteAddress: '127.0.0.1', outcome: 'blocked' }]);
  });

  test('a keep-alive connection opened before the block is reset on its next request', async () => {
    const iam = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(await nodePost(iam.tokenUrl(), { agent })).toEqual({ status: 200 });
      iam.block('127.0.0.1');
      const second = await nodePost(iam.tokenUrl(), { agent });
      expect(second).toEqual({ error: 'ECONNRESET' });
      expect(iam.requests.map((entry) => [entry.path, entry.outcome])).toEqual([
        ['/realms/demo/protocol/openid-connect/token', 'issued'],
        ['/realms/demo/protocol/openid-connect/token', 'blocked'],
      ]);
    } finally {
      agent.destroy();
    }
  });

  test('a block applies to one IP: another source address is still served', async () => {
    const iam = await start();
    iam.block('127.0.0.1');

    expect(await nodePost(iam.tokenUrl(), { agent: false, localAddress: '127.0.0.2' })).toEqual({ status: 200 });
    expect(iam.requests.map((entry) => [entry.remoteAddress, entry.outcome])).toEqual([['127.0.0.2', 'issued']]);
  });
});

/** A client_secret_post request through node:http, for what fetch cannot choose (agent, source IP). */
function nodePost(url: string, options: { agent: Agent | false; localAddress?: string }): Promise<{ status: number } | { error: unknown }> {
  const target = new URL(url);
  const body = new URLSearchParams({ ...GRANT, client_id: ORDERS.clientId, client_secret: ORDERS.clientSecret }).toString();
  return new Promise((resolve) => {
    const req = httpRequest(
      { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers: FORM, ...options },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code }));
    req.end(body);
  });
}

describe('injected faults', () => {
  test.each([
    { retryAfter: 7, header: '7' },
    { retryAfter: new Date(Date.UTC(2015, 9, 21, 7, 28, 0)), header: 'Wed, 21 Oct 2015 07:28:00 GMT' },
    { retryAfter: 'none' as const, header: null },
    { retryAfter: undefined, header: '1' },
  ])('rate_limit answers 429 with Retry-After $header', async ({ retryAfter, header }) => {
    const iam = await start();
    iam.inject({ kind: 'rate_limit', ...(retryAfter === undefined ? {} : { retryAfter }) });
    const res = await postBasic(iam.tokenUrl(), ORDERS);

    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe(header);
    expect(await res.json()).toEqual({ error: 'too_many_requests' });
    expect(iam.requests.map((entry) => [entry.outcome, entry.status])).toEqual([['fault:rate_limit', 429]]);
  });

  test('reset destroys the connection with an RST', async () => {
    const iam = await start();
    iam.inject({ kind: 'reset' });

    expect(await networkError(postBasic(iam.tokenUrl(), ORDERS))).toEqual({ message: 'fetch failed', code: 'ECONNRESET' });
    expect(iam.requests.map((entry) => [entry.clientId, entry.outcome, entry.status])).toEqual([
      ['orders-service', 'fault:reset', undefined],
    ]);
  });

  test('hang never answers until close() ends the connection', async () => {
    const iam = await start();
    iam.inject({ kind: 'hang' });
    const pending = postBasic(iam.tokenUrl(), ORDERS);
    const failure = networkError(pending);

    await expect.poll(() => iam.requests.map((entry) => entry.outcome)).toEqual(['fault:hang']);
    const stillPending = await Promise.race([
      pending.then(
        () => 'answered',
        () => 'failed',
      ),
      sleep(200).then(() => 'pending'),
    ]);
    expect(stillPending).toBe('pending');

    await iam.close();
    expect(await failure).toEqual({ message: 'fetch failed', code: 'UND_ERR_SOCKET' });
  });

  test.each([500, 502, 503] as const)("status %i answers the proxy's HTML error page", async (status) => {
    const iam = await start();
    iam.inject({ kind: 'status', status });
    const res = await postBasic(iam.tokenUrl(), ORDERS);

    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('text/html');
    expect(await res.text()).toMatch(new RegExp(`^<html>\\r\\n<head><title>${status} `));
    expect(iam.requests.map((entry) => [entry.outcome, entry.status])).toEqual([['fault:status', status]]);
  });

  test('status answers a given body and content type', async () => {
    const iam = await start();
    iam.inject({ kind: 'status', status: 500, body: '{"error":"unknown_error"}', contentType: 'application/json' });
    const res = await postBasic(iam.tokenUrl(), ORDERS);

    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.text()).toBe('{"error":"unknown_error"}');
  });

  const wellFormed = {
    access_token: 'opaque-token',
    expires_in: 300,
    refresh_expires_in: 0,
    token_type: 'Bearer',
    'not-before-policy': 0,
    scope: '',
  };
  test.each([
    { name: 'an HTML page', contentType: 'text/html', body: '<html><body>Login</body></html>' },
    {
      name: 'JSON without access_token',
      contentType: 'application/json',
      body: JSON.stringify({ ...wellFormed, access_token: undefined }),
    },
    { name: 'expires_in as a numeric string', contentType: 'application/json', body: JSON.stringify({ ...wellFormed, expires_in: '300' }) },
    { name: 'expires_in as "abc"', contentType: 'application/json', body: JSON.stringify({ ...wellFormed, expires_in: 'abc' }) },
    { name: 'expires_in -1', contentType: 'application/json', body: JSON.stringify({ ...wellFormed, expires_in: -1 }) },
    { name: 'expires_in 0', contentType: 'application/json', body: JSON.stringify({ ...wellFormed, expires_in: 0 }) },
    { name: 'expires_in 1e12', contentType: 'application/json', body: JSON.stringify({ ...wellFormed, expires_in: 1e12 }) },
    { name: 'token_type mac', contentType: 'application/json', body: JSON.stringify({ ...wellFormed, token_type: 'mac' }) },
    { name: 'an oversized body', contentType: 'application/json', body: `{"access_token":"${'x'.repeat(2 * 1024 * 1024)}"}` },
  ])('body answers $name exactly as given', async ({ contentType, body }) => {
    const iam = await start();
    iam.inject({ kind: 'body', contentType, body });
    const res = await postBasic(iam.tokenUrl(), ORDERS);

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(contentType);
    expect(await res.text()).toBe(body);
    expect(iam.requests.map((entry) => [entry.outcome, entry.status])).toEqual([['fault:body', 200]]);
    expect(iam.issuedTokens).toEqual([]);
  });

  test('body answers any status, JSON by default', async () => {
    const iam = await start();
    iam.inject({ kind: 'body', status: 201, body: '{}' });
    const res = await postBasic(iam.tokenUrl(), ORDERS);

    expect([res.status, res.headers.get('content-type'), await res.text()]).toEqual([201, 'application/json', '{}']);
  });

  test('a fault with times applies to that many requests, then requests succeed again', async () => {
    const iam = await start();
    iam.inject({ kind: 'status', status: 503 }, { times: 2 });
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await postBasic(iam.tokenUrl(), ORDERS);
      statuses.push(res.status);
      await res.body?.cancel();
    }

    expect(statuses).toEqual([503, 503, 200]);
    expect(iam.requests.map((entry) => entry.outcome)).toEqual(['fault:status', 'fault:status', 'issued']);
  });

  test('a fault without times applies until clearFaults()', async () => {
    const iam = await start();
    iam.inject({ kind: 'status', status: 502 });
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await postBasic(iam.tokenUrl(), ORDERS);
      statuses.push(res.status);
      await res.body?.cancel();
    }
    iam.clearFaults();
    statuses.push((await postBasic(iam.tokenUrl(), ORDERS)).status);

    expect(statuses).toEqual([502, 502, 502, 200]);
  });

  test('a per-client fault applies only to requests naming that client', async () => {
    const iam = await start();
    iam.inject({ kind: 'rate_limit', retryAfter: 3 }, { clientId: ORDERS.clientId });

    const other = await postForm(iam.tokenUrl(), ADMIN);
    const faulted = await postForm(iam.tokenUrl(), ORDERS);
    const unauthenticated = await postBasic(iam.tokenUrl(), { ...ORDERS, clientSecret: 'wrong' });

    expect([other.status, faulted.status, unauthenticated.status]).toEqual([200, 429, 429]);
    expect(iam.requests.map((entry) => [entry.clientId, entry.outcome])).toEqual([
      ['admin-tool', 'issued'],
      ['orders-service', 'fault:rate_limit'],
      ['orders-service', 'fault:rate_limit'],
    ]);
  });

  test('faults apply in injection order', async () => {
    const iam = await start();
    iam.inject({ kind: 'status', status: 500 }, { times: 1 });
    iam.inject({ kind: 'rate_limit' }, { times: 1 });
    iam.inject({ kind: 'status', status: 503 }, { times: 1, clientId: ADMIN.clientId });
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await postBasic(iam.tokenUrl(), ORDERS);
      statuses.push(res.status);
      await res.body?.cancel();
    }

    expect(statuses).toEqual([500, 429, 200]);
    expect((await postBasic(iam.tokenUrl(), ADMIN)).status).toBe(503);
  });

  test('inject refuses a times that is not a positive integer', async () => {
    const iam = await start();

    expect(() => iam.inject({ kind: 'reset' }, { times: 0 })).toThrow('Fault option "times" must be a positive integer, got 0');
    expect(() => iam.inject({ kind: 'rate_limit', retryAfter: 1.5 })).toThrow(
      'Fault "retryAfter" must be a non-negative integer of seconds, got 1.5',
    );
  });
});

describe('request log', () => {
  test('records time, client, auth method, remote address, path, outcome, status and token', async () => {
    const iam = await start({ now: fakeClock });
    const issued = (await (await postBasic(iam.tokenUrl(), ORDERS, { ...GRANT, scope: 'orders:read' })).json()) as { access_token: string };
    clock += 1_000;
    await (await postForm(iam.tokenUrl(), { ...ADMIN, clientSecret: 'wrong' })).body?.cancel();

    expect(iam.requests).toEqual([
      {
        at: START,
        clientId: 'orders-service',
        authMethod: 'client_secret_basic',
        remoteAddress: '127.0.0.1',
        path: '/realms/demo/protocol/openid-connect/token',
        params: { grant_type: 'client_credentials', scope: 'orders:read' },
        outcome: 'issued',
        status: 200,
        accessToken: issued.access_token,
      },
      {
        at: START + 1_000,
        clientId: 'admin-tool',
        authMethod: 'client_secret_post',
        remoteAddress: '127.0.0.1',
        path: '/realms/demo/protocol/openid-connect/token',
        params: { grant_type: 'client_credentials', client_id: 'admin-tool' },
        outcome: 'unauthorized_client',
        status: 401,
      },
    ]);
  });

  test('requestsFor picks one client, and clearLog empties both logs', async () => {
    const iam = await start();
    await (await postBasic(iam.tokenUrl(), ORDERS)).body?.cancel();
    await (await postBasic(iam.tokenUrl(), ADMIN)).body?.cancel();
    await (await fetch(`${iam.url}${RESOURCE_PATH}`)).body?.cancel();

    expect(iam.requestsFor(ADMIN.clientId).map((entry) => entry.clientId)).toEqual(['admin-tool']);
    expect(iam.resourceRequests).toHaveLength(1);
    iam.clearLog();
    expect([iam.requests, iam.resourceRequests]).toEqual([[], []]);
  });

  test('onRequest sees each entry as it is logged', async () => {
    const seen: string[] = [];
    const iam = await start({ onRequest: (entry) => seen.push(`${entry.clientId}:${entry.outcome}`) });
    await (await postBasic(iam.tokenUrl(), ORDERS)).body?.cancel();

    expect(seen).toEqual(['orders-service:issued']);
  });
});

describe('resource API', () => {
  async function tokenFor(iam: IamEmulator, client: SecretClient, scope?: string): Promise<string> {
    const res = await postBasic(iam.tokenUrl(), client, scope === undefined ? GRANT : { ...GRANT, scope });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  function callApi(iam: IamEmulator, path: string, authorization?: string): Promise<Response> {
    return fetch(`${iam.url}${path}`, authorization === undefined ? {} : { headers: { Authorization: authorization } });
  }

  test('an active token reads the resource: 200 with the client ID', async () => {
    const iam = await start();
    const token = await tokenFor(iam, ORDERS);
    const res = await callApi(iam, RESOURCE_PATH, `Bearer ${token}`);

    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, clientId: 'orders-service' });
    expect(iam.resourceRequests).toEqual([
      {
        at: expect.any(Number) as unknown,
        method: 'GET',
        path: RESOURCE_PATH,
        remoteAddress: '127.0.0.1',
        outcome: 'ok',
        status: 200,
        clientId: 'orders-service',
        accessToken: token,
      },
    ]);
  });

  test.each([
    {
      name: 'a revoked token',
      description: 'The access token was revoked',
      spoil: (iam: IamEmulator, token: string) => expect(iam.revoke(token)).toBe(true),
    },
    { name: 'an expired token', description: 'The access token expired', spoil: () => void (clock += 300_000) },
    { name: 'an unknown token', description: 'The access token is not known', spoil: () => undefined, replace: 'not.a-token-from.here' },
  ])('$name gets 401 with error="invalid_token" (RFC 6750 §3)', async ({ description, spoil, replace }) => {
    const iam = await start({ now: fakeClock });
    const token = await tokenFor(iam, ORDERS);
    spoil(iam, token);
    const res = await callApi(iam, RESOURCE_PATH, `Bearer ${replace ?? token}`);

    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(`Bearer realm="demo", error="invalid_token", error_description="${description}"`);
    expect(await res.json()).toEqual({ ok: false, error: 'invalid_token', error_description: description });
    expect(iam.resourceRequests.map((entry) => [entry.outcome, entry.status])).toEqual([['invalid_token', 401]]);
    expect(iam.isTokenActive(token)).toBe(replace !== undefined);
  });

  test.each([
    { name: 'no Authorization header', authorization: undefined },
    { name: 'another scheme than Bearer', authorization: basicAuthorization(ORDERS.clientId, ORDERS.clientSecret) },
  ])('$name gets 401 with a bare Bearer challenge and no error code (RFC 6750 §3.1)', async ({ authorization }) => {
    const iam = await start();
    const res = await callApi(iam, RESOURCE_PATH, authorization);

    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="demo"');
    expect(await res.json()).toEqual({ ok: false });
    expect(iam.resourceRequests.map((entry) => entry.outcome)).toEqual(['no_token']);
  });

  test('a malformed Bearer header gets 400 invalid_request', async () => {
    const iam = await start();
    const res = await callApi(iam, RESOURCE_PATH, 'Bearer two words');

    expect(res.status).toBe(400);
    expect(res.headers.get('www-authenticate')).toBe(
      'Bearer realm="demo", error="invalid_request", error_description="Malformed Bearer authorization header"',
    );
  });

  test('the admin route needs scope admin: 403 insufficient_scope without it, 200 with it', async () => {
    const iam = await start();
    const ordersToken = await tokenFor(iam, ORDERS, 'orders:read');
    const adminToken = await tokenFor(iam, ADMIN, 'admin');
    // Allowed but not requested scopes are not granted.
    const unrequestedToken = await tokenFor(iam, ADMIN);

    const refused = await callApi(iam, ADMIN_PATH, `Bearer ${ordersToken}`);
    expect(refused.status).toBe(403);
    expect(refused.headers.get('www-authenticate')).toBe(
      'Bearer realm="demo", error="insufficient_scope", error_description="This resource needs scope admin", scope="admin"',
    );
    expect(await refused.json()).toEqual({ ok: false, error: 'insufficient_scope', error_description: 'This resource needs scope admin' });
    expect((await callApi(iam, ADMIN_PATH, `Bearer ${unrequestedToken}`)).status).toBe(403);

    const allowed = await callApi(iam, ADMIN_PATH, `Bearer ${adminToken}`);
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toEqual({ ok: true, clientId: 'admin-tool' });
    expect(iam.resourceRequests.map((entry) => [entry.clientId, entry.outcome])).toEqual([
      ['orders-service', 'insufficient_scope'],
      ['admin-tool', 'insufficient_scope'],
      ['admin-tool', 'ok'],
    ]);
  });

  test('unknown API paths are 404 and other methods 405', async () => {
    const iam = await start();
    const missing = await callApi(iam, '/api/nothing');
    const post = await fetch(`${iam.url}${RESOURCE_PATH}`, { method: 'POST' });

    expect([missing.status, post.status, post.headers.get('allow')]).toEqual([404, 405, 'GET']);
  });
});

describe('close', () => {
  test('close() is idempotent and the port stops accepting connections', async () => {
    const iam = await startIamEmulator({ clients: CLIENTS });
    await Promise.all([iam.close(), iam.close()]);
    await iam.close();

    expect((await networkError(fetch(iam.tokenUrl(), { method: 'POST' }))).code).toBe('ECONNREFUSED');
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
