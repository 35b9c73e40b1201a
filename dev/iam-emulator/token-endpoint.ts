/**
 * The token endpoint's OAuth logic for the client credentials grant, with Keycloak's choices of
 * status codes, error codes and texts, for the six client authentication methods. No I/O here: the
 * server reads the request, this decides the answer, the server sends it.
 */
import { X509Certificate } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { parseBasicCredentials, type ClientRegistry, type PresentedCredentials, type RegisteredClient } from './clients.js';
import type { ClientAuthMethod, LoggedAssertion, TokenRequestOutcome } from './request-log.js';
import type { TokenStore } from './tokens.js';

/** RFC 7523 §2.2. */
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** A TLS client certificate the connection presented (RFC 8705 §2). */
export interface PresentedCertificate {
  /** DER. */
  raw: Buffer;
  /** Whether it chains to the emulator's client CA (`tls.clientCa`). */
  authorized: boolean;
}

/** A token request as it came in, before anything was checked. */
export interface RawTokenRequest {
  method: string;
  contentType: string | undefined;
  authorization: string | undefined;
  body: string;
  /** The TLS client certificate, when the emulator serves TLS and the client sent one. */
  peerCertificate?: PresentedCertificate | undefined;
}

/**
 * What a token request presented: parsed, not yet checked. It names the client before the
 * client is authenticated, so logs and per-client faults can use it.
 */
export interface TokenRequest {
  method: string;
  /** The form parameters, or why they could not be read. */
  params: Record<string, string> | { unreadable: string };
  basic: PresentedCredentials | 'malformed' | undefined;
  authMethod: ClientAuthMethod;
  /** The client the request names (authenticated or not). */
  clientId: string | undefined;
  /** The client assertion's header and claims (decoded, not yet verified). */
  assertion?: LoggedAssertion;
  peerCertificate?: PresentedCertificate | undefined;
}

/** The answer the token endpoint logic chose. */
export interface TokenAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string>;
  outcome: Extract<
    TokenRequestOutcome,
    'issued' | 'unauthorized_client' | 'invalid_client' | 'invalid_scope' | 'invalid_request' | 'unsupported_grant_type'
  >;
  accessToken?: string;
  /** Whether this counts as a failed client authentication towards an IP block. */
  failedAuthentication: boolean;
}

/** What the token endpoint logic needs from the emulator. */
export interface TokenEndpointContext {
  realm: string;
  /** The realm's issuer URL, for the tokens' `iss` claim. */
  issuer: string;
  clients: ClientRegistry;
  tokens: TokenStore;
  tokenLifetimeSeconds: number;
  /** The tokens' JWT `exp` this long after issue, when it differs from `expires_in`. */
  expClaimLifetimeSeconds: number | undefined;
  omitExpiresIn: boolean;
  /** The token endpoint's URL: an assertion's `aud` may name it or the issuer (RFC 7523 §3). */
  tokenUrl: string;
  /** `jti`s of assertions already used, until they expire (RFC 7523 §3 item 7). */
  usedAssertionIds: Map<string, number>;
  now: number;
}

/** Keycloak's text for a wrong secret and for an unknown or disabled client alike. */
const INVALID_CLIENT_CREDENTIALS = 'Invalid client or Invalid client credentials';

/**
 * Reads the form body and the credentials of a token request.
 * @see RFC 6749 §4.4.2 (request), §2.3.1 (client password), §3.2 (parameters sent once)
 */
export function readTokenRequest(raw: RawTokenRequest, clients: ClientRegistry): TokenRequest {
  const params = readFormParams(raw.contentType, raw.body);
  const basic = parseBasicCredentials(raw.authorization);
  const form = 'unreadable' in params ? {} : params;
  const assertion = form.client_assertion === undefined ? undefined : decodeAssertion(form.client_assertion);
  let clientId = basic !== undefined && basic !== 'malformed' ? basic.clientId : form.client_id;
  if (clientId === undefined && assertion?.sub !== undefined) clientId = assertion.sub;
  let authMethod: ClientAuthMethod = 'none';
  if (basic !== undefined) authMethod = 'client_secret_basic';
  else if (form.client_secret !== undefined) authMethod = 'client_secret_post';
  else if (assertion !== undefined) authMethod = /^HS/.test(assertion.alg ?? '') ? 'client_secret_jwt' : 'private_key_jwt';
  else if (raw.peerCertificate !== undefined) {
    // The request alone does not tell the two mTLS methods apart; the client's registration does.
    const registered = clientId === undefined ? undefined : clients.get(clientId)?.authMethod;
    authMethod = registered === 'self_signed_tls_client_auth' ? registered : 'tls_client_auth';
  }
  return {
    method: raw.method,
    params,
    basic,
    authMethod,
    clientId,
    ...(assertion !== undefined && { assertion }),
    ...(raw.peerCertificate !== undefined && { peerCertificate: raw.peerCertificate }),
  };
}

