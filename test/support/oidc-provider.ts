// oidc-provider.d.ts shares this file's base name, so tsconfig's `include` skips it (TypeScript takes it
// for this file's emitted declaration); only an explicit reference brings it into the program.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="./oidc-provider.d.ts" />

import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { AuthMethod } from '../../workflows/registration.js';

import Provider, { errors } from 'oidc-provider';
import type { Adapter, AdapterConstructor, AdapterPayload, ClientMetadata, KoaContextWithOIDC } from 'oidc-provider';

/** Client authentication methods at the token endpoint, by their IANA names (RFC 7591 §2). */
export type ClientAuthMethod = AuthMethod;

/** The methods that send a client secret itself. */
export type SecretAuthMethod = 'client_secret_basic' | 'client_secret_post';

/** A client registered with the provider for the client credentials grant. */
export interface OidcProviderClient {
  clientId: string;
  /** The client_secret_* methods' secret. */
  clientSecret?: string;
  /** How the client authenticates at the token endpoint. */
  authMethod: ClientAuthMethod;
  /** Public keys: `private_key_jwt`'s, or `self_signed_tls_client_auth`'s certificate as `x5c` (RFC 8705 §2.2). */
  jwks?: { keys: Array<Record<string, unknown>> };
  /** `tls_client_auth`: the certificate's subject DN, as Node.js prints it with commas (RFC 8705 §2.1.2). */
  tlsClientAuthSubjectDn?: string;
  /**
   * Space-separated scopes the client may be granted.
   * @default {@link DEFAULT_CLIENT_SCOPE}
   */
  scope?: string;
}

export interface StartOidcProviderOptions {
  clients: OidcProviderClient[];
  /**
   * Lifetime of issued access tokens; the token response's `expires_in` equals it.
   * @default 3
   */
  accessTokenTtlSeconds?: number;
  /**
   * Scopes the provider knows. Clients' scopes are always added. A known scope outside a client's
   * `scope` is refused with `invalid_scope`; a scope the provider does not know is silently dropped.
   * @default {@link DEFAULT_PROVIDER_SCOPES}
   */
  scopes?: readonly string[];
  /**
   * Serve HTTPS with this certificate and key, asking every client for a certificate: the mTLS
   * methods need it (features.mTLS). `tls_client_auth` certificates must chain to `clientCa`.
   */
  tls?: { cert: string; key: string; clientCa: string };
}

/** One request that reached the token endpoint, recorded when its response was decided. */
export interface TokenEndpointRequest {
  /** Unix ms when the request arrived. */
  at: number;
  /** From the Basic header (form-urldecoded) or the body's `client_id`; absent if neither was sent. */
  clientId?: string;
  /**
   * How the request tried to authenticate: a Basic header, `client_secret` in the body, a client
   * assertion (HMAC: client_secret_jwt, else private_key_jwt), or a TLS client certificate.
   */
  authMethod?: ClientAuthMethod;
  /** The client assertion's `jti` and lifetime claims, when one was sent. */
  assertion?: { jti?: unknown; iat?: unknown; exp?: unknown; aud?: unknown };
  status: number;
  /** The OAuth error code of an error response (RFC 6749 §5.2). */
  error?: string;
}

export interface OidcProviderFixture {
  /** Issuer identifier, e.g. `http://127.0.0.1:41234`. */
  issuer: string;
  /** The token endpoint (RFC 6749 §3.2). */
  tokenUrl: string;
  /** Every token endpoint request so far, in order of completion. */
  requests: TokenEndpointRequest[];
  close(): Promise<void>;
}

/** @see {@link OidcProviderClient.scope} */
export const DEFAULT_CLIENT_SCOPE = 'api:read api:write';

/** Known to the provider, so a client asking for `api:admin` without holding it gets `invalid_scope`. */
export const DEFAULT_PROVIDER_SCOPES: readonly string[] = ['api:read', 'api:write', 'api:admin'];

const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 3;

/**
 * Starts panva's oidc-provider (a certified OpenID Provider) on 127.0.0.1 with a free port, with the
 * client credentials grant (RFC 6749 §4.4) enabled for the given clients.
 *
 * Quiet by construction: its own signing key and store replace the development defaults that warn.
 */
