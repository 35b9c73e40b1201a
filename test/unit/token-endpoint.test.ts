import { createHash, generateKeyPairSync } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { RequestHeldBackError, TokenEndpointError } from '../../activities/errors.js';
import { Secret } from '../../shared/references.js';
import type { GrantAssertion } from '../../activities/request-credentials.js';
import {
  classifyErrorResponse,
  endpointDownKind,
  classifyRequestError,
  clientCredentialsGrantRequest,
  formUrlEncode,
  parseOAuthError,
  parseRetryAfter,
  requestToken,
  type ClientCredentialsRequest,
} from '../../activities/token-endpoint.js';
import { TokenEndpointResponse } from '../../activities/token-endpoint-response.js';

// Canonical values. The secret and the token are distinctive so a leak cannot hide.
const CLIENT_ID = 'billing-service';
const SECRET = 'S3CRET-never-print-me-4f9a2c';
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.TOKEN-never-print-me.c2lnbmF0dXJl';
const BASIC_CREDENTIALS = Buffer.from(`${CLIENT_ID}:${SECRET}`).toString('base64');

/** A Keycloak-shaped success body; a field set to `undefined` is left out. */
function tokenBody(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    access_token: TOKEN,
    expires_in: 300,
    refresh_expires_in: 0,
    token_type: 'Bearer',
    'not-before-policy': 0,
    scope: 'profile email',
    ...overrides,
  });
}

// ---------------------------------------------------------------------------------------------
// Local servers that record what they received. Only 127.0.0.1, never the real network.
// ---------------------------------------------------------------------------------------------

