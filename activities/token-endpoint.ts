/**
 * The token endpoint client: the client credentials grant (RFC 6749 §4.4), or the JWT-bearer grant
 * (RFC 7523 §2.1, {@link authorizationGrant}), in steps named after the specs, {@link
 * clientAuthentication} (with {@link clientAssertion} for the JWT methods), then
 * {@link clientCredentialsGrantRequest} and {@link processClientCredentialsResponse}, and
 * {@link requestToken} which runs them all. The request reaches the IAM the way shared/egress.ts
 * says (proxy, CA, TLS client certificate). Every failure becomes a {@link TokenEndpointError}
 * whose `kind` follows docs/design.md, "Failures"; the pure classifiers ({@link
 * classifyErrorResponse}, {@link classifyRequestError}, {@link parseRetryAfter}) are exported for
 * unit tests.
 *
 * Retrying is the workflow's decision alone: got never retries, never follows redirects, and never
 * reads more than `maxBodyBytes` of an answer.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import got, { TimeoutError } from 'got';
import { decodeJwt, SignJWT } from 'jose';
import { AUTH_METHODS, GRANT_TYPES, RESERVED_EXTRA_PARAMS } from '../workflows/registration.js';
import type { EndpointDownKind } from '../workflows/failures.js';
import { describeConnectionFailure, egressOptions } from '../shared/egress.js';
import { AccessToken } from './access-token.js';
import type { Secret } from '../shared/references.js';
import { TokenEndpointError } from './errors.js';
import type { AssertionSigningKey, RequestCredentials } from './request-credentials.js';
import { DEFAULT_MAX_BODY_BYTES, TokenEndpointResponse } from './token-endpoint-response.js';

/** @see {@link ClientCredentialsRequest.timeoutMs} */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** The longest `expires_in` accepted: 10 years. Anything longer is a bug or a unit mix-up. */
export const MAX_EXPIRES_IN_SECONDS = 10 * 365 * 24 * 60 * 60;

/** How long a client assertion is valid: its `exp` is at most this far after its `iat`. */
export const ASSERTION_LIFETIME_SECONDS = 60;

/** The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2). */
export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * A client credentials token request: who asks and with which credentials (resolved on the worker,
 * activities/request-credentials.ts), where, through which network, and within which limits.
 */
export interface ClientCredentialsRequest extends RequestCredentials {
  /** The token endpoint, `http:` or `https:` (RFC 6749 §3.2); for the mTLS methods, maybe its mTLS alias (RFC 8705 §5). */
  tokenUrl: string;
  /** The assertion's `aud`, when the IAM wants another than `tokenUrl` (e.g. its issuer). @default tokenUrl */
  assertionAudience?: string;
  /** The registration's proxy, instead of the environment's (shared/egress.ts). */
  proxyUrl?: string;
  /** Space-delimited scope (RFC 6749 §3.3); omitted from the request when undefined or empty. */
  scope?: string;
  /**
   * Extra form parameters, e.g. `audience` or `resource` (RFC 8707). They may not set
   * `grant_type`, `client_id`, `client_secret` or `scope`.
   */
  extraParams?: Record<string, string>;
  /**
   * Budget for the whole exchange, from the first DNS lookup to the last byte of the answer.
   * Connecting (lookup, TCP connect, TLS handshake) gets half of it per phase, so a connection
   * that cannot be set up is reported as such, not as a slow answer.
   * @default 10_000
   */
  timeoutMs?: number;
  /** The largest answer body read; a larger body is not buffered. @default 65_536 */
  maxBodyBytes?: number;
  /** Aborts the request, e.g. the activity's cancellation signal. */
  signal?: AbortSignal;
}

/**
 * A successful token response, parsed and checked. The token is an {@link AccessToken}, which
 * prints as `[redacted]`.
 *
 * @see RFC 6749 §5.1
 */