/** An assertion's header and claims for the log and for finding the client; `{}` when it does not decode. */
function decodeAssertion(jwt: string): LoggedAssertion {
  try {
    const header = decodeProtectedHeader(jwt);
    const claims = decodeJwt(jwt);
    const pick = <T>(value: unknown, type: string) => (typeof value === type ? (value as T) : undefined);
    const fields: LoggedAssertion = {
      alg: pick(header.alg, 'string'),
      kid: pick(header.kid, 'string'),
      iss: pick(claims.iss, 'string'),
      sub: pick(claims.sub, 'string'),
      aud: typeof claims.aud === 'string' || Array.isArray(claims.aud) ? claims.aud : undefined,
      jti: pick(claims.jti, 'string'),
      iat: pick(claims.iat, 'number'),
      exp: pick(claims.exp, 'number'),
    };
    return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
  } catch {
    return {};
  }
}

/**
 * Decides the answer to a token request for the client credentials grant: checks the grant type,
 * authenticates the client, checks the scope, and issues a token.
 *
 * Choices where Keycloak and the RFC leave room (documented for the activity's tests):
 * - no client credentials at all → 401 `invalid_client` with a Basic challenge (RFC 6749 §5.2
 *   lists "no client authentication included" under `invalid_client`);
 * - credentials both in the header and in the body → 400 `invalid_request` (RFC 6749 §2.3: "MUST
 *   NOT use more than one authentication method");
 * - a 401 carries `WWW-Authenticate: Basic realm="<realm>"` unless the client used
 *   `client_secret_post` (RFC 6749 §5.2 requires it when the header was used; Keycloak sends none
 *   for body credentials).
 *
 * @see RFC 6749 §4.4, §5.1, §5.2
 */
export async function answerTokenRequest(request: TokenRequest, context: TokenEndpointContext): Promise<TokenAnswer> {
  if (request.method !== 'POST') {
    return { ...oauthError(405, 'invalid_request', 'HTTP 405 Method Not Allowed'), headers: { Allow: 'POST' } };
  }
  if ('unreadable' in request.params) return oauthError(400, 'invalid_request', request.params.unreadable);
  const params = request.params;

  // Keycloak checks the grant type before it authenticates the client.
  const grantType = params.grant_type;
  if (grantType === undefined) return oauthError(400, 'invalid_request', 'Missing form parameter: grant_type');
  if (grantType !== 'client_credentials') return oauthError(400, 'unsupported_grant_type', 'Unsupported grant_type');

  const authenticated = await authenticateClient(request, params, context);
  if ('status' in authenticated) return authenticated;
  const client = authenticated.client;

  if (!client.serviceAccountsEnabled) {
    return oauthError(401, 'unauthorized_client', 'Client not enabled to retrieve service account', challengeFor(request, context));
  }

  const requested = [...new Set((params.scope ?? '').split(' ').filter((scope) => scope !== ''))];
  if (requested.some((scope) => !client.scopes.includes(scope))) {
    return oauthError(400, 'invalid_scope', `Invalid scopes: ${params.scope ?? ''}`);
  }
  const scope = requested.join(' ');

  const token = context.tokens.issue({
    clientId: client.clientId,
    scope,
    lifetimeSeconds: context.tokenLifetimeSeconds,
    ...(context.expClaimLifetimeSeconds !== undefined && { expClaimLifetimeSeconds: context.expClaimLifetimeSeconds }),
    now: context.now,
    issuer: context.issuer,
    audience: params.audience,
  });
  return {
    status: 200,
    // Keycloak's fields, in Keycloak's order. No refresh token for this grant (RFC 6749 §4.4.3).
    body: {
      access_token: token.accessToken,
      ...(context.omitExpiresIn ? {} : { expires_in: context.tokenLifetimeSeconds }),
      refresh_expires_in: 0,
      token_type: 'Bearer',
      'not-before-policy': 0,
      scope,
    },
    headers: {},
    outcome: 'issued',
    accessToken: token.accessToken,
    failedAuthentication: false,
  };
}

