/**
 * The Redis layout (docs/design.md, "Redis layout"; for consumers in any language,
 * docs/redis-contract.md): the names consumers use (token hash, token-updated channel,
 * refresh-requests stream, default prefix) are built in the consumer package
 * (consumers/node/src/redis-layout.ts) and re-exported here; the worker's own names are built here.
 * Each name is built in one place only. `prefix` is `TOKEN_KEY_PREFIX`.
 *
 * Keys that carry a URL (breaker, rate window) hold it URI-encoded, so each stays one readable key
 * segment with no `{` or `}`, which Redis Cluster would read as a hash tag.
 */
import { tokenKey } from 'token-lifecycle/contract';

export {
  DEFAULT_KEY_PREFIX,
  REFRESH_REQUEST_FIELDS,
  REFRESH_REQUESTS_MAX_LENGTH,
  refreshRequestsStream,
  tokenKey,
  tokenUpdatedChannel,
} from 'token-lifecycle/contract';

/**
 * `name` as a Redis glob that matches `name` only: `*`, `?`, `[`, `]` and `\` escaped with `\`. For
 * SCAN `MATCH` and for ACL key and channel patterns (cli/redis-acl.ts), where a client ID or a
 * prefix holding them must not match other names.
 */
export function escapeGlob(name: string): string {
  return name.replace(/[*?[\]\\]/g, '\\$&');
}

/** A SCAN `MATCH` glob of every token key under `prefix` (a prefix's own glob characters escaped). */
export function tokenKeysGlob(prefix: string): string {
  return `${escapeGlob(tokenKey(prefix, ''))}*`;
}

/**
 * The sorted set of the highest generation ever written for each client (member: client ID,
 * score: generation): `<prefix>generations`. It never expires and `remove --purge` leaves it, so a
 * client removed and registered again keeps numbering above every token it ever had.
 */
export function generationsKey(prefix: string): string {
  return `${prefix}generations`;
}

/** The consumer group every worker of a deployment joins on the refresh-requests stream, so each entry is handled once. */
export const REFRESH_REQUESTS_GROUP = 'token-lifecycle-worker';

/**
 * The shared breaker of one token endpoint (its URL's origin and path): `<prefix>breaker:<endpoint>`.
 * The endpoint requests go to: the registered `tokenUrl`, or the one discovered from the issuer
 * (docs/design.md, "Discovery"). Worker-internal.
 */
export function breakerKey(prefix: string, endpoint: string): string {
  return `${prefix}breaker:${encodeURIComponent(endpoint)}`;
}

/**
 * The workflows waiting for one token endpoint while its breaker is open:
 * `<prefix>breaker:<endpoint>:waiters` (sorted set, member: workflow ID, score: when its token
 * expires), so the first to expire is woken first when a probe closes the breaker. In the
 * breaker's key family (the encoded endpoint holds no `:`). Worker-internal.
 */
export function breakerWaitersKey(prefix: string, endpoint: string): string {
  return `${breakerKey(prefix, endpoint)}:waiters`;
}

/**
 * The one-second window of token requests sent to one IAM host: `<prefix>rate:<origin>`. The
 * provider's edge limits requests per client IP and host, whatever the realm or path, so the
 * origin is the unit: of the token endpoint (registered or discovered), and of the discovery
 * document when one is read. Worker-internal.
 */
export function rateWindowKey(prefix: string, tokenUrl: string): string {
  return rateWindowKeyOfOrigin(prefix, new URL(tokenUrl).origin);
}

/** {@link rateWindowKey} of an origin (`https://iam.example.com`); of `''`, the start all of them share. */
export function rateWindowKeyOfOrigin(prefix: string, origin: string): string {
  return `${prefix}rate:${encodeURIComponent(origin)}`;
}

/**
 * The failed-login budget of one IAM host: `<prefix>login-budget:<origin>` (hash: the recent
 * rejected logins, and who holds the host's turn for an unproven request). Worker-internal.
 */
export function loginBudgetKey(prefix: string, origin: string): string {
  return `${prefix}login-budget:${encodeURIComponent(origin)}`;
}

/**
 * The proof that a client's current credentials were accepted: `<prefix>login-proof:<clientId>`, a
 * keyed MAC only the workers can compute (never the credentials, nothing to guess them from).
 * Worker-internal.
 */
export function loginProofKey(prefix: string, clientId: string): string {
  return `${prefix}login-proof:${clientId}`;
}

/**
 * The lease of the one worker of a fleet that lists the task queue's running workflows for the
 * client-state gauge and the lost-token check: `<prefix>listing-lease:<taskQueue>` (string: the
 * holder's random ID, expiring unless renewed). Per task queue, since the listing is. See
 * docs/design.md, "One listing, by one worker". Worker-internal.
 */
export function listingLeaseKey(prefix: string, taskQueue: string): string {
  return `${prefix}listing-lease:${encodeURIComponent(taskQueue)}`;
}
