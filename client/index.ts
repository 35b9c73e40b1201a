/**
 * The package's public API (package.json `exports["."]`).
 *
 * For backend services that need a token (docs/design.md, "The consumer library"):
 * - {@link TokenReader}: the current token of a client from Redis, with an optional in-process
 *   cache, {@link TokenReader.requestRefresh} and {@link TokenReader.waitForToken};
 * - {@link withBearerAuth} / {@link bearerAuth}: got requests that carry the token and recover
 *   once from `401 invalid_token` (RFC 6750 §3, §3.1);
 * - {@link requestRefresh}: a refresh request without a reader;
 * - the WWW-Authenticate parser, for other HTTP clients.
 *
 * For operators and provisioning code: {@link TokenAdmin} (register, inspect and steer the
 * workflows through a Temporal client), the API behind `tokenctl`.
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
export { requestRefresh } from './refresh-request.js';
export { REFRESH_REQUESTS_MAX_LENGTH as DEFAULT_REFRESH_REQUESTS_MAX_LENGTH } from '../shared/redis-layout.js';
export type { RefreshRequest, RefreshRequestReceipt, StreamRefreshTarget, TemporalRefreshTarget } from './refresh-request.js';
export { bearerAuth, withBearerAuth } from './got-bearer-auth.js';
export type { BearerAuthOptions } from './got-bearer-auth.js';
export { findBearerChallenge, isInvalidTokenChallenge, parseWwwAuthenticate, WwwAuthenticateSyntaxError } from './www-authenticate.js';
export type { AuthChallenge, BearerChallenge } from './www-authenticate.js';
export {
  RedisUnavailableError,
  RefreshRequestError,
  TokenReaderClosedError,
  TokenUnavailableError,
  TokenWaitTimeoutError,
} from './errors.js';
export { MalformedStoredTokenError } from '../shared/token-store.js';
export { createRedisClient, RedisUrlError } from '../shared/redis-connection.js';
export { createRedisClientFromEnvironment, describeRedisConnectionError } from '../shared/redis-tls.js';
export { SettingsError } from '../shared/settings-error.js';
export type { RedisClient } from '../shared/redis-connection.js';

export { AlreadyRegisteredError, NotRegisteredError, RefreshFailedError, TokenAdmin } from './admin.js';
export type { RegisteredClient, TokenAdminOptions } from './admin.js';
export type { ForceRefreshRequest, RegistrationChanges, TokenState, TokenStatus } from '../workflows/messages.js';
export type { LastError } from '../workflows/failures.js';
export {
  AUTH_METHODS,
  type AuthMethod,
  type ClientRegistration,
  type CredentialRef,
  type SigningAlgorithm,
} from '../workflows/registration.js';