interface Exchange {
  method: string | undefined;
  path: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

async function listen(server: Server | TcpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** An HTTP token endpoint that answers with `handler` once it has read each request. */
async function tokenEndpoint(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const exchanges: Exchange[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      exchanges.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      handler(req, res);
    });
  });
  const port = await listen(server);
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${port}/realms/test/protocol/openid-connect/token`, port, exchanges };
}

/** A TCP server that hands each connection to `onConnection` and nothing else. */
async function tcpServer(onConnection: (socket: Socket) => void) {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    onConnection(socket);
  });
  const port = await listen(server);
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { port, connections: () => sockets.size };
}

function reply(res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
}

function tokenRequest(tokenUrl: string, overrides: Partial<ClientCredentialsRequest> = {}): ClientCredentialsRequest {
  return {
    tokenUrl,
    clientId: CLIENT_ID,
    clientSecret: new Secret(SECRET),
    authMethod: 'client_secret_basic',
    timeoutMs: 2_000,
    ...overrides,
  };
}

/** Every way an error gets printed or shipped: none may show a secret or a token. */
function expectNoLeak(error: unknown, secrets: string[] = [SECRET, formUrlEncode(SECRET), BASIC_CREDENTIALS, TOKEN]): void {
  const e = error as Error;
  const renderings = [
    e.message,
    String(e.stack),
    String(e),
    JSON.stringify(e),
    JSON.stringify(Object.entries(e)),
    inspect(e),
    inspect(e, { showHidden: true, depth: Infinity }),
  ];
  for (const text of renderings) {
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
    }
  }
}

/** Awaits a failure, checks it is a TokenEndpointError that leaks nothing, and returns it. */
async function failure(promise: Promise<unknown>): Promise<TokenEndpointError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the token request to fail, it succeeded');
    },
    (rejection: unknown) => rejection,
  );
  expect(error).toBeInstanceOf(TokenEndpointError);
  expectNoLeak(error);
  return error as TokenEndpointError;
}

function summary(error: TokenEndpointError) {
  return { kind: error.kind, details: error.details, message: error.message };
}

// ---------------------------------------------------------------------------------------------

describe('The token request', () => {
  it('authenticates with client_secret_basic by form-urlencoding id and secret before Base64 (RFC 6749 §2.3.1)', async () => {
    const clientId = 'client:id+1%é x';
    const secret = "p:ss+w%rd é!'()*~";
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await requestToken(tokenRequest(endpoint.url, { clientId, clientSecret: new Secret(secret) }));

    expect(endpoint.exchanges).toHaveLength(1);
    const authorization = endpoint.exchanges[0]!.headers.authorization!;
    const encoded = 'client%3Aid%2B1%25%C3%A9+x:p%3Ass%2Bw%25rd+%C3%A9%21%27%28%29*%7E';
    expect(authorization).toBe(`Basic ${Buffer.from(encoded).toString('base64')}`);
    // What a server does (Keycloak: URLDecoder): split at the one literal ':' and decode each half.
    const [user, password] = Buffer.from(authorization.slice('Basic '.length), 'base64').toString('utf8').split(':');
    expect(new URLSearchParams(`u=${user}&p=${password}`).get('u')).toBe(clientId);
    expect(new URLSearchParams(`u=${user}&p=${password}`).get('p')).toBe(secret);
    expect(endpoint.exchanges[0]!.body).toBe('grant_type=client_credentials');
  });

  it('authenticates with client_secret_post by sending client_id and client_secret in the body', async () => {
    const clientId = 'client:id+1%é x';
    const secret = "p:ss+w%rd é!'()*~";
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await requestToken(tokenRequest(endpoint.url, { clientId, clientSecret: new Secret(secret), authMethod: 'client_secret_post' }));

    const [exchange] = endpoint.exchanges;
    expect(exchange!.headers.authorization).toBeUndefined();
    expect(exchange!.body).toBe(
      'grant_type=client_credentials&client_id=client%3Aid%2B1%25%C3%A9+x&client_secret=p%3Ass%2Bw%25rd+%C3%A9%21%27%28%29*%7E',
    );
    expect([...new URLSearchParams(exchange!.body)]).toEqual([
      ['grant_type', 'client_credentials'],
      ['client_id', clientId],
      ['client_secret', secret],
    ]);
  });

  it('sends the scope and the extra parameters after the grant parameters', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await requestToken(
      tokenRequest(endpoint.url, {
        authMethod: 'client_secret_post',
        scope: 'openid billing:read',
        extraParams: { audience: 'https://api.example.com', resource: 'urn:example:billing' },
      }),
    );

    expect([...new URLSearchParams(endpoint.exchanges[0]!.body)]).toEqual([
      ['grant_type', 'client_credentials'],
      ['client_id', CLIENT_ID],
      ['client_secret', SECRET],
      ['scope', 'openid billing:read'],
      ['audience', 'https://api.example.com'],
      ['resource', 'urn:example:billing'],
    ]);
  });

  it('leaves out an empty scope', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await requestToken(tokenRequest(endpoint.url, { scope: '' }));

    expect(endpoint.exchanges[0]!.body).toBe('grant_type=client_credentials');
  });

  it('POSTs a form to the token URL as given and asks for JSON', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await requestToken(tokenRequest(`${endpoint.url}?tenant=a`));

    const [exchange] = endpoint.exchanges;
    expect(exchange!.method).toBe('POST');
    expect(exchange!.path).toBe('/realms/test/protocol/openid-connect/token?tenant=a');
    expect(exchange!.headers.accept).toBe('application/json');
    expect(exchange!.headers['content-type']).toBe('application/x-www-form-urlencoded');
  });

  it.each(['grant_type', 'client_id', 'client_secret', 'scope'])(
    'refuses extraParams that would override %s, before sending anything',
    async (name) => {
      const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

      const attempt = requestToken(tokenRequest(endpoint.url, { extraParams: { [name]: 'x' } }));

      await expect(attempt).rejects.toThrow(TypeError);
      await expect(attempt).rejects.toThrow(`extraParams.${name} is not allowed: "${name}" is set by the grant itself`);
      expect(endpoint.exchanges).toHaveLength(0);
    },
  );

  it.each([
    ['ftp://iam.example/token', 'tokenUrl must be an http: or https: URL, got ftp:'],
    ['not a url', 'tokenUrl must be an absolute http: or https: URL'],
    ['https://user:pass@iam.example/token', 'tokenUrl must not contain credentials'],
  ])('refuses the token URL %s', async (tokenUrl, message) => {
    await expect(requestToken(tokenRequest(tokenUrl))).rejects.toThrow(new TypeError(message));
  });

  it('encodes like the form serializer (URLSearchParams) for every printable ASCII character', () => {
    const all = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).join('') + 'é€😀';
    expect(formUrlEncode(all)).toBe(new URLSearchParams({ v: all }).toString().slice('v='.length));
  });
});

describe('A successful token response', () => {
  it('gives the token, its type, lifetime, scope and timing', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));
    const before = Date.now();

    const token = await requestToken(tokenRequest(endpoint.url));

    expect(token.accessToken.reveal()).toBe(TOKEN);
    expect(token.accessToken.fingerprint()).toBe(createHash('sha256').update(TOKEN).digest('hex').slice(0, 16));
    expect(token).toMatchObject({ tokenType: 'Bearer', expiresInSeconds: 300, scope: 'profile email' });
    expect(token.requestStartedAt).toBeGreaterThanOrEqual(before);
    expect(token.receivedAt).toBeGreaterThanOrEqual(token.requestStartedAt);
    expect(token.receivedAt).toBeLessThanOrEqual(Date.now());
    expect(JSON.stringify(token)).not.toContain(TOKEN);
    expect(inspect(token)).not.toContain(TOKEN);
  });

  it('accepts a missing expires_in as undefined (the workflow applies its default)', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody({ expires_in: undefined, scope: undefined })));

    const token = await requestToken(tokenRequest(endpoint.url));

    expect(token.expiresInSeconds).toBeUndefined();
    expect(token.scope).toBeUndefined();
  });

  it.each([
    ['"300"', '300', 300],
    ['300.9', 300.9, 300],
    ['1', 1, 1],
    ['10 years', 315_360_000, 315_360_000],
  ])('accepts expires_in %s as %d seconds', async (_label, expiresIn, seconds) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody({ expires_in: expiresIn })));

    const token = await requestToken(tokenRequest(endpoint.url));

    expect(token.expiresInSeconds).toBe(seconds);
  });

  it.each(['bearer', 'BEARER', 'Bearer'])('accepts token_type %s as Bearer', async (tokenType) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody({ token_type: tokenType })));

    const token = await requestToken(tokenRequest(endpoint.url));

    expect(token.tokenType).toBe('Bearer');
  });

  it('does not depend on the Content-Type of the answer', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody(), { 'content-type': 'text/plain' }));

    const token = await requestToken(tokenRequest(endpoint.url));

    expect(token.accessToken.reveal()).toBe(TOKEN);
  });
});

describe('A malformed 200 answer is malformed_response', () => {
  const expiresIn = '"response" body "expires_in" property must be a positive number of seconds, at most 315360000';
  it.each([
    ['an HTML page', '<html><body>Welcome</body></html>', 'failed to parse "response" body as JSON'],
    ['an empty body', '', 'failed to parse "response" body as JSON'],
    ['a JSON array', '[]', '"response" body must be a top level object'],
    ['JSON null', 'null', '"response" body must be a top level object'],
    ['a JSON string', JSON.stringify(TOKEN), '"response" body must be a top level object'],
    ['{}', '{}', '"response" body "access_token" property must be a non-empty string'],
    ['access_token a number', tokenBody({ access_token: 42 }), '"response" body "access_token" property must be a non-empty string'],
    ['access_token empty', tokenBody({ access_token: '' }), '"response" body "access_token" property must be a non-empty string'],
    [
      'access_token with a line break',
      tokenBody({ access_token: `${TOKEN}\r\nX-Injected: 1` }),
      '"response" body "access_token" property must contain only visible ASCII characters',
    ],
    [
      'token_type "mac"',
      tokenBody({ token_type: 'mac' }),
      '"response" body "token_type" property must be "Bearer" (case-insensitive), got "mac"',
    ],
    ['token_type missing', tokenBody({ token_type: undefined }), '"response" body "token_type" property must be a string'],
    ['expires_in "abc"', tokenBody({ expires_in: 'abc' }), expiresIn],
    ['expires_in ""', tokenBody({ expires_in: '' }), expiresIn],
    ['expires_in "-1"', tokenBody({ expires_in: '-1' }), expiresIn],
    ['expires_in -1', tokenBody({ expires_in: -1 }), expiresIn],
    ['expires_in 0', tokenBody({ expires_in: 0 }), expiresIn],
    ['expires_in 0.5', tokenBody({ expires_in: 0.5 }), expiresIn],
    ['expires_in 1e12', tokenBody({ expires_in: 1e12 }), expiresIn],
    ['expires_in null', tokenBody({ expires_in: null }), expiresIn],
    ['expires_in true', tokenBody({ expires_in: true }), expiresIn],
    ['scope a number', tokenBody({ scope: 42 }), '"response" body "scope" property must be a string'],
  ])('%s', async (_label, body, message) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, body));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({ kind: 'malformed_response', details: { status: 200 }, message });
  });

  it('a body larger than maxBodyBytes, which is not read to its end', async () => {
    // The server streams far more than any client should buffer; the client must stop reading.
    let written = 0;
    const endpoint = await tokenEndpoint((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 'a');
      const pump = () => {
        while (!res.destroyed && written < 64 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });

    const error = await failure(requestToken(tokenRequest(endpoint.url, { maxBodyBytes: 1024 })));

    expect(summary(error)).toEqual({
      kind: 'malformed_response',
      details: { status: 200 },
      message: '"response" body must not be larger than 1024 bytes',
    });
    expect(written).toBeLessThan(64 * 1024 * 1024);
  });

  it('a valid token response that is one byte over the limit', async () => {
    const body = tokenBody();
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, body));

    const error = await failure(requestToken(tokenRequest(endpoint.url, { maxBodyBytes: Buffer.byteLength(body) - 1 })));

    expect(error.kind).toBe('malformed_response');
    await expect(requestToken(tokenRequest(endpoint.url, { maxBodyBytes: Buffer.byteLength(body) }))).resolves.toMatchObject({
      expiresInSeconds: 300,
    });
  });
});

describe('An error answer is classified', () => {
  it('429 with Retry-After in seconds is rate_limited, and is not retried', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 429, '', { 'retry-after': '30' }));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({
      kind: 'rate_limited',
      details: { status: 429, retryAfterMs: 30_000 },
      message: 'Token endpoint answered 429 Too Many Requests, Retry-After 30000 ms',
    });
    expect(endpoint.exchanges).toHaveLength(1);
  });

  it('429 with Retry-After as an HTTP-date is rate_limited, the wait measured from the answer', async () => {
    const endpoint = await tokenEndpoint((_req, res) =>
      reply(res, 429, '', { 'retry-after': new Date(Date.now() + 120_000).toUTCString() }),
    );

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(error.kind).toBe('rate_limited');
    // An HTTP-date has whole seconds: up to 1 s (plus the exchange) is lost to truncation.
    expect(error.details.retryAfterMs).toBeGreaterThan(118_000);
    expect(error.details.retryAfterMs).toBeLessThanOrEqual(120_000);
    expect(endpoint.exchanges).toHaveLength(1);
  });

  it.each([
    ['none', undefined],
    ['garbage', 'soon'],
  ])('429 with Retry-After %s is rate_limited without a wait', async (_label, value) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 429, 'Slow down', value === undefined ? {} : { 'retry-after': value }));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({
      kind: 'rate_limited',
      details: { status: 429 },
      message: 'Token endpoint answered 429 Too Many Requests',
    });
  });

  const oauthErrors = [
    'invalid_request',
    'invalid_client',
    'invalid_grant',
    'unauthorized_client',
    'unsupported_grant_type',
    'invalid_scope',
  ];
  it.each(oauthErrors.flatMap((code) => [400, 401].map((status) => [status, code] as const)))(
    '%i %s is credentials_rejected',
    async (status, code) => {
      const endpoint = await tokenEndpoint((_req, res) =>
        reply(res, status, JSON.stringify({ error: code, error_description: 'Described by the IAM' })),
      );

      const error = await failure(requestToken(tokenRequest(endpoint.url)));

      expect(summary(error)).toEqual({
        kind: 'credentials_rejected',
        details: { status, oauthError: code },
        message: `Token endpoint answered ${status} ${code}: Described by the IAM`,
      });
      expect(endpoint.exchanges).toHaveLength(1);
    },
  );

  it("Keycloak's wrong secret answer names the OAuth error and its description", async () => {
    const endpoint = await tokenEndpoint((_req, res) =>
      reply(res, 401, JSON.stringify({ error: 'unauthorized_client', error_description: 'Invalid client or Invalid client credentials' })),
    );

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(error.message).toBe('Token endpoint answered 401 unauthorized_client: Invalid client or Invalid client credentials');
    expect(error.kind).toBe('credentials_rejected');
    expect(error.code).toBe('credentials_rejected');
  });

  it.each([
    [
      401,
      '',
      'credentials_rejected',
      'Token endpoint answered 401 Unauthorized without an OAuth error code: the client authentication was refused',
    ],
    [400, '<html>Bad Request</html>', 'server_error', 'Token endpoint answered 400 Bad Request without an OAuth error code'],
    [400, '{"error":42}', 'server_error', 'Token endpoint answered 400 Bad Request without an OAuth error code'],
    [403, '<html>Forbidden by policy</html>', 'server_error', 'Token endpoint answered 403 Forbidden without an OAuth error code'],
  ])('%i without an OAuth error code (%j) is %s', async (status, body, kind, message) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, status, body));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({ kind, details: { status }, message });
  });

  it('403 with an OAuth error code is credentials_rejected', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 403, JSON.stringify({ error: 'access_denied' })));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({
      kind: 'credentials_rejected',
      details: { status: 403, oauthError: 'access_denied' },
      message: 'Token endpoint answered 403 access_denied',
    });
  });

  it.each(['temporarily_unavailable', 'server_error'])('400 %s is server_error: the IAM asks to come back later', async (code) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 400, JSON.stringify({ error: code })));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({
      kind: 'server_error',
      details: { status: 400, oauthError: code },
      message: `Token endpoint answered 400 ${code}`,
    });
  });

  it.each([
    [500, 'Token endpoint answered 500 Internal Server Error'],
    [502, 'Token endpoint answered 502 Bad Gateway'],
    [504, 'Token endpoint answered 504 Gateway Timeout'],
    [204, 'Token endpoint answered 204 No Content'],
    [404, 'Token endpoint answered 404 Not Found'],
    [599, 'Token endpoint answered 599'],
  ])('%i is server_error, and is not retried', async (status, message) => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, status, status === 204 ? '' : '<html>oops</html>'));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({ kind: 'server_error', details: { status }, message });
    expect(endpoint.exchanges).toHaveLength(1);
  });

  it('503 with Retry-After is server_error and reports the wait', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 503, '', { 'retry-after': '5' }));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({
      kind: 'server_error',
      details: { status: 503, retryAfterMs: 5_000 },
      message: 'Token endpoint answered 503 Service Unavailable',
    });
  });

  it('a redirect is server_error and is not followed', async () => {
    const endpoint = await tokenEndpoint((req, res) =>
      req.url === '/elsewhere' ? reply(res, 200, tokenBody()) : reply(res, 302, '', { location: '/elsewhere' }),
    );

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(summary(error)).toEqual({
      kind: 'server_error',
      details: { status: 302 },
      message: 'Token endpoint answered 302 Found: redirects are not followed, tokenUrl must name the token endpoint itself',
    });
    expect(endpoint.exchanges.map((exchange) => exchange.path)).toEqual(['/realms/test/protocol/openid-connect/token']);
  });
});

describe('No answer at all is blocked', () => {
  it('a connection reset, which is not retried', async () => {
    const endpoint = await tokenEndpoint((req) => req.socket.resetAndDestroy());

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(error.kind).toBe('blocked');
    expect(error.details).toEqual({});
    expect(error.message).toMatch(/^Token endpoint could not be reached: .*ECONNRESET/);
    expect(endpoint.exchanges).toHaveLength(1);
  });

  it.each([
    [
      'announced by Content-Length',
      { 'content-length': '1000' },
      /^Token endpoint could not be reached: Content-Length mismatch: .*\(ERR_HTTP_CONTENT_LENGTH_MISMATCH\)$/,
    ],
    ['chunked', {}, /^Token endpoint could not be reached: .*ECONNRESET/],
  ])('a connection reset in the middle of a body %s', async (_label, headers, message) => {
    const endpoint = await tokenEndpoint((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.write(`{"access_token":"${TOKEN.slice(0, 10)}`);
      setTimeout(() => req.socket.resetAndDestroy(), 20);
    });

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(error.kind).toBe('blocked');
    expect(error.message).toMatch(message);
  });

  it('a refused connection', async () => {
    const closed = createTcpServer();
    const port = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));

    const error = await failure(requestToken(tokenRequest(`http://127.0.0.1:${port}/token`)));

    expect(summary(error)).toEqual({
      kind: 'blocked',
      details: {},
      message: `Token endpoint could not be reached: connect ECONNREFUSED 127.0.0.1:${port}`,
    });
  });

  it('a server that reads the request and never answers times out after timeoutMs', async () => {
    const endpoint = await tokenEndpoint(() => {});

    const error = await failure(requestToken(tokenRequest(endpoint.url, { timeoutMs: 200 })));

    // got names the timer that fired: the request's own 200 ms, not the 10 s default.
    expect(summary(error)).toEqual({
      kind: 'blocked',
      details: {},
      message: "Token endpoint did not answer in time: Timeout awaiting 'request' for 200ms",
    });
    expect(endpoint.exchanges).toHaveLength(1);
  });

  it('a server that accepts the connection and never says a word times out', async () => {
    const silent = await tcpServer(() => {});

    const error = await failure(requestToken(tokenRequest(`http://127.0.0.1:${silent.port}/token`, { timeoutMs: 200 })));

    expect(error.kind).toBe('blocked');
    expect(error.message).toMatch(/^Token endpoint did not answer in time: Timeout awaiting '\w+' for \d+ms$/);
    expect(silent.connections()).toBe(1);
  });

  it('a TLS handshake cut by the server', async () => {
    const cutter = await tcpServer((socket) => socket.destroy());

    const error = await failure(requestToken(tokenRequest(`https://127.0.0.1:${cutter.port}/token`)));

    expect(summary(error)).toEqual({
      kind: 'blocked',
      details: {},
      message:
        'Token endpoint could not be reached: Client network socket disconnected before secure TLS connection was established (ECONNRESET)',
    });
  });

  it('a TLS protocol error (EPROTO)', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    const error = await failure(requestToken(tokenRequest(`https://127.0.0.1:${endpoint.port}/token`)));

    expect(error.kind).toBe('blocked');
    expect(error.message).toMatch(/^Token endpoint could not be reached: .*EPROTO/);
    expect(error.message).not.toContain('\n');
  });
});