export interface TokenResponse {
  accessToken: AccessToken;
  /** Always `'Bearer'` (normalized: servers may send it in any case). */
  tokenType: 'Bearer';
  /** `expires_in` in whole seconds; undefined when the server sent none (RFC 6749 §5.1: RECOMMENDED). */
  expiresInSeconds: number | undefined;
  /** The granted scope; undefined when the server sent none (then it is the requested scope). */
  scope: string | undefined;
  /**
   * The access token's own `exp` (Unix ms) when it is a JWT that has one: decoded, never verified
   * (the token is the resource server's to verify), so it only ever shortens the lifetime.
   */
  jwtExpiresAt: number | undefined;
  /** When the request was sent (Unix ms). */
  requestStartedAt: number;
  /** When the response arrived (Unix ms). */
  receivedAt: number;
}

// -------------------------------------------------------------------------------------------------
// Step 1: the token request
// -------------------------------------------------------------------------------------------------

/**
 * Encodes a client identifier or password with the `application/x-www-form-urlencoded` algorithm,
 * as RFC 6749 §2.3.1 requires before joining them for HTTP Basic authentication (Appendix B).
 *
 * This is the WHATWG serializer (what `URLSearchParams` and Java's `URLEncoder`, which Keycloak
 * decodes with, produce): every byte but `A–Z a–z 0–9 * - . _` is percent-encoded, space becomes
 * `+`. oauth4webapi also encodes `* - . _`; any server that decodes reads both the same, but
 * servers that do not decode (older Keycloak) still accept the common `my-service` client IDs.
 *
 * @see RFC 6749 §2.3.1, Appendix B
 */
