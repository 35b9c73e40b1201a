/**
 * A tiny protected resource API on the emulator's server, so consumers can see the 401s and 403s a
 * real API answers to bearer tokens, and react to them the way docs/design.md, "What the IAM does",
 * says (refresh only on `error="invalid_token"`).
 */
import type { ResourceRequestOutcome } from './request-log.js';
import type { TokenInactiveReason, TokenStore } from './tokens.js';

/** Any active token issued by the emulator may read it: 200 `{ ok: true, clientId }`. */
export const RESOURCE_PATH = '/api/resource';
/** Needs a token with scope `admin`; others get 403 `insufficient_scope`. */
export const ADMIN_PATH = '/api/admin';

/** Paths served under this prefix belong to the resource API. */
export const RESOURCE_API_PREFIX = '/api/';

/** The scope each route needs (`undefined`: any active token). */
const ROUTES = new Map<string, string | undefined>([
  [RESOURCE_PATH, undefined],
  [ADMIN_PATH, 'admin'],
]);

/** A request to the resource API. */
export interface ResourceRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  authorization: string | undefined;
}

/** The answer the resource API chose. */
export interface ResourceAnswer {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
  outcome: ResourceRequestOutcome;
  clientId?: string;
  accessToken?: string;
}

/** What the resource API needs from the emulator. */
export interface ResourceApiContext {
  realm: string;
  tokens: TokenStore;
  now: number;
}

const INACTIVE_DESCRIPTIONS: Record<TokenInactiveReason, string> = {
  unknown: 'The access token is not known',
  expired: 'The access token expired',
  revoked: 'The access token was revoked',
};

/**
 * Answers a resource request like an OAuth-protected API: the token must be active (issued by
 * this emulator, not expired, not revoked) and carry the route's scope.
 *
 * - no credentials, or another scheme than Bearer → 401 with a bare `Bearer realm` challenge
 *   (RFC 6750 §3.1: no error code when the request lacks authentication information);
 * - a malformed Bearer header → 400 `invalid_request`;
 * - an inactive token → 401 `invalid_token`, the one error after which a consumer refreshes;
 * - a token without the route's scope → 403 `insufficient_scope`, naming the scope.
 *
 * @see RFC 6750 §2.1, §3, §3.1
 */
export function answerResourceRequest(request: ResourceRequest, context: ResourceApiContext): ResourceAnswer {
  if (!ROUTES.has(request.path)) return { status: 404, headers: {}, body: { ok: false, error: 'not_found' }, outcome: 'not_found' };
  if (request.method !== 'GET') {
    return { status: 405, headers: { Allow: 'GET' }, body: { ok: false, error: 'method_not_allowed' }, outcome: 'method_not_allowed' };
  }
  const neededScope = ROUTES.get(request.path);

  const credentials = parseBearer(request.authorization);
  if (credentials === undefined) {
    return { status: 401, headers: { 'WWW-Authenticate': `Bearer realm="${context.realm}"` }, body: { ok: false }, outcome: 'no_token' };
  }
  if (credentials === 'malformed') {
    return bearerError(400, 'invalid_request', 'Malformed Bearer authorization header', context);
  }

  const accessToken = credentials.token;
  const inactive = context.tokens.inactiveReason(accessToken, context.now);
  const token = context.tokens.get(accessToken);
  if (inactive !== undefined || token === undefined) {
    return {
      ...bearerError(401, 'invalid_token', INACTIVE_DESCRIPTIONS[inactive ?? 'unknown'], context),
      accessToken,
      clientId: token?.clientId,
    };
  }
  if (neededScope !== undefined && !token.scope.split(' ').includes(neededScope)) {
    return {
      ...bearerError(403, 'insufficient_scope', `This resource needs scope ${neededScope}`, context, neededScope),
      accessToken,
      clientId: token.clientId,
    };
  }
  return { status: 200, headers: {}, body: { ok: true, clientId: token.clientId }, outcome: 'ok', accessToken, clientId: token.clientId };
}

/**
 * The token of an `Authorization: Bearer` header; `undefined` when the request has no bearer
 * credentials, `'malformed'` when the Bearer header does not hold a b64token.
 * @see RFC 6750 §2.1
 */
function parseBearer(authorization: string | undefined): { token: string } | 'malformed' | undefined {
  if (authorization === undefined) return undefined;
  const match = /^bearer(?: +(.*))?$/i.exec(authorization.trim());
  if (match === null) return undefined;
  const token = match[1]?.trim() ?? '';
  return /^[A-Za-z0-9\-._~+/]+=*$/.test(token) ? { token } : 'malformed';
}

/** An RFC 6750 §3 error: the code in the challenge, and in the JSON body for humans. */
function bearerError(
  status: number,
  error: 'invalid_request' | 'invalid_token' | 'insufficient_scope',
  description: string,
  context: ResourceApiContext,
  scope?: string,
): ResourceAnswer {
  const attributes = [`realm="${context.realm}"`, `error="${error}"`, `error_description="${description}"`];
  if (scope !== undefined) attributes.push(`scope="${scope}"`);
  return {
    status,
    headers: { 'WWW-Authenticate': `Bearer ${attributes.join(', ')}` },
    body: { ok: false, error, error_description: description },
    outcome: error,
  };
}
