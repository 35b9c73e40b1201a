/**
 * The names a consumer reads and writes in Redis (docs/redis-contract.md; docs/design.md, "Redis
 * layout"): the token hash, the token-updated channel and the refresh-requests stream, and the
 * default prefix. They are built here and nowhere else; the worker imports them from this package
 * and adds its own, worker-internal names in shared/redis-layout.ts. `prefix` is `TOKEN_KEY_PREFIX`.
 */

/** The prefix of every name when none is set (`TOKEN_KEY_PREFIX`). */
export const DEFAULT_KEY_PREFIX = 'oauth:';

/**
 * The hash that holds the current token of `clientId`: `<prefix>token:<clientId>`. Consumers read
 * it; it expires with the token.
 */
export function tokenKey(prefix: string, clientId: string): string {
  return `${prefix}token:${clientId}`;
}

/** The channel on which every accepted token write is announced: `<prefix>token-updated`. */
export function tokenUpdatedChannel(prefix: string): string {
  return `${prefix}token-updated`;
}

/** The stream on which services ask for a refresh: `<prefix>refresh-requests`. */
export function refreshRequestsStream(prefix: string): string {
  return `${prefix}refresh-requests`;
}

/**
 * The approximate length producers cap the refresh-requests stream at: `XADD <stream> MAXLEN ~
 * 10000 * …`. A backlog this long means no worker has read the stream for a long time; older
 * requests would be coalesced into one refresh per client anyway.
 */
export const REFRESH_REQUESTS_MAX_LENGTH = 10_000;

/**
 * The fields of a refresh-requests stream entry. `clientId` and `proof` are required: the worker
 * honours an entry only with a valid origin proof (refresh-request-proof.ts). `traceparent` is
 * optional and outside the proof (traceparent.ts).
 */
export const REFRESH_REQUEST_FIELDS = {
  clientId: 'clientId',
  rejectedFingerprint: 'rejectedFingerprint',
  reason: 'reason',
  traceparent: 'traceparent',
  proof: 'proof',
} as const;
