/**
 * Discovery (shared/discovery.ts) against HTTP servers in process, and the egress rules
 * (shared/egress.ts): which proxy a request takes, and a proxy that refuses the tunnel is `blocked`,
 * named without its credentials.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { Secret } from '../../shared/references.js';
import { requestToken } from '../../activities/token-endpoint.js';
import {
  discoveryUrls,
  fetchIssuerMetadata,
  IssuerMetadataCache,
  parseIssuerMetadata,
  tokenEndpointFor,
  unsupportedMethodProblem,
  type IssuerMetadata,
} from '../../shared/discovery.js';
import { proxyFor, proxyName } from '../../shared/egress.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; paths: string[]; server: Server }> {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    handler(req, res);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths, server };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

describe('discovery', () => {
  test('the OpenID Connect form comes first, then RFC 8414 with the path after the well-known segment', () => {
    expect(discoveryUrls('https://iam.example.com/realms/prod')).toEqual([
      'https://iam.example.com/realms/prod/.well-known/openid-configuration',
      'https://iam.example.com/.well-known/oauth-authorization-server/realms/prod',
    ]);
    expect(discoveryUrls('https://iam.example.com')).toEqual([
      'https://iam.example.com/.well-known/openid-configuration',
      'https://iam.example.com/.well-known/oauth-authorization-server',
    ]);
  });

  test('an issuer that serves only RFC 8414 metadata is read from it', async () => {
    const iam = await serve((req, res) => {
      if (req.url === '/.well-known/oauth-authorization-server/tenant') {
        return json(res, 200, { issuer: `${iam.url}/tenant`, token_endpoint: `${iam.url}/tenant/token` });
      }
      json(res, 404, { error: 'not_found' });
    });
    const metadata = await fetchIssuerMetadata(`${iam.url}/tenant`);

    expect(iam.paths).toEqual(['/tenant/.well-known/openid-configuration', '/.well-known/oauth-authorization-server/tenant']);
    // No list in the document: client_secret_basic is the default of both specifications.
    expect(metadata).toMatchObject({ tokenEndpoint: `${iam.url}/tenant/token`, authMethodsSupported: ['client_secret_basic'] });
  });

  test.each([
    [
      'names another issuer',
      { issuer: 'https://evil.example.com', token_endpoint: 'https://evil.example.com/token' },
      /names the issuer "https:\/\/evil\.example\.com", not https:\/\/iam/,
    ],
    ['has no token endpoint', { issuer: 'https://iam.example.com' }, /has no http\(s\) token_endpoint/],
    [
      'lists methods that are not names',
      { issuer: 'https://iam.example.com', token_endpoint: 'https://iam.example.com/t', token_endpoint_auth_methods_supported: [1] },
      /not a list of names/,
    ],
  ])('a document that %s is malformed_response', (_name, document, message) => {
    expect(() =>
      parseIssuerMetadata('https://iam.example.com', 'https://iam.example.com/.well-known/openid-configuration', JSON.stringify(document)),
    ).toThrow(expect.objectContaining({ kind: 'malformed_response', message: expect.stringMatching(message) as string }));
  });

  test('an issuer that cannot be reached is blocked; one that answers an error is server_error', async () => {
    const down = await serve(() => undefined);
    const url = down.url;
    down.server.close();
    down.server.closeAllConnections();
    servers.splice(servers.indexOf(down.server), 1);
    await expect(fetchIssuerMetadata(`${url}/realms/x`, { timeoutMs: 2_000 })).rejects.toMatchObject({ kind: 'blocked' });

    const failing = await serve((_req, res) => json(res, 503, {}));
    await expect(fetchIssuerMetadata(`${failing.url}/realms/x`)).rejects.toMatchObject({
      kind: 'server_error',
      message: `Discovery document ${failing.url}/realms/x/.well-known/openid-configuration answered 503: check the issuer`,
    });
  });

  test('the mTLS methods use the mTLS alias of the token endpoint when there is one (RFC 8705 §5)', () => {
    const metadata = parseIssuerMetadata(
      'https://iam.example.com',
      'https://iam.example.com/.well-known/openid-configuration',
      JSON.stringify({
        issuer: 'https://iam.example.com',
        token_endpoint: 'https://iam.example.com/token',
        mtls_endpoint_aliases: { token_endpoint: 'https://mtls.iam.example.com/token' },
        token_endpoint_auth_methods_supported: ['private_key_jwt', 'tls_client_auth'],
      }),
    );
    expect(tokenEndpointFor(metadata, true)).toBe('https://mtls.iam.example.com/token');
    expect(tokenEndpointFor(metadata, false)).toBe('https://iam.example.com/token');
    expect(unsupportedMethodProblem(metadata, 'tls_client_auth')).toBeUndefined();
    expect(unsupportedMethodProblem(metadata, 'client_secret_basic')).toBe(
      'https://iam.example.com does not support client_secret_basic (its token_endpoint_auth_methods_supported: private_key_jwt, tls_client_auth)',
    );
  });

  test('the cache reads an issuer once for concurrent callers, keeps it for its time, and does not keep a failure', async () => {
    let now = 0;
    let reads = 0;
    let fail = true;
    const metadata: IssuerMetadata = { issuer: 'i', tokenEndpoint: 'https://t', authMethodsSupported: [], documentUrl: 'd' };
    const cache = new IssuerMetadataCache(
      async () => {
        reads++;
        await new Promise((resolve) => setTimeout(resolve, 10));
        if (fail) throw new Error('unreachable');
        return metadata;
      },
      1_000,
      () => now,
    );

    await expect(cache.get('i')).rejects.toThrow('unreachable');
    fail = false;
    expect(await Promise.all([cache.get('i'), cache.get('i'), cache.get('i')])).toEqual([metadata, metadata, metadata]);
    expect(reads).toBe(2);
    now = 999;
    await cache.get('i');
    expect(reads).toBe(2);
    now = 1_001 + 10;
    await cache.get('i');
    expect(reads).toBe(3);
    // Another proxy or CA is another way to the issuer: read on its own.
    await cache.get('i', { egress: { proxyUrl: 'http://proxy:3128' } });
    expect(reads).toBe(4);
  });
});

describe('the egress proxy', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  test('HTTPS_PROXY and HTTP_PROXY apply by scheme, NO_PROXY exempts hosts, and a registration proxyUrl wins over both', () => {
    process.env.HTTPS_PROXY = 'http://egress:3128';
    process.env.HTTP_PROXY = 'http://plain-egress:3128';
    process.env.NO_PROXY = 'localhost,.internal.example.com,iam.example.org:8443';

    expect(proxyFor(new URL('https://iam.example.com/token'))?.href).toBe('http://egress:3128/');
    expect(proxyFor(new URL('http://iam.example.com/token'))?.href).toBe('http://plain-egress:3128/');
    expect(proxyFor(new URL('https://kc.internal.example.com/token'))).toBeUndefined();
    expect(proxyFor(new URL('https://iam.example.org:8443/token'))).toBeUndefined();
    expect(proxyFor(new URL('https://iam.example.org/token'))?.host).toBe('egress:3128');
    expect(proxyFor(new URL('https://kc.internal.example.com/token'), 'http://team-proxy:8080')?.host).toBe('team-proxy:8080');
    process.env.NO_PROXY = '*';
    expect(proxyFor(new URL('https://iam.example.com/token'))).toBeUndefined();
  });

  test('a proxy is named by scheme, host and port only', () => {
    expect(proxyName(new URL('http://user:s3cret@proxy.example.com:3128/path'))).toBe('http://proxy.example.com:3128');
  });

  test('a proxy that refuses the tunnel is blocked, named in the message without its credentials, and the IAM never sees the request', async () => {
    const iam = await serve((_req, res) => json(res, 200, { access_token: 'x', token_type: 'Bearer' }));
    const proxy = await serve(() => undefined);
    const connects: string[] = [];
    proxy.server.on('connect', (req: IncomingMessage, socket: Socket) => {
      connects.push(req.url ?? '');
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
    });
    const proxyUrl = proxy.url.replace('http://', 'http://alice:pr0xy-pass@');

    const error = await requestToken({
      tokenUrl: `${iam.url}/token`,
      clientId: 'c',
      authMethod: 'client_secret_basic',
      clientSecret: new Secret('a-client-secret'),
      proxyUrl,
      timeoutMs: 5_000,
    }).then(
      () => new Error('expected a failure'),
      (e: unknown) => e as Error,
    );

    expect(error).toMatchObject({ kind: 'blocked' });
    expect(error.message).toBe(
      `Token endpoint could not be reached: Proxy ${proxy.url} refused the tunnel to ${new URL(iam.url).host}: it answered 403 (Forbidden: the proxy does not allow this destination)`,
    );
    expect(error.message).not.toContain('pr0xy-pass');
    expect(connects).toEqual([new URL(iam.url).host]);
    expect(iam.paths).toEqual([]);
  });
});
