/**
 * Asking the worker for a new token, from a service that saw its token refused (docs/design.md,
 * "The consumer library"): an entry on the Redis stream `<prefix>refresh-requests`. The worker
 * reads the stream with a consumer group and, once the entry's origin proof shows its author can
 * read the client's token (docs/design.md, "The forced-refresh path"; refresh-request-proof.ts),
 * signals the client's workflow, where the request is coalesced, checked against the current
 * fingerprint, and held to the minimum interval (docs/design.md, "One refresh at a time").
 * Provisioning code that holds a Temporal client signals the workflow itself, through the worker
 * package's `TokenAdmin`.
 */
import type { Cluster, Redis } from 'ioredis';
import { errorMessage } from './error-message.js';
import {
  DEFAULT_KEY_PREFIX,
  REFRESH_REQUEST_FIELDS,
  REFRESH_REQUESTS_MAX_LENGTH,
  refreshRequestsStream,
  tokenKey,
} from './redis-layout.js';
import { refreshRequestProof } from './refresh-request-proof.js';
import { readStoredToken } from './stored-token.js';
import { inRefreshRequestSpan } from './refresh-request-trace.js';
import { isValidTraceparent } from './traceparent.js';
import { RefreshRequestError } from './errors.js';

/** What a service says when it asks for a refresh. */
export interface RefreshRequest {
  /**
   * The fingerprint of the token that was refused (the `fingerprint` of {@link CurrentToken}).
   * When the worker has already replaced that token the request is ignored, so many services
   * reporting the same refusal cause one refresh. Without it, the current token is replaced.
   */
  rejectedFingerprint?: string;
  /** Free text for operators, shown in the Temporal UI, e.g. `401 invalid_token from orders-api`. Never a token. */
  reason?: string;
  /**
   * The token the stream entry's origin proof is made with: the refused one (whose fingerprint
   * is `rejectedFingerprint`), else the current one. It never leaves the process: only the proof
   * (an HMAC keyed with it) is sent. When absent, the current token is read from Redis.
   */
  accessToken?: string;
  /**
   * The W3C `traceparent` of the trace the worker's spans for this refresh join
   * (docs/redis-contract.md). Sent only when valid ({@link isValidTraceparent}); outside the proof.
   * @default when the application uses OpenTelemetry (`@opentelemetry/api`, an optional peer
   *   dependency), that of a span of this library, child of the active span; else none
   */
  traceparent?: string;
}

/** Where {@link requestRefresh} stored the request. */
export interface RefreshRequestReceipt {
  via: 'redis-stream';
  /** The stream, `<prefix>refresh-requests`. */
  stream: string;
  /** The entry's ID, as `XADD` returned it. */
  entryId: string;
}

/** Sends refresh requests through the Redis stream `<prefix>refresh-requests`. */
export interface StreamRefreshTarget {
  redis: Redis | Cluster;
  /** The key prefix (`TOKEN_KEY_PREFIX`). @default 'oauth:' */
  prefix?: string;
  /**
   * The stream is trimmed to about this many entries (`XADD … MAXLEN ~ n`), so it stays bounded
   * when no worker reads it. @default 10_000
   */
  maxLength?: number;
}

/**
 * Asks the worker to replace the token of `clientId`, with an entry on the Redis stream
 * `<prefix>refresh-requests` (see the module comment). Resolves once the entry is stored; it does
 * not wait for the new token: use {@link TokenReader.waitForToken}.
 *
 * Stream entries have the fields `clientId`, `rejectedFingerprint`, `reason` and `traceparent` when
 * given, and `proof` (docs/redis-contract.md): made with {@link RefreshRequest.accessToken}, or with the
 * token Redis holds for the client.
 *
 * @throws {@link RefreshRequestError} when Redis refused the entry, or, without
 *   {@link RefreshRequest.accessToken}, when Redis holds no token of the client to prove it with.
 */
export async function requestRefresh(
  target: StreamRefreshTarget,
  clientId: string,
  request: RefreshRequest = {},
): Promise<RefreshRequestReceipt> {
  const prefix = target.prefix ?? DEFAULT_KEY_PREFIX;
  const stream = refreshRequestsStream(prefix);
  const accessToken = request.accessToken ?? (await currentAccessToken(target.redis, prefix, clientId));
  const add = async (traceparent: string | undefined): Promise<RefreshRequestReceipt> => {
    const fields: string[] = [REFRESH_REQUEST_FIELDS.clientId, clientId];
    if (request.rejectedFingerprint !== undefined) fields.push(REFRESH_REQUEST_FIELDS.rejectedFingerprint, request.rejectedFingerprint);
    if (request.reason !== undefined) fields.push(REFRESH_REQUEST_FIELDS.reason, request.reason);
    if (isValidTraceparent(traceparent)) fields.push(REFRESH_REQUEST_FIELDS.traceparent, traceparent);
    fields.push(REFRESH_REQUEST_FIELDS.proof, refreshRequestProof(accessToken, clientId, request.rejectedFingerprint));
    try {
      const entryId = await target.redis.xadd(stream, 'MAXLEN', '~', target.maxLength ?? REFRESH_REQUESTS_MAX_LENGTH, '*', ...fields);
      if (entryId === null) throw new Error('XADD returned no entry ID');
      return { via: 'redis-stream', stream, entryId };
    } catch (error) {
      throw new RefreshRequestError(clientId, `Redis refused the entry on ${stream}: ${errorMessage(error)}`, { cause: error });
    }
  };
  // A traceparent given by the caller is sent as it is; else the application's trace, if it has one.
  if (request.traceparent !== undefined) return add(request.traceparent);
  return inRefreshRequestSpan(
    { 'messaging.system': 'redis', 'messaging.destination.name': stream, 'token_lifecycle.client_id': clientId },
    add,
  );
}

/** The token Redis holds for `clientId`, to make the proof with when the caller gave none. */
async function currentAccessToken(redis: Redis | Cluster, prefix: string, clientId: string): Promise<string> {
  let stored;
  try {
    stored = await readStoredToken(redis, tokenKey(prefix, clientId), Date.now);
  } catch (error) {
    throw new RefreshRequestError(clientId, `reading its token to prove the request failed: ${errorMessage(error)}`, { cause: error });
  }
  if (stored === null) {
    throw new RefreshRequestError(clientId, 'Redis holds no token of it to prove the request with (the worker refuses unproven requests)');
  }
  return stored.accessToken;
}