describe('Cancellation', () => {
  it("rejects with the signal's reason, not as a failure of the IAM", async () => {
    const endpoint = await tokenEndpoint(() => {});
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    setTimeout(() => controller.abort(reason), 20);

    await expect(requestToken(tokenRequest(endpoint.url, { signal: controller.signal }))).rejects.toBe(reason);
  });
});

describe('Secrets and tokens never leak into errors', () => {
  it('an error_description that echoes the secret is redacted', async () => {
    const endpoint = await tokenEndpoint((_req, res) =>
      reply(res, 401, JSON.stringify({ error: 'invalid_client', error_description: `Bad secret ${SECRET} (${BASIC_CREDENTIALS})` })),
    );

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(error.message).toBe('Token endpoint answered 401 invalid_client: Bad secret [redacted] ([redacted])');
  });

  it('a rejected 200 answer keeps its response off enumeration, and the response hides its body', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody({ token_type: 'mac' })));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(Object.keys(error)).toEqual(['name', 'kind', 'details']);
    expect(error.response).toBeInstanceOf(TokenEndpointResponse);
    expect(error.response!.body).toContain(TOKEN);
    expect(JSON.stringify(error.response)).not.toContain(TOKEN);
    expect(inspect(error.response, { showHidden: true, depth: Infinity })).not.toContain(TOKEN);
  });

  it('a token_type that is not short and plain is described, not printed', async () => {
    const endpoint = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody({ token_type: TOKEN })));

    const error = await failure(requestToken(tokenRequest(endpoint.url)));

    expect(error.message).toBe(
      `"response" body "token_type" property must be "Bearer" (case-insensitive), got a ${TOKEN.length}-character value`,
    );
  });

  it('the raw request step never throws got errors, which carry the request headers', async () => {
    const endpoint = await tokenEndpoint((req) => req.socket.resetAndDestroy());

    const error = await failure(clientCredentialsGrantRequest(tokenRequest(endpoint.url)));

    expect(error.kind).toBe('blocked');
  });
});