export async function startOidcProvider(options: StartOidcProviderOptions): Promise<OidcProviderFixture> {
  const ttl = options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  validateOptions(options, ttl);

  const tls = options.tls;
  // Every client is asked for a certificate and none is required: the provider decides per method.
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.clientCa, requestCert: true, rejectUnauthorized: false })
    : createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  const clientScopes = options.clients.flatMap((client) => (client.scope ?? DEFAULT_CLIENT_SCOPE).split(' '));
  const provider = new Provider(issuer, {
    adapter: createMemoryAdapter(),
    jwks: { keys: [generateSigningKey()] },
    clients: options.clients.map(toClientMetadata),
    scopes: [...new Set([...(options.scopes ?? DEFAULT_PROVIDER_SCOPES), ...clientScopes])],
    ttl: { ClientCredentials: ttl },
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'private_key_jwt',
      ...(tls ? (['tls_client_auth', 'self_signed_tls_client_auth'] as const) : []),
    ],
    features: {
      clientCredentials: { enabled: true },
      ...(tls && {
        mTLS: {
          enabled: true,
          tlsClientAuth: true,
          selfSignedTlsClientAuth: true,
          getCertificate: (ctx: KoaContextWithOIDC) => peerCertificatePem(ctx),
          certificateAuthorized: (ctx: KoaContextWithOIDC) => (ctx.socket as TLSSocket).authorized,
          certificateSubjectMatches: (ctx: KoaContextWithOIDC, property: string, expected: string) =>
            property === 'tls_client_auth_subject_dn' && subjectOf(peerCertificatePem(ctx)) === expected,
        },
      }),
      devInteractions: { enabled: false },
      // No resource servers are registered; the default lookup would warn before refusing.
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: () => {
          throw new errors.InvalidTarget();
        },
      },
    },
  });

  const requests: TokenEndpointRequest[] = [];
  provider.use(async (ctx, next) => {
    const at = Date.now();
    await next();
    if (ctx.oidc?.route === 'token') {
      requests.push({ at, ...describeTokenRequest(ctx), status: ctx.status, ...errorCodeOf(ctx) });
    }
  });
  server.on('request', provider.callback());

  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // fetch keeps connections alive; without this close() waits for them to time out.
        server.closeAllConnections();
      }),
  };
}

function validateOptions(options: StartOidcProviderOptions, ttl: number): void {
  const problems: string[] = [];
  if (!Number.isInteger(ttl) || ttl <= 0) {
    problems.push(`accessTokenTtlSeconds must be a positive integer, got ${ttl}`);
  }
  const seen = new Set<string>();
  options.clients.forEach((client, i) => {
    if (seen.has(client.clientId)) {
      problems.push(`clients[${i}].clientId '${client.clientId}' is registered twice`);
    }
    seen.add(client.clientId);
  });
  if (problems.length > 0) {
    throw new TypeError(`startOidcProvider: ${problems.join('; ')}`);
  }
}

function toClientMetadata(client: OidcProviderClient): ClientMetadata {
  return {
    client_id: client.clientId,
    ...(client.clientSecret !== undefined && { client_secret: client.clientSecret }),
    ...(client.jwks !== undefined && { jwks: client.jwks }),
    ...(client.tlsClientAuthSubjectDn !== undefined && { tls_client_auth_subject_dn: client.tlsClientAuthSubjectDn }),
    token_endpoint_auth_method: client.authMethod,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: client.scope ?? DEFAULT_CLIENT_SCOPE,
    // The metadata default is RS256, which the fixture's EC key cannot sign.
    id_token_signed_response_alg: 'ES256',
  };
}

// An EC key generates in about a millisecond, unlike RSA, and saves the dev-keystore warning.
function generateSigningKey(): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'fixture-es256' };
}