export function formUrlEncode(value: string): string {
  // encodeURIComponent leaves `! ' ( ) ~` alone, the form serializer does not.
  return encodeURIComponent(value)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/**
 * The `Authorization` header value for `client_secret_basic`.
 *
 * @see RFC 6749 §2.3.1
 * @see RFC 7617 §2
 */
export function clientSecretBasic(clientId: string, clientSecret: Secret): string {
  const credentials = `${formUrlEncode(clientId)}:${formUrlEncode(clientSecret.reveal())}`;
  return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
}

/** Parameters the grant sets itself; letting `extraParams` replace them would change the grant. */
const RESERVED_PARAMS: ReadonlySet<string> = new Set(RESERVED_EXTRA_PARAMS);

/** A bad argument: the caller's bug, raised before any I/O. {@link requestToken} lets it through. */
class InvalidTokenRequestError extends TypeError {}

/**
 * How one request authenticates the client: the header or form parameters it adds, the TLS client
 * certificate it presents, and the values it sends that must never be echoed in an error.
 */
export interface ClientAuthentication {
  headers: Record<string, string>;
  params: Record<string, string>;
  clientCertificate?: { certificate: string; key: string };
  /** Every credential as it goes on the wire: replaced by `[redacted]` wherever a server echoes one. */
  sensitive: string[];
}

/**
 * Client authentication for one token request, per `authMethod`:
 * - `client_secret_basic`: HTTP Basic of the form-urlencoded ID and secret (RFC 6749 §2.3.1);
 * - `client_secret_post`: `client_id` and `client_secret` in the body (RFC 6749 §2.3.1);
 * - `client_secret_jwt`, `private_key_jwt`: `client_assertion` and `client_assertion_type` (RFC 7523
 *   §2.2, OpenID Connect Core §9), a fresh assertion per request ({@link clientAssertion}) or the
 *   one a platform minted, and `client_id` (RFC 7521 §4.2 allows it; some IAMs need it);
 * - `tls_client_auth`, `self_signed_tls_client_auth`: `client_id` in the body and the client
 *   certificate in the TLS handshake (RFC 8705 §2).
 *
 * @throws TypeError when the credentials the method needs are missing (a bug: nothing is sent).
 */
export async function clientAuthentication(request: ClientCredentialsRequest): Promise<ClientAuthentication> {
  const { clientId, clientSecret, signingKey, clientCertificate } = request;
  const missing = (what: string) => new InvalidTokenRequestError(`${request.authMethod} needs ${what}`);
  switch (request.authMethod) {
    case 'client_secret_basic': {
      if (clientSecret === undefined) throw missing('clientSecret');
      const authorization = clientSecretBasic(clientId, clientSecret);
      return { headers: { authorization }, params: {}, sensitive: secretForms(clientSecret, authorization) };
    }
    case 'client_secret_post':
      if (clientSecret === undefined) throw missing('clientSecret');
      return { headers: {}, params: { client_id: clientId, client_secret: clientSecret.reveal() }, sensitive: secretForms(clientSecret) };
    case 'client_secret_jwt':
    case 'private_key_jwt': {
      if (signingKey === undefined && request.mintedAssertion === undefined) throw missing('signingKey');
      // An assertion the platform minted is sent as it is: the worker signs nothing (RFC 7523 §2.2).
      const assertion = request.mintedAssertion?.jwt.reveal() ?? (await clientAssertion(request));
      return {
        headers: {},
        params: { client_id: clientId, client_assertion_type: JWT_BEARER_ASSERTION_TYPE, client_assertion: assertion },
        sensitive: [assertion, ...(clientSecret === undefined ? [] : secretForms(clientSecret))],
      };
    }
    case 'tls_client_auth':
    case 'self_signed_tls_client_auth':
      if (clientCertificate === undefined) throw missing('clientCertificate');
      return {
        headers: {},
        params: { client_id: clientId },
        clientCertificate: { certificate: clientCertificate.certificate, key: clientCertificate.key.reveal() },
        sensitive: [],
      };
    default:
      throw new InvalidTokenRequestError(`authMethod must be one of ${AUTH_METHODS.join(', ')}`);
  }
}

/**
 * A JWT client assertion, signed with `signingKey` (jose): `iss` = `sub` = the client ID, `aud` =
 * `assertionAudience` or the token endpoint URL, a random `jti` on every call (RFC 7523 §3 lets the
 * IAM refuse a reused one), `iat` now and `exp` {@link ASSERTION_LIFETIME_SECONDS} later; the
 * header names `alg` and, when known, `kid`.
 *
 * @see RFC 7523 §2.2, §3
 * @see OpenID Connect Core 1.0 §9
 */
export async function clientAssertion(request: ClientCredentialsRequest, now = Date.now()): Promise<string> {
  const signingKey = request.signingKey;
  if (signingKey === undefined) throw new InvalidTokenRequestError(`${request.authMethod} needs signingKey`);
  return signAssertion(signingKey, request.clientId, request.clientId, request.assertionAudience ?? request.tokenUrl, now);
}

/**
 * The grant of one token request: `grant_type=client_credentials` (RFC 6749 §4.4.2), or with
 * {@link RequestCredentials.grantAssertion} the JWT-bearer grant (RFC 7523 §2.1) and its
 * `assertion`: the one a platform minted as it is, or a fresh one signed like {@link
 * clientAssertion} but with `sub` the configured subject.
 *
 * @see RFC 7523 §2.1, §3
 */
export async function authorizationGrant(request: ClientCredentialsRequest, now = Date.now()): Promise<AuthorizationGrant> {
  const assertion = request.grantAssertion;
  if (assertion === undefined) return { params: { grant_type: GRANT_TYPES.client_credentials }, sensitive: [] };
  const jwt =
    'minted' in assertion
      ? assertion.minted.jwt.reveal()
      : await signAssertion(assertion.signingKey, request.clientId, assertion.subject, request.assertionAudience ?? request.tokenUrl, now);
  return { params: { grant_type: GRANT_TYPES['jwt-bearer'], assertion: jwt }, sensitive: [jwt] };
}

/** The form parameters of a grant, and the values among them never to echo (its assertion). */
export interface AuthorizationGrant {
  params: Record<string, string>;
  sensitive: string[];
}

/** A JWT for RFC 7523 §3: a random `jti` every time (the IAM may refuse a reused one), valid {@link ASSERTION_LIFETIME_SECONDS}. */
function signAssertion(signingKey: AssertionSigningKey, issuer: string, subject: string, audience: string, now: number): Promise<string> {
  const issuedAt = Math.floor(now / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: signingKey.alg, ...(signingKey.kid !== undefined && { kid: signingKey.kid }) })
    .setIssuer(issuer)
    .setSubject(subject)
    .setAudience(audience)
    .setJti(randomUUID())
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + ASSERTION_LIFETIME_SECONDS)
    .sign(signingKey.key);
}

