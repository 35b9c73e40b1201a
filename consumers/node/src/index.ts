/**
 * `token-lifecycle`: for Node.js services that need the OAuth 2.0 token token-lifecycle-worker
 * keeps in Redis (docs/design.md, "The consumer library"; the contract: docs/redis-contract.md):
 * - {@link TokenReader}: the current token of a client from Redis, with an optional in-process
 *   cache, {@link TokenReader.requestRefresh} and {@link TokenReader.waitForToken};
 * - {@link fetchWithBearerAuth}: a `fetch` that carries the token and recovers once from
 *   `401 invalid_token` (RFC 6750 §3, §3.1); the same for got is `token-lifecycle/got`;
 * - {@link requestRefresh}: a refresh request without a reader;
 * - the WWW-Authenticate parser, for other HTTP clients;
 * - {@link createRedisClient}: an ioredis client from a URL (standalone, Sentinel, Cluster, TLS).
 *
 * @packageDocumentation
 */
export { TokenReader } from './token-reader.js';
export type {
  CurrentToken,
  GetTokenOptions,
  ReplaceRejectedTokenOptions,
  TokenReaderOptions,
  WaitForTokenOptions,
} from './token-reader.js';
export { fetchWithBearerAuth } from './fetch-bearer-auth.js';
export type { FetchBearerAuthOptions } from './fetch-bearer-auth.js';
export { requestRefresh } from './refresh-request.js';
export type { RefreshRequest, RefreshRequestReceipt, StreamRefreshTarget } from './refresh-request.js';
export { DEFAULT_KEY_PREFIX, REFRESH_REQUESTS_MAX_LENGTH as DEFAULT_REFRESH_REQUESTS_MAX_LENGTH } from './redis-layout.js';
export { findBearerChallenge, isInvalidTokenChallenge, parseWwwAuthenticate, WwwAuthenticateSyntaxError } from './www-authenticate.js';
export type { AuthChallenge, BearerChallenge } from './www-authenticate.js';
export {
  RedisUnavailableError,
  RefreshRequestError,
  TokenReaderClosedError,
  TokenUnavailableError,
  TokenWaitTimeoutError,
} from './errors.js';
export { MalformedStoredTokenError } from './stored-token.js';
export { createRedisClient, duplicateConnection, redactRedisUrl, RedisUrlError } from './redis-connection.js';
export type { RedisClient } from './redis-connection.js';
