/**
 * `token-lifecycle/contract`: the Redis contract's building blocks (docs/redis-contract.md), for
 * tools that read or write the layout themselves. The worker imports them from here, so that the
 * contract has one definition: the names, the token hash and its expiry rule, the token-updated
 * message, and the refresh request's origin proof and trace context.
 *
 * @packageDocumentation
 */
export {
  DEFAULT_KEY_PREFIX,
  REFRESH_REQUEST_FIELDS,
  REFRESH_REQUESTS_MAX_LENGTH,
  refreshRequestsStream,
  tokenKey,
  tokenUpdatedChannel,
} from './redis-layout.js';
export {
  MalformedStoredTokenError,
  parseIntegerField,
  parseStoredTokenMetadata,
  readStoredToken,
  STORED_TOKEN_METADATA_FIELDS,
  type StoredToken,
  type StoredTokenMetadata,
} from './stored-token.js';
export { formatTokenUpdated, parseTokenUpdated, type ReceivedTokenUpdate, type TokenUpdatedMessage } from './token-updated-message.js';
export {
  isValidRefreshRequestProof,
  REFRESH_REQUEST_PROOF_CONTEXT,
  refreshRequestProof,
  refreshRequestProofMessage,
} from './refresh-request-proof.js';
export { formatTraceparent, isValidTraceparent, parseTraceparent, type TraceparentFields } from './traceparent.js';