/** The form parameters of a request, for the log: everything but the secret and the assertion. */
export function loggableParams(request: TokenRequest): Record<string, string> | undefined {
  if ('unreadable' in request.params) return undefined;
  const { client_secret: _secret, client_assertion: _assertion, ...rest } = request.params;
  return rest;
}

type Authenticated = { client: RegisteredClient } | TokenAnswer;

/**
 * Authenticates the client with exactly one method: a client secret (Basic or in the body), a
 * client assertion, or the TLS client certificate. A client with an `authMethod` accepts only that
 * one (Keycloak's client authenticator); without, either secret method.
 * @see RFC 6749 §2.3, §2.3.1; RFC 7523 §3; RFC 8705 §2
 */
async function authenticateClient(
  request: TokenRequest,
  params: Record<string, string>,
  context: TokenEndpointContext,
): Promise<Authenticated> {
  const challenge = challengeFor(request, context);
  const { basic } = request;
  if (params.client_assertion !== undefined) {
    if (basic !== undefined || params.client_secret !== undefined) {
      return oauthError(
        400,
        'invalid_request',
        'Use one client authentication method: both a client assertion and a client secret were sent',
      );
    }
    return authenticateAssertion(request, params, context, challenge);
  }
  let presented: PresentedCredentials;
  if (basic !== undefined) {
    if (params.client_secret !== undefined) {
      return oauthError(
        400,
        'invalid_request',
        'Use one client authentication method: credentials were sent both in the Authorization header and in the body',
      );
    }
    if (basic === 'malformed')
      return failedAuthentication(oauthError(401, 'invalid_client', 'Malformed Basic authorization header', challenge));
    // RFC 6749 §3.2.1 lets a client also send client_id in the body; it must be the same client.
    if (params.client_id !== undefined && params.client_id !== basic.clientId) {
      return oauthError(400, 'invalid_request', 'client_id in the body does not match the Authorization header');
    }
    presented = basic;
  } else if (params.client_secret !== undefined) {
    if (params.client_id === undefined) return oauthError(400, 'invalid_request', 'Missing form parameter: client_id');
    presented = { clientId: params.client_id, clientSecret: params.client_secret };
  } else if (params.client_id !== undefined) {
    const known = context.clients.get(params.client_id);
    if (known === undefined || !known.enabled) {
      return failedAuthentication(oauthError(401, 'invalid_client', INVALID_CLIENT_CREDENTIALS, challenge));
    }
    if (known.authMethod === 'tls_client_auth' || known.authMethod === 'self_signed_tls_client_auth') {
      return authenticateCertificate(request, known, challenge);
    }
    // A public client's request: this realm has only confidential clients.
    return failedAuthentication(oauthError(401, 'unauthorized_client', 'Client secret not provided in request', challenge));
  } else {
    return failedAuthentication(
      oauthError(401, 'invalid_client', 'Missing client credentials: use client_secret_basic or client_secret_post', challenge),
    );
  }

  const client = context.clients.get(presented.clientId);
  if (client === undefined || !client.enabled) {
    return failedAuthentication(oauthError(401, 'invalid_client', INVALID_CLIENT_CREDENTIALS, challenge));
  }
  if (client.authMethod !== undefined && client.authMethod !== request.authMethod) {
    return failedAuthentication(oauthError(401, 'invalid_client', `Client authentication must be ${client.authMethod}`, challenge));
  }
  if (client.clientSecret === undefined || presented.clientSecret !== client.clientSecret) {
    return failedAuthentication(oauthError(401, 'unauthorized_client', INVALID_CLIENT_CREDENTIALS, challenge));
  }
  return { client };
}

/**
 * A `client_secret_jwt` or `private_key_jwt` assertion: the right type, a known client that uses
 * this method, a valid signature (the client secret's HMAC, or one of the client's JWKS keys),
 * `iss` = `sub` = the client, `aud` the issuer or the token endpoint, not expired, and a `jti` not
 * used before (RFC 7523 §3 items 1–7). Every failure is a failed login, 401 `invalid_client`.
 */
