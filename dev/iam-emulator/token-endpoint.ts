/**
 * The token endpoint's OAuth logic for the client credentials grant, with Keycloak's choices of
 * status codes, error codes and texts. No I/O here: the server reads the request, this decides
 * the answer, the server sends it.
 */
import { parseBasicCredentials, type ClientRegistry, type PresentedCredentials } from './clients.js';
import type { ClientAuthMethod, TokenRequestOutcome } from './request-log.js';
import type { TokenStore } from './tokens.js';

/** A token request as it came in, before anything was checked. */
export interface RawTokenRequest {
  method: string;
  contentType: string | undefined;
  authorization: string | undefined;
  body: string;
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
  omitExpiresIn: boolean;
  now: number;
}

/** Keycloak's text for a wrong secret and for an unknown or disabled client alike. */
const INVALID_CLIENT_CREDENTIALS = 'Invalid client or Invalid client credentials';

/**
 * Reads the form body and the credentials of a token request.
 * @see RFC 6749 §4.4.2 (request), §2.3.1 (client password), §3.2 (parameters sent once)
 */
export function readTokenRequest(raw: RawTokenRequest): TokenRequest {
  const params = readFormParams(raw.contentType, raw.body);
  const basic = parseBasicCredentials(raw.authorization);
  const form = 'unreadable' in params ? {} : params;
  let authMethod: ClientAuthMethod = 'none';
  if (basic !== undefined) authMethod = 'client_secret_basic';
  else if (form.client_secret !== undefined) authMethod = 'client_secret_post';
  const clientId = basic !== undefined && basic !== 'malformed' ? basic.clientId : form.client_id;
  return { method: raw.method, params, basic, authMethod, clientId };
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
export function answerTokenRequest(request: TokenRequest, context: TokenEndpointContext): TokenAnswer {
  if (request.method !== 'POST') {
    return { ...oauthError(405, 'invalid_request', 'HTTP 405 Method Not Allowed'), headers: { Allow: 'POST' } };
  }
  if ('unreadable' in request.params) return oauthError(400, 'invalid_request', request.params.unreadable);
  const params = request.params;

  // Keycloak checks the grant type before it authenticates the client.
  const grantType = params.grant_type;
  if (grantType === undefined) return oauthError(400, 'invalid_request', 'Missing form parameter: grant_type');
  if (grantType !== 'client_credentials') return oauthError(400, 'unsupported_grant_type', 'Unsupported grant_type');

  const authenticated = authenticateClient(request, params, context);
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

/** The form parameters of a request, for the log: everything but the secret. */
export function loggableParams(request: TokenRequest): Record<string, string> | undefined {
  if ('unreadable' in request.params) return undefined;
  const { client_secret: _secret, ...rest } = request.params;
  return rest;
}

/**
 * Authenticates the client with exactly one of client_secret_basic and client_secret_post.
 * @see RFC 6749 §2.3, §2.3.1
 */
function authenticateClient(
  request: TokenRequest,
  params: Record<string, string>,
  context: TokenEndpointContext,
): { client: NonNullable<ReturnType<ClientRegistry['get']>> } | TokenAnswer {
  const challenge = challengeFor(request, context);
  const { basic } = request;
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
    // A public client's request: this realm has only confidential clients.
    const known = context.clients.get(params.client_id);
    if (known === undefined || !known.enabled) {
      return failedAuthentication(oauthError(401, 'invalid_client', INVALID_CLIENT_CREDENTIALS, challenge));
    }
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
  if (presented.clientSecret !== client.clientSecret) {
    return failedAuthentication(oauthError(401, 'unauthorized_client', INVALID_CLIENT_CREDENTIALS, challenge));
  }
  return { client };
}

/** The `WWW-Authenticate` challenge of a 401 (see {@link answerTokenRequest} for when). */
function challengeFor(request: TokenRequest, context: TokenEndpointContext): Record<string, string> {
  if (request.authMethod === 'client_secret_post') return {};
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