/** The forms a secret goes on the wire in (as is, form-urlencoded, inside a Basic header). */
function secretForms(secret: Secret, authorization?: string): string[] {
  const value = secret.reveal();
  return [value, formUrlEncode(value), ...(authorization === undefined ? [] : [authorization.slice('Basic '.length)])];
}

/**
 * Sends the client credentials token request and reads the answer, whatever its status.
 *
 * A `POST` with an `application/x-www-form-urlencoded` body `grant_type=client_credentials`
 * (+ `scope`, + extra parameters), client authentication per `authMethod` ({@link
 * clientAuthentication}, computed here unless given), `Accept: application/json`. No retries, no redirects (a token endpoint that redirects is misconfigured,
 * and following would hand the credentials to another URL), a time budget, and a body size limit
 * enforced while streaming.
 *
 * @throws TypeError when an argument is invalid (nothing is sent).
 * @throws {@link TokenEndpointError} `blocked` when no answer came (reset, refused, timeout, TLS
 *   handshake failure, DNS), `server_error` for anything unexpected.
 * @throws the signal's reason when `signal` aborted the request.
 * @see RFC 6749 §4.4.2
 */
export async function clientCredentialsGrantRequest(
  request: ClientCredentialsRequest,
  authentication?: ClientAuthentication,
  grant?: AuthorizationGrant,
): Promise<TokenEndpointResponse> {
  const url = parseTokenUrl(request.tokenUrl);
  if (typeof request.clientId !== 'string' || request.clientId === '') {
    throw new InvalidTokenRequestError('clientId must be a non-empty string');
  }
  const timeoutMs = request.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 2_147_483_647) {
    throw new InvalidTokenRequestError('timeoutMs must be a positive integer (milliseconds)');
  }
  const maxBodyBytes = request.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes <= 0) {
    throw new InvalidTokenRequestError('maxBodyBytes must be a positive integer');
  }

  const auth = authentication ?? (await clientAuthentication(request));
  const { params } = grant ?? (await authorizationGrant(request));
  const form = new URLSearchParams({ ...params, ...auth.params });
  const headers: Record<string, string> = {
    accept: 'application/json',
    'content-type': 'application/x-www-form-urlencoded',
    'user-agent': 'token-lifecycle-worker',
    ...auth.headers,
  };
  if (request.scope !== undefined && request.scope !== '') {
    form.set('scope', request.scope);
  }
  for (const [name, value] of Object.entries(request.extraParams ?? {})) {
    if (RESERVED_PARAMS.has(name)) {
      throw new InvalidTokenRequestError(`extraParams.${name} is not allowed: "${name}" is set by the grant itself`);
    }
    if (typeof value !== 'string') {
      throw new InvalidTokenRequestError(`extraParams.${name} must be a string`);
    }
    form.set(name, value);
  }

  const connectMs = Math.ceil(timeoutMs / 2);
  const requestStartedAt = Date.now();
  const stream = got.stream(url, {
    method: 'POST',
    headers,
    body: form.toString(),
    retry: { limit: 0 },
    throwHttpErrors: false,
    followRedirect: false,
    timeout: { lookup: connectMs, connect: connectMs, secureConnect: connectMs, response: timeoutMs, request: timeoutMs },
    signal: request.signal,
    ...egressOptions(url, { proxyUrl: request.proxyUrl, trustedCa: request.trustedCa, clientCertificate: auth.clientCertificate }),
  });
  // got may report a late failure (e.g. a timer racing the end of the body) after we stopped
  // listening; without a listener that would crash the worker. Failures we wait for still reach
  // `once` and the async iterator below, which track the stream's state themselves.
  stream.on('error', () => {});

  try {
    const [head] = (await once(stream, 'response')) as [{ statusCode: number; headers: IncomingHttpHeaders }];
    const receivedAt = Date.now();
    const chunks: Buffer[] = [];
    let size = 0;
    let oversized = false;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBodyBytes) {
        // Leaving the loop destroys the stream: the rest of the body is never read.
        oversized = true;
        break;
      }
      chunks.push(chunk);
    }
    return new TokenEndpointResponse({
      status: head.statusCode,
      headers: head.headers,
      body: oversized ? '' : Buffer.concat(chunks).toString('utf8'),
      requestStartedAt,
      receivedAt,
      oversized,
      maxBodyBytes,
    });
  } catch (error) {
    if (request.signal?.aborted) {
      // Cancellation is the caller's decision, not an IAM failure: give back what they aborted with.
      throw request.signal.reason;
    }
    throw classifyRequestError(error);
  } finally {
    stream.destroy();
  }
}