// ---------------------------------------------------------------------------------------------
// The pure parts
// ---------------------------------------------------------------------------------------------

describe('parseRetryAfter', () => {
  const now = Date.parse('Sun, 06 Nov 1994 08:49:00 GMT');

  it.each([
    ['120', 120_000],
    [' 7 ', 7_000],
    ['0', 0],
    ['Sun, 06 Nov 1994 08:49:37 GMT', 37_000],
    ['Sunday, 06-Nov-94 08:49:37 GMT', 37_000],
    ['Sun Nov  6 08:49:37 1994', 37_000],
    ['Sun, 06 Nov 1994 08:48:00 GMT', 0],
  ])('reads %j as %i ms', (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms);
  });

  it.each([
    undefined,
    '',
    'soon',
    '-5',
    '1.5',
    '1e3',
    '0x10',
    '1994-11-06T08:49:37Z',
    'Sun, 06 Nov 1994 08:49:37',
    'Sun, 06 Nov 1994 08:49:37 PST',
  ])('ignores %j', (value) => {
    expect(parseRetryAfter(value, now)).toBeUndefined();
  });
});

describe('classifyErrorResponse', () => {
  it('uses the time the answer came for an HTTP-date Retry-After', () => {
    const receivedAt = Date.parse('Sun, 06 Nov 1994 08:49:00 GMT');
    const response = new TokenEndpointResponse({ status: 429, headers: { 'retry-after': 'Sun, 06 Nov 1994 08:50:00 GMT' }, receivedAt });

    expect(classifyErrorResponse(response).details).toEqual({ status: 429, retryAfterMs: 60_000 });
  });

  it('classifies on the status alone when the body was too large to read', () => {
    const response = new TokenEndpointResponse({ status: 429, oversized: true, body: 'ignored' });

    expect(response.body).toBe('');
    expect(classifyErrorResponse(response).kind).toBe('rate_limited');
  });
});

