/**
 * The fetch integration of the consumer library (docs/design.md, "The consumer library"): a `fetch`
 * whose requests carry the client's current token, and which retries a request refused because of
 * the token itself once, with its replacement.
 *
 * What a 401 means is read from its `WWW-Authenticate` challenge (RFC 6750 §3): only
 * `error="invalid_token"` ("expired, revoked, malformed, or invalid for other reasons", §3.1)
 * calls for a new token. A 401 without an error code, `invalid_request`, and 403
 * `insufficient_scope` are returned to the caller untouched: a new token would be refused the same
 * way.
 */
import { authScheme, type CurrentToken, type TokenReader } from './token-reader.js';
import { isInvalidTokenChallenge } from './www-authenticate.js';

/** Options of {@link fetchWithBearerAuth}. */
export interface FetchBearerAuthOptions {
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
  /** The `fetch` to send requests with. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * A `fetch` (same arguments, same `Response`) that sets `Authorization: <token_type>
 * <access_token>` (RFC 6750 §2.1) from the reader on every request. On a 401 whose Bearer
 * challenge says `error="invalid_token"` (RFC 6750 §3.1) it asks for ONE refresh naming the refused
 * token's fingerprint (unless it was already replaced), waits for a newer generation and sends the
 * request again ONCE; the second answer goes to the caller whatever it is, so it never loops.
 * Concurrent requests refused with the same token share one refresh request and one wait
 * ({@link TokenReader.replaceRejectedToken}). When no newer token arrives within
 * `refreshTimeoutMs` the caller gets the 401.
 *
 * The reader's errors (e.g. `TokenUnavailableError`, code `token_unavailable`) reject the call as
 * they are. A request body is kept until the answer is known, so that the retry can send it again.
 *
 * ```ts
 * const api = fetchWithBearerAuth({ reader, clientId: 'orders-service' });
 * const orders = await (await api('https://orders.example.com/v1/orders')).json();
 * ```
 * @see RFC 6750 §3, §3.1
 */
export function fetchWithBearerAuth(
  options: FetchBearerAuthOptions,
): (input: string | URL | Request, init?: RequestInit) => Promise<Response> {
  const { reader, clientId } = options;
  const refreshTimeoutMs = options.refreshTimeoutMs ?? 5_000;
  const send = options.fetch ?? globalThis.fetch;
  const sendWith = (request: Request, token: CurrentToken) => {
    request.headers.set('authorization', `${authScheme(token.tokenType)} ${token.accessToken}`);
    return send(request);
  };

  return async (input, init) => {
    const request = new Request(input, init);
    // A body can be read once: the copy is what the retry sends.
    const retry = request.clone();
    const token = await reader.getToken(clientId);
    const response = await sendWith(request, token);
    if (response.status !== 401 || !isInvalidTokenChallenge(response.headers.get('www-authenticate') ?? undefined)) return response;
    const replacement = await reader.replaceRejectedToken(clientId, token, {
      reason: `401 invalid_token from ${new URL(request.url).host}`,
      timeoutMs: refreshTimeoutMs,
    });
    if (replacement === undefined) return response;
    // The refused answer's body is never read: release its connection.
    await response.body?.cancel();
    return sendWith(retry, replacement);
  };
}