function parseTokenUrl(tokenUrl: string): URL {
  let url: URL;
  try {
    url = new URL(tokenUrl);
  } catch {
    throw new InvalidTokenRequestError('tokenUrl must be an absolute http: or https: URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidTokenRequestError(`tokenUrl must be an http: or https: URL, got ${url.protocol}`);
  }
  // got would send URL credentials as its own Basic header, next to or instead of the client's.
  if (url.username !== '' || url.password !== '') {
    throw new InvalidTokenRequestError('tokenUrl must not contain credentials');
  }
  return url;
}

// -------------------------------------------------------------------------------------------------
// Step 2: the token response
// -------------------------------------------------------------------------------------------------

/**
 * Checks the token endpoint's answer: the status first, then each field of the JSON body.
 *
 * Tolerates real servers: `expires_in` as a numeric string (`"300"`), `token_type` in any case
 * (`"bearer"`), a fractional `expires_in` (whole seconds are kept), any `Content-Type` as long as
 * the body parses as JSON. Rejects `expires_in` of 0: a token that is already expired would make
 * the workflow renew in a tight loop, which is what gets an IP blocked.
 *
 * @throws {@link TokenEndpointError} per {@link classifyErrorResponse} when the status is not
 *   200; `malformed_response` when a 200 body is not a usable Bearer token response.
 * @see RFC 6749 §5.1 (successful response), §5.2 (error response)
 * @see RFC 6750 §4 (the Bearer token type)
 */
export function processClientCredentialsResponse(response: TokenEndpointResponse): TokenResponse {
  if (response.status !== 200) {
    throw classifyErrorResponse(response);
  }
  const malformed = (message: string) => new TokenEndpointError('malformed_response', message, { status: response.status }, response);

  if (response.oversized) {
    throw malformed(`"response" body must not be larger than ${response.maxBodyBytes} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(response.body);
  } catch {
    throw malformed('failed to parse "response" body as JSON');
  }
  if (!isJsonObject(json)) {
    throw malformed('"response" body must be a top level object');
  }

  const accessToken = json.access_token;
  if (typeof accessToken !== 'string' || accessToken === '') {
    throw malformed('"response" body "access_token" property must be a non-empty string');
  }
  // The token goes into an HTTP header (RFC 6750 §2.1): a control character or space would break
  // or inject headers in every consumer.
  if (!/^[\x21-\x7E]+$/.test(accessToken)) {
    throw malformed('"response" body "access_token" property must contain only visible ASCII characters');
  }

  const tokenType = json.token_type;
  if (typeof tokenType !== 'string') {
    throw malformed('"response" body "token_type" property must be a string');
  }
  if (tokenType.toLowerCase() !== 'bearer') {
    throw malformed(`"response" body "token_type" property must be "Bearer" (case-insensitive), got ${printable(tokenType)}`);
  }

  const expiresInSeconds = parseExpiresIn(json.expires_in);
  if (expiresInSeconds === null) {
    throw malformed(`"response" body "expires_in" property must be a positive number of seconds, at most ${MAX_EXPIRES_IN_SECONDS}`);
  }

  const scope = json.scope;
  if (scope !== undefined && typeof scope !== 'string') {
    throw malformed('"response" body "scope" property must be a string');
  }

  return {
    accessToken: new AccessToken(accessToken),
    tokenType: 'Bearer',
    expiresInSeconds,
    scope,
    jwtExpiresAt: jwtExpiry(accessToken),
    requestStartedAt: response.requestStartedAt,
    receivedAt: response.receivedAt,
  };
}

/**
 * The `exp` of an access token that is a JWT (RFC 9068 §2.2, RFC 7519 §4.1.4), in Unix ms; undefined
 * for an opaque token, an encrypted one, or a JWT without a numeric `exp`. Decoded with jose,
 * never verified: it can only make the worker renew earlier, never keep a token longer.
 */
export function jwtExpiry(accessToken: string): number | undefined {
  if (accessToken.split('.').length !== 3) return undefined;
  try {
    const { exp } = decodeJwt(accessToken);
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** `undefined` when absent, `null` when unusable, whole seconds otherwise. */
function parseExpiresIn(value: unknown): number | undefined | null {
  if (value === undefined) return undefined;
  let seconds: number;
  if (typeof value === 'number') {
    seconds = value;
  } else if (typeof value === 'string' && /^\d+$/.test(value)) {
    seconds = Number(value);
  } else {
    return null;
  }
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > MAX_EXPIRES_IN_SECONDS) return null;
  return Math.floor(seconds);
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// -------------------------------------------------------------------------------------------------
// Classification (pure)
// -------------------------------------------------------------------------------------------------

/**
 * OAuth `error` codes that say "try again later" rather than "you are refused" (RFC 6749 §4.1.2.1
 * defines them for the authorization endpoint; some servers use them at the token endpoint too).
 */
const TRANSIENT_OAUTH_ERRORS: ReadonlySet<string> = new Set(['server_error', 'temporarily_unavailable']);

/**
 * Whether `error` says the token endpoint is down for everyone, and as which kind (docs/design.md,
 * "The IAM is never hammered"): a 429, a connection-level failure (`blocked`), a 5xx, or an OAuth
 * `server_error` / `temporarily_unavailable`. Not a request held back before it was sent, nor an
 * answer that only judges this client or this response (a proxy's 400/403 page, a redirect, a
 * malformed 200).
 */
export function endpointDownKind(error: unknown): EndpointDownKind | undefined {
  if (!(error instanceof TokenEndpointError) || error.details.heldBack === true) return undefined;
  if (error.kind === 'rate_limited' || error.kind === 'blocked') return error.kind;
  const { status, oauthError } = error.details;
  const down = (status !== undefined && status >= 500) || (oauthError !== undefined && TRANSIENT_OAUTH_ERRORS.has(oauthError));
  return error.kind === 'server_error' && down ? 'server_error' : undefined;
}

/**
 * Classifies an answer other than 200 into a {@link TokenEndpointError} (docs/design.md,
 * "Failures"):
 *
 * - 429 → `rate_limited`, with `retryAfterMs` from `Retry-After` when it parses;
 * - 400, 401 or 403 with an OAuth `error` code (RFC 6749 §5.2: `invalid_request`,
 *   `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
 *   `invalid_scope`, or an extension code such as `invalid_target`) → `credentials_rejected`:
 *   sending the same request again would be refused again, and repeated failed logins get the IP
 *   blocked. `server_error` and `temporarily_unavailable` are the exception (→ `server_error`);
 * - 401 without an OAuth error → `credentials_rejected`: at the token endpoint a 401 means the
 *   client authentication failed (RFC 6749 §5.2, `invalid_client`);
 * - 400 or 403 without an OAuth error → `server_error`: typically a proxy's or firewall's page,
 *   not the IAM judging the client;
 * - 3xx (redirects are not followed), 5xx and any other status → `server_error`.
 *
 * `retryAfterMs` is reported for every status that carries a valid `Retry-After` (e.g. 503).
 *
 * @see RFC 6749 §5.2
 * @see RFC 9110 §15.5.20 (429), §10.2.3 (Retry-After)
 */
export function classifyErrorResponse(response: TokenEndpointResponse): TokenEndpointError {
  const { status } = response;
  const retryAfterMs = parseRetryAfter(response.headers['retry-after'], response.receivedAt);
  const answered = `Token endpoint answered ${status}${STATUS_CODES[status] ? ` ${STATUS_CODES[status]}` : ''}`;
  const fail = (kind: 'rate_limited' | 'credentials_rejected' | 'server_error', message: string, oauthError?: string) =>
    new TokenEndpointError(kind, message, { status, oauthError, retryAfterMs }, response);

  if (status === 429) {
    return fail('rate_limited', retryAfterMs === undefined ? answered : `${answered}, Retry-After ${retryAfterMs} ms`);
  }
  if (status === 400 || status === 401 || status === 403) {
    const oauth = parseOAuthError(response.body);
    if (oauth !== undefined) {
      const kind = TRANSIENT_OAUTH_ERRORS.has(oauth.error) ? 'server_error' : 'credentials_rejected';
      const description = oauth.description === undefined ? '' : `: ${oauth.description}`;
      return fail(kind, `Token endpoint answered ${status} ${oauth.error}${description}`, oauth.error);
    }
    if (status === 401) {
      return fail('credentials_rejected', `${answered} without an OAuth error code: the client authentication was refused`);
    }
    return fail('server_error', `${answered} without an OAuth error code`);
  }
  if (status >= 300 && status < 400) {
    return fail('server_error', `${answered}: redirects are not followed, tokenUrl must name the token endpoint itself`);
  }
  return fail('server_error', answered);
}

/** RFC 6749 §5.2: `error` and `error_description` use %x20-21 / %x23-5B / %x5D-7E only. */
const OAUTH_ERROR_CODE = /^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$/;
const MAX_DESCRIPTION_LENGTH = 200;

/**
 * The `error` and `error_description` of an error response, or undefined when the body is not one.
 * The description is shown to operators, so it is cut short and stripped of anything that could
 * forge a log line.
 *
 * @see RFC 6749 §5.2
 */
export function parseOAuthError(body: string): { error: string; description?: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (!isJsonObject(json) || typeof json.error !== 'string' || !OAUTH_ERROR_CODE.test(json.error)) {
    return undefined;
  }
  const description = json.error_description;
  if (typeof description !== 'string' || description === '') {
    return { error: json.error };
  }
  const cleaned = description.replace(/[^\x20-\x7E]/g, '?');
  return {
    error: json.error,
    description: cleaned.length > MAX_DESCRIPTION_LENGTH ? `${cleaned.slice(0, MAX_DESCRIPTION_LENGTH)}…` : cleaned,
  };
}

const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const LONG_DAY = '(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)';
const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = '\\d{2}:\\d{2}:\\d{2}';
/** The three HTTP-date forms a recipient must accept (RFC 9110 §5.6.7). */
const IMF_FIXDATE = new RegExp(`^${DAY}, \\d{2} ${MONTH} \\d{4} ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^${LONG_DAY}, \\d{2}-${MONTH}-\\d{2} ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} [ \\d]\\d ${TIME} \\d{4}$`);

/**
 * Parses `Retry-After` into milliseconds from `now` (when the answer came): delta-seconds
 * (`"120"`) or an HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`, and the two obsolete forms). A
 * date in the past gives 0. Anything else (negative or fractional numbers, other date formats)
 * gives undefined: the header is then treated as absent, as RFC 9110 allows for invalid fields.
 *
 * An HTTP-date is the server's clock, `now` ours: skew between them shifts the result.
 *
 * @see RFC 9110 §10.2.3, §5.6.7
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) {
    const ms = Number(text) * 1000;
    return Number.isFinite(ms) ? ms : undefined;
  }
  let date: number;
  if (IMF_FIXDATE.test(text) || RFC850_DATE.test(text)) {
    date = Date.parse(text);
  } else if (ASCTIME_DATE.test(text)) {
    // asctime has no zone, and Date.parse would read it as local time; HTTP dates are GMT.
    date = Date.parse(`${text} GMT`);
  } else {
    return undefined;
  }
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Classifies a failure to get any answer: a connection reset, refused or cut, a TLS handshake
 * failure, a DNS failure, a proxy that could not tunnel, or a timeout in any phase (a hang) →
 * `blocked`; anything else (an unparseable HTTP answer, a bug) → `server_error`. The message names
 * the cause (error code and Node.js message, the proxy without its credentials), never request
 * headers or body.
 *
 * @see docs/design.md, "Failures"
 */
export function classifyRequestError(error: unknown): TokenEndpointError {
  if (error instanceof TimeoutError) {
    return new TokenEndpointError('blocked', `Token endpoint did not answer in time: ${error.message}`);
  }
  const { kind, cause } = describeConnectionFailure(error);
  if (kind === 'blocked') return new TokenEndpointError('blocked', `Token endpoint could not be reached: ${cause}`);
  return new TokenEndpointError('server_error', `Token request failed unexpectedly: ${cause}`);
}

/** A value shown in a message only when it is short and plain; otherwise just its size. */
function printable(value: string): string {
  return /^[\x20-\x7E]{0,32}$/.test(value) ? JSON.stringify(value) : `a ${value.length}-character value`;
}

// -------------------------------------------------------------------------------------------------
// Both steps
// -------------------------------------------------------------------------------------------------

/**
 * Requests a token with the client credentials grant: {@link clientCredentialsGrantRequest}, then
 * {@link processClientCredentialsResponse}. Failures are {@link TokenEndpointError}s only
 * (unexpected ones become `server_error`), and any echo of the client secret in a server-provided
 * text (an `error_description`) is replaced by `[redacted]`.
 *
 * @throws {@link TokenEndpointError} for every failure of the exchange.
 * @throws TypeError when an argument is invalid (a bug: nothing is sent).
 * @throws the signal's reason when `signal` aborted the request.
 * @see RFC 6749 §4.4
 */
export async function requestToken(request: ClientCredentialsRequest): Promise<TokenResponse> {
  let authentication: ClientAuthentication | undefined;
  let grant: AuthorizationGrant | undefined;
  try {
    authentication = await clientAuthentication(request);
    grant = await authorizationGrant(request);
    return processClientCredentialsResponse(await clientCredentialsGrantRequest(request, authentication, grant));
  } catch (error) {
    if (error instanceof InvalidTokenRequestError) throw error;
    if (request.signal?.aborted && error === request.signal.reason) throw error;
    const failure = error instanceof TokenEndpointError ? error : classifyRequestError(error);
    const sensitive = [...(authentication?.sensitive ?? []), ...(grant?.sensitive ?? [])];
    throw withDerivedKidHint(withoutCredentials(failure, sensitive), request);
  }
}

/**
 * A refused `private_key_jwt` assertion whose `kid` the worker derived (the RFC 7638 thumbprint):
 * the usual cause is an IAM that registered the key under another `kid`, so the message says so
 * and names the fix.
 */
function withDerivedKidHint(error: TokenEndpointError, request: ClientCredentialsRequest): TokenEndpointError {
  const signing = request.signingKey;
  const refused = error.kind === 'credentials_rejected' && (error.details.oauthError ?? 'invalid_client') === 'invalid_client';
  if (request.authMethod !== 'private_key_jwt' || signing?.kidSource !== 'thumbprint' || !refused) return error;
  const hint =
    `; the assertion's kid ${signing.kid} is the RFC 7638 thumbprint of the key, derived because neither keyId nor the JWK names one:` +
    ' if the IAM registered the key under another kid, set keyId to it';
  return new TokenEndpointError(error.kind, `${error.message}${hint}`, error.details, error.response);
}

/** Replaces every credential, in every form it was sent in, wherever a server echoed it into the error. */
function withoutCredentials(error: TokenEndpointError, sensitive: readonly string[]): TokenEndpointError {
  const forms = sensitive.filter((form) => form !== '');
  if (forms.length === 0) return error;
  const redact = (text: string) => forms.reduce((result, form) => result.replaceAll(form, '[redacted]'), text);
  const message = redact(error.message);
  const oauthError = error.details.oauthError === undefined ? undefined : redact(error.details.oauthError);
  if (message === error.message && oauthError === error.details.oauthError) return error;
  return new TokenEndpointError(error.kind, message, { ...error.details, oauthError }, error.response);
}