describe('endpointDownKind', () => {
  const answer = (status: number, body = '') => classifyErrorResponse(new TokenEndpointResponse({ status, body }));

  it('says the endpoint is down for a 429, a 5xx and an OAuth server_error or temporarily_unavailable', () => {
    expect(endpointDownKind(answer(429))).toBe('rate_limited');
    for (const status of [500, 502, 503, 504]) expect(endpointDownKind(answer(status))).toBe('server_error');
    expect(endpointDownKind(answer(400, JSON.stringify({ error: 'temporarily_unavailable' })))).toBe('server_error');
    expect(endpointDownKind(answer(400, JSON.stringify({ error: 'server_error' })))).toBe('server_error');
    expect(endpointDownKind(new TokenEndpointError('blocked', 'Token endpoint could not be reached: ECONNRESET'))).toBe('blocked');
  });

  it("not for an answer that judges only this client or response: a proxy's 403 page, a redirect, a rejection, a malformed 200", () => {
    expect(endpointDownKind(answer(403))).toBeUndefined();
    expect(endpointDownKind(answer(302))).toBeUndefined();
    expect(endpointDownKind(answer(401))).toBeUndefined();
    expect(endpointDownKind(new TokenEndpointError('malformed_response', 'no access_token', { status: 200 }))).toBeUndefined();
    expect(endpointDownKind(new TokenEndpointError('server_error', 'Token request failed unexpectedly: a bug'))).toBeUndefined();
  });

  it('not for a request held back before it was sent, nor for anything but a token endpoint error', () => {
    expect(endpointDownKind(new RequestHeldBackError('server_error', 'No request sent', 1_000))).toBeUndefined();
    expect(endpointDownKind(new Error('ECONNRESET'))).toBeUndefined();
    expect(endpointDownKind(undefined)).toBeUndefined();
  });
});