function describeTokenRequest(ctx: KoaContextWithOIDC): Pick<TokenEndpointRequest, 'clientId' | 'authMethod' | 'assertion'> {
  const authorization = ctx.headers.authorization;
  if (typeof authorization === 'string' && /^basic /i.test(authorization)) {
    const clientId = basicClientId(authorization.slice('basic '.length));
    return { authMethod: 'client_secret_basic', ...(clientId === undefined ? {} : { clientId }) };
  }
  const form = ctx.oidc?.params ?? ctx.oidc?.body;
  let clientId = typeof form?.client_id === 'string' ? form.client_id : undefined;
  if (typeof form?.client_assertion === 'string') {
    const { alg } = decodeProtectedHeader(form.client_assertion);
    const { jti, iat, exp, aud, sub } = decodeJwt(form.client_assertion);
    clientId ??= sub;
    return {
      authMethod: alg?.startsWith('HS') ? 'client_secret_jwt' : 'private_key_jwt',
      assertion: { jti, iat, exp, aud },
      ...(clientId === undefined ? {} : { clientId }),
    };
  }
  let authMethod: ClientAuthMethod | undefined;
  if (typeof form?.client_secret === 'string') authMethod = 'client_secret_post';
  else if (peerCertificatePem(ctx) !== undefined) {
    // The certificate alone does not tell the two mTLS methods apart: one signed by a CA is tls_client_auth here.
    authMethod = (ctx.socket as TLSSocket).authorized ? 'tls_client_auth' : 'self_signed_tls_client_auth';
  }
  return { ...(clientId === undefined ? {} : { clientId }), ...(authMethod === undefined ? {} : { authMethod }) };
}

/** The TLS client certificate of the request, PEM, as features.mTLS.getCertificate returns it. */
function peerCertificatePem(ctx: KoaContextWithOIDC): string | undefined {
  const socket = ctx.socket as Partial<TLSSocket>;
  const raw = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate().raw : undefined;
  return raw === undefined ? undefined : new X509Certificate(raw).toString();
}

function subjectOf(pem: string | undefined): string | undefined {
  return pem === undefined ? undefined : new X509Certificate(pem).subject.split('\n').join(',');
}

// RFC 6749 §2.3.1: the client id is form-urlencoded before it is joined with the secret.
function basicClientId(credentials: string): string | undefined {
  const decoded = Buffer.from(credentials.trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) {
    return undefined;
  }
  const encoded = decoded.slice(0, colon);
  try {
    return decodeURIComponent(encoded.replaceAll('+', '%20'));
  } catch {
    return encoded;
  }
}

function errorCodeOf(ctx: KoaContextWithOIDC): Pick<TokenEndpointRequest, 'error'> {
  const body = ctx.body;
  if (ctx.status >= 400 && typeof body === 'object' && body !== null && 'error' in body && typeof body.error === 'string') {
    return { error: body.error };
  }
  return {};
}

// Each fixture gets its own store: oidc-provider's built-in memory adapter is shared by every
// provider in the process and warns that it is for development only.
function createMemoryAdapter(): AdapterConstructor {
  const store = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const live = (entry: { payload: AdapterPayload; expiresAt: number } | undefined) =>
    entry !== undefined && entry.expiresAt > Date.now() ? entry.payload : undefined;

  return class MemoryAdapter implements Adapter {
    readonly #model: string;

    constructor(model: string) {
      this.#model = model;
    }

    #key(id: string): string {
      return `${this.#model}:${id}`;
    }

    #findBy(predicate: (payload: AdapterPayload) => boolean): AdapterPayload | undefined {
      for (const [key, entry] of store) {
        const payload = live(entry);
        if (key.startsWith(`${this.#model}:`) && payload !== undefined && predicate(payload)) {
          return payload;
        }
      }
      return undefined;
    }

    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      store.set(this.#key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
      return Promise.resolve();
    }

    find(id: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(live(store.get(this.#key(id))));
    }

    findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(this.#findBy((payload) => payload.userCode === userCode));
    }

    findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return Promise.resolve(this.#findBy((payload) => payload.uid === uid));
    }

    consume(id: string): Promise<void> {
      const payload = live(store.get(this.#key(id)));
      if (payload !== undefined) {
        payload.consumed = Math.floor(Date.now() / 1000);
      }
      return Promise.resolve();
    }

    destroy(id: string): Promise<void> {
      store.delete(this.#key(id));
      return Promise.resolve();
    }

    revokeByGrantId(grantId: string): Promise<void> {
      for (const [key, entry] of store) {
        if (entry.payload.grantId === grantId) {
          store.delete(key);
        }
      }
      return Promise.resolve();
    }
  };
}