async function authenticateAssertion(
  request: TokenRequest,
  params: Record<string, string>,
  context: TokenEndpointContext,
  challenge: Record<string, string>,
): Promise<Authenticated> {
  const refuse = (description: string) => failedAuthentication(oauthError(401, 'invalid_client', description, challenge));
  if (params.client_assertion_type !== JWT_BEARER) return oauthError(400, 'invalid_request', `client_assertion_type must be ${JWT_BEARER}`);
  const clientId = request.assertion?.sub;
  if (clientId === undefined) return refuse('The client assertion names no client (sub)');
  if (params.client_id !== undefined && params.client_id !== clientId) {
    return oauthError(400, 'invalid_request', 'client_id in the body does not match the client assertion');
  }
  const client = context.clients.get(clientId);
  if (client === undefined || !client.enabled) return refuse(INVALID_CLIENT_CREDENTIALS);
  if (client.authMethod !== request.authMethod) return refuse(`Client authentication must be ${client.authMethod ?? 'a client secret'}`);
  try {
    const options = {
      issuer: clientId,
      subject: clientId,
      audience: [context.issuer, context.tokenUrl],
      currentDate: new Date(context.now),
      requiredClaims: ['exp', 'jti'],
    };
    const { payload } =
      request.authMethod === 'client_secret_jwt'
        ? await jwtVerify(params.client_assertion!, new TextEncoder().encode(client.clientSecret ?? ''), {
            ...options,
            algorithms: ['HS256', 'HS384', 'HS512'],
          })
        : await jwtVerify(params.client_assertion!, createLocalJWKSet(client.jwks ?? { keys: [] }), options);
    for (const [jti, expiresAt] of context.usedAssertionIds) if (expiresAt <= context.now) context.usedAssertionIds.delete(jti);
    if (context.usedAssertionIds.has(payload.jti!)) return refuse('Token reuse detected: the client assertion jti was used before');
    context.usedAssertionIds.set(payload.jti!, payload.exp! * 1000);
    return { client };
  } catch (error) {
    if (error instanceof joseErrors.JOSEError) return refuse(`Client assertion refused: ${error.message}`);
    throw error;
  }
}

/**
 * An mTLS client (RFC 8705 §2): `tls_client_auth` needs a certificate that chains to the client CA
 * with the registered subject DN; `self_signed_tls_client_auth` one of the registered
 * certificates. No certificate, or another, is a failed login.
 */
function authenticateCertificate(request: TokenRequest, client: RegisteredClient, challenge: Record<string, string>): Authenticated {
  const refuse = (description: string) => failedAuthentication(oauthError(401, 'invalid_client', description, challenge));
  const presented = request.peerCertificate;
  if (presented === undefined) return refuse('No TLS client certificate was presented');
  if (client.authMethod === 'tls_client_auth') {
    if (!presented.authorized) return refuse('The TLS client certificate does not chain to a trusted CA');
    const subject = new X509Certificate(presented.raw).subject.split('\n').join(',');
    if (subject !== client.tlsClientAuthSubjectDn) return refuse(`The TLS client certificate's subject ${subject} is not the client's`);
    return { client };
  }
  const registered = (client.certificates ?? []).some((pem) => new X509Certificate(pem).raw.equals(presented.raw));
  return registered ? { client } : refuse('The TLS client certificate is not one registered for the client');
}

/** The `WWW-Authenticate` challenge of a 401 (see {@link answerTokenRequest} for when). */
function challengeFor(request: TokenRequest, context: TokenEndpointContext): Record<string, string> {
  if (request.authMethod !== 'client_secret_basic' && request.authMethod !== 'none') return {};
  return { 'WWW-Authenticate': `Basic realm="${context.realm}"` };
}

/** An error response (RFC 6749 §5.2) with Keycloak's body shape. */
function oauthError(
  status: number,
  error: Exclude<TokenAnswer['outcome'], 'issued'>,
  description: string,
  headers: Record<string, string> = {},
): TokenAnswer {
  const onlyFor401 = status === 401 ? headers : {};
  return { status, body: { error, error_description: description }, headers: onlyFor401, outcome: error, failedAuthentication: false };
}

function failedAuthentication(answer: TokenAnswer): TokenAnswer {
  return { ...answer, failedAuthentication: true };
}

/**
 * The parameters of an application/x-www-form-urlencoded body, or why they cannot be read.
 * @see RFC 6749 §3.2 ("parameters MUST NOT be included more than once"), Appendix B
 */
function readFormParams(contentType: string | undefined, body: string): Record<string, string> | { unreadable: string } {
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/x-www-form-urlencoded') {
    return { unreadable: 'Content-Type must be application/x-www-form-urlencoded' };
  }
  const entries: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const [name, value] of new URLSearchParams(body)) {
    if (seen.has(name)) return { unreadable: `Duplicated parameter: ${name}` };
    seen.add(name);
    // RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted".
    if (value !== '') entries.push([name, value]);
  }
  // fromEntries defines own properties, so a parameter named __proto__ stays a parameter.
  return Object.fromEntries(entries);
}