describe('parseOAuthError', () => {
  it('keeps the error code and a one-line, bounded description', () => {
    const parsed = parseOAuthError(
      JSON.stringify({ error: 'invalid_client', error_description: `line one\nX-Forged: ${'x'.repeat(300)}` }),
    );

    expect(parsed?.error).toBe('invalid_client');
    expect(parsed?.description).toBe(`line one?X-Forged: ${'x'.repeat(200 - 'line one?X-Forged: '.length)}…`);
  });

  it.each(['', 'not json', '[]', '{"error":""}', '{"error":"bad\\nline"}', `{"error":"${'e'.repeat(65)}"}`])(
    'finds no OAuth error in %j',
    (body) => {
      expect(parseOAuthError(body)).toBeUndefined();
    },
  );
});

describe('classifyRequestError', () => {
  it.each([
    ['ECONNRESET', 'blocked'],
    ['EPIPE', 'blocked'],
    ['EAI_AGAIN', 'blocked'],
    ['ENOTFOUND', 'blocked'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'blocked'],
    ['CERT_HAS_EXPIRED', 'blocked'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'blocked'],
    ['HPE_INVALID_CONSTANT', 'server_error'],
    ['ERR_SOMETHING_ELSE', 'server_error'],
  ])('classifies code %s as %s', (code, kind) => {
    expect(classifyRequestError(Object.assign(new Error('boom'), { code })).kind).toBe(kind);
  });

  it('classifies an unexpected error as server_error and names it', () => {
    expect(summary(classifyRequestError(new RangeError('bug')))).toEqual({
      kind: 'server_error',
      details: {},
      message: 'Token request failed unexpectedly: bug',
    });
    expect(classifyRequestError('a string').message).toBe('Token request failed unexpectedly: a string');
  });
});

