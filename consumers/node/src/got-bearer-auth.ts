/**
 * `token-lifecycle/got`: the got integration of the consumer library (docs/design.md, "The consumer library"): every request
 * carries the client's current token, and a request refused because of the token itself is retried
 * once with its replacement.
 *
 * What a 401 means is read from its `WWW-Authenticate` challenge (RFC 6750 §3): only
 * `error="invalid_token"` ("expired, revoked, malformed, or invalid for other reasons", §3.1)
 * calls for a new token. A 401 without an error code (no or unusable credentials), `invalid_request`,
 * and 403 `insufficient_scope` are returned to the caller untouched: a new token would be refused
 * the same way, and refreshing on them is how consumers end up hammering an IAM.
 */
import type { ExtendOptions, Got, Response } from 'got';
import { authScheme, type CurrentToken, type TokenReader } from './token-reader.js';
import { isInvalidTokenChallenge } from './www-authenticate.js';

/** Options of {@link bearerAuth} and {@link withBearerAuth}. */
export interface BearerAuthOptions {
  /** Where tokens come from, and where refused ones are reported (share one reader per process). */
  reader: TokenReader;
  /** The OAuth client whose token the requests carry. */
  clientId: string;
  /**
   * How long a refused request waits for the replacement token before the caller gets the 401.
   * The worker holds forced refreshes to a minimum interval (10 s by default), so a token refused
   * again soon after a refresh is not replaced within this time. @default 5_000
   */
  refreshTimeoutMs?: number;
}

/** Where the token a request was sent with is noted, in got's per-request `context`. */
const SENT_TOKEN = 'oauthBearerSentToken';

type SentToken = Pick<CurrentToken, 'fingerprint' | 'generation'>;

/**
 * got options (hooks) that authenticate requests with the current token of `clientId`, for
 * `got.extend(bearerAuth(…))`:
 *
 * - `beforeRequest`: sets `Authorization: <token_type> <access_token>` (RFC 6750 §2.1) from the
 *   reader, on every attempt;
 * - `afterResponse`: on a 401 whose Bearer challenge says `error="invalid_token"` (RFC 6750 §3.1),
 *   asks for ONE refresh naming the refused token's fingerprint (unless it was already replaced),
 *   waits for a newer generation, and retries ONCE. got runs no `afterResponse` hook on that retry,
 *   so a second refusal goes to the caller: it never loops. Concurrent requests refused with the
 *   same token share one refresh request and one wait ({@link TokenReader.replaceRejectedToken}).
 *   When no newer token arrives within `refreshTimeoutMs` the caller gets the 401.
 *
 * Errors of the reader reach the caller as got's `RequestError` with the reader's error as
 * `cause` (and its `code`, e.g. `token_unavailable` when Redis holds no token for the client).
 * @see RFC 6750 §3, §3.1
 */
export function bearerAuth(options: BearerAuthOptions): ExtendOptions {
  const { reader, clientId } = options;
  const refreshTimeoutMs = options.refreshTimeoutMs ?? 5_000;
  return {
    hooks: {
      beforeRequest: [
        async (requestOptions) => {
          const token = await reader.getToken(clientId);
          requestOptions.headers.authorization = `${authScheme(token.tokenType)} ${token.accessToken}`;
          const sent: SentToken = { fingerprint: token.fingerprint, generation: token.generation };
          requestOptions.context[SENT_TOKEN] = sent;
        },
      ],
      afterResponse: [
        async (response: Response, retryWithMergedOptions) => {
          if (response.statusCode !== 401 || !isInvalidTokenChallenge(response.headers['www-authenticate'])) return response;
          const sent = response.request.options.context[SENT_TOKEN] as SentToken | undefined;
          if (sent === undefined) return response;
          const replacement = await reader.replaceRejectedToken(clientId, sent, {
            reason: `401 invalid_token from ${response.url === '' ? 'an API' : new URL(response.url).host}`,
            timeoutMs: refreshTimeoutMs,
          });
          if (replacement === undefined) return response;
          // beforeRequest reads the replacement (the reader's cache already holds it); got drops
          // the afterResponse hooks for this retry, which is what makes it the only one.
          return retryWithMergedOptions({});
        },
      ],
    },
  };
}

/**
 * A got instance whose requests carry the current token of `options.clientId` and recover once
 * from a refused one; see {@link bearerAuth}.
 *
 * ```ts
 * const api = withBearerAuth(got.extend({ prefixUrl: 'https://orders.example.com' }), { reader, clientId: 'orders-service' });
 * const orders = await api.get('v1/orders').json();
 * ```
 */
export function withBearerAuth(instance: Got, options: BearerAuthOptions): Got {
  return instance.extend(bearerAuth(options));
}