describe('the JWT-bearer grant (RFC 7523 §2.1)', () => {
  const grantKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const MINTED = 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJwbGF0Zm9ybSJ9.MINTED-never-print-me';
  const minted: GrantAssertion = {
    minted: { jwt: new Secret(MINTED), identity: { iss: 'platform', sub: 'svc', aud: 'iam' }, expiresAt: Date.now() + 600_000 },
  };
  const form = (exchange: Exchange) => Object.fromEntries(new URLSearchParams(exchange.body));

  it('sends the minted assertion as the grant, and authenticates the client by its method', async () => {
    const iam = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    const response = await requestToken(tokenRequest(iam.url, { grantAssertion: minted, scope: 'read' }));

    expect(response.accessToken.reveal()).toBe(TOKEN);
    expect(iam.exchanges).toHaveLength(1);
    expect(form(iam.exchanges[0]!)).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion: MINTED,
      scope: 'read',
    });
    expect(iam.exchanges[0]!.headers.authorization).toBe(`Basic ${BASIC_CREDENTIALS}`);
  });

  it('signs the assertion with the key: iss the client ID, sub the subject, aud the token endpoint or assertionAudience', async () => {
    const iam = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));
    const signed: GrantAssertion = { signingKey: { key: grantKey.privateKey, alg: 'ES256', kid: 'grant-key' }, subject: 'svc-account' };

    await requestToken(tokenRequest(iam.url, { grantAssertion: signed, authMethod: 'client_secret_post' }));
    await requestToken(tokenRequest(iam.url, { grantAssertion: signed, assertionAudience: 'https://issuer.example' }));

    const [first, second] = iam.exchanges.map((exchange) => form(exchange).assertion!);
    expect(form(iam.exchanges[0]!)).toMatchObject({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', client_id: CLIENT_ID });
    expect(decodeProtectedHeader(first!)).toEqual({ alg: 'ES256', kid: 'grant-key' });
    const { payload } = await jwtVerify(first!, grantKey.publicKey, { issuer: CLIENT_ID, subject: 'svc-account', audience: iam.url });
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(payload.jti).toEqual(expect.any(String));
    const { payload: again } = await jwtVerify(second!, grantKey.publicKey, { audience: 'https://issuer.example' });
    expect(again.jti).not.toBe(payload.jti);
  });

  it.each([
    [400, 'invalid_grant', 'credentials_rejected'],
    [400, 'unauthorized_client', 'credentials_rejected'],
    [401, 'invalid_client', 'credentials_rejected'],
    [400, 'temporarily_unavailable', 'server_error'],
  ])('classifies %i %s as %s, never echoing the assertion', async (status, error, kind) => {
    const iam = await tokenEndpoint((_req, res) =>
      reply(res, status, JSON.stringify({ error, error_description: `assertion ${MINTED} refused` })),
    );

    const failed = await failure(requestToken(tokenRequest(iam.url, { grantAssertion: minted })));

    expect(failed.kind).toBe(kind);
    expect(failed.details.oauthError).toBe(error);
    expect(failed.message).toContain('assertion [redacted] refused');
    expectNoLeak(failed, [MINTED, SECRET]);
  });

  it('is rate limited on 429 like the client credentials grant', async () => {
    const iam = await tokenEndpoint((_req, res) => reply(res, 429, '', { 'retry-after': '7' }));

    const failed = await failure(requestToken(tokenRequest(iam.url, { grantAssertion: minted })));

    expect(failed.kind).toBe('rate_limited');
    expect(failed.details.retryAfterMs).toBe(7_000);
  });

  it('lets no extra parameter replace the assertion', async () => {
    const iam = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await expect(requestToken(tokenRequest(iam.url, { grantAssertion: minted, extraParams: { assertion: 'other' } }))).rejects.toThrow(
      'extraParams.assertion is not allowed',
    );
    expect(iam.exchanges).toHaveLength(0);
  });

  it('sends the client credentials grant without a grant assertion', async () => {
    const iam = await tokenEndpoint((_req, res) => reply(res, 200, tokenBody()));

    await requestToken(tokenRequest(iam.url));

    expect(form(iam.exchanges[0]!)).toEqual({ grant_type: 'client_credentials' });
  });
});
