/**
 * Asking the worker for a new token, from a service that saw its token refused (docs/design.md,
 * "The consumer library"). Two ways, with the same effect: a `forceRefresh` signal to the client's
 * workflow, where it is coalesced, checked against the current fingerprint, and held to the
 * minimum interval (docs/design.md, "One refresh at a time"):
 *
 * - an entry on the Redis stream `<prefix>refresh-requests`, for services that hold only Redis
 *   credentials; the worker reads the stream with a consumer group and sends the signal, once the
 *   entry's origin proof shows its author can read the client's token (docs/design.md, "The
 *   forced-refresh path"; shared/refresh-request-proof.ts);
 * - the signal itself, through a Temporal {@link Client}.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Cluster, Redis } from 'ioredis';
import { errorMessage } from '../shared/error-message.js';
import { DEFAULT_KEY_PREFIX, REFRESH_REQUEST_FIELDS, REFRESH_REQUESTS_MAX_LENGTH, refreshRequestsStream } from '../shared/redis-layout.js';
import { refreshRequestProof } from '../shared/refresh-request-proof.js';
import { TokenStore } from '../shared/token-store.js';
import { forceRefreshSignal, workflowIdFor } from '../workflows/messages.js';
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
   * (an HMAC keyed with it) is sent. When absent, the current token is read from Redis. Not used
   * for Temporal signals, which Temporal's own access control covers.
   */
  accessToken?: string;
}

/** Where {@link requestRefresh} sent the request. */
export type RefreshRequestReceipt =
  { via: 'redis-stream'; stream: string; entryId: string } | { via: 'temporal-signal'; workflowId: string };

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

/** Sends refresh requests as `forceRefresh` signals through a Temporal client. */
export interface TemporalRefreshTarget {
  temporal: Client;
}

/**
 * Asks the worker to replace the token of `clientId`, through the Redis stream or a Temporal
 * signal (see the module comment). Resolves once the request is stored (stream) or accepted by
 * Temporal (signal); it does not wait for the new token: use {@link TokenReader.waitForToken}.
 *
 * Stream entries have the fields `clientId`, `rejectedFingerprint` and `reason` when given, and
 * `proof` (docs/redis-contract.md): made with {@link RefreshRequest.accessToken}, or with the
 * token Redis holds for the client.
 *
 * @throws {@link RefreshRequestError} when Redis or Temporal refused the request, or, for a stream
 *   entry without {@link RefreshRequest.accessToken}, when Redis holds no token of the client to
 *   prove it with.
 */
export async function requestRefresh(
  target: StreamRefreshTarget | TemporalRefreshTarget,
  clientId: string,
  request: RefreshRequest = {},
): Promise<RefreshRequestReceipt> {
  return 'temporal' in target ? signalForceRefresh(target, clientId, request) : addStreamEntry(target, clientId, request);
}

async function addStreamEntry(target: StreamRefreshTarget, clientId: string, request: RefreshRequest): Promise<RefreshRequestReceipt> {
  const prefix = target.prefix ?? DEFAULT_KEY_PREFIX;
  const stream = refreshRequestsStream(prefix);
  const accessToken = request.accessToken ?? (await currentAccessToken(target.redis, prefix, clientId));
  const fields: string[] = [REFRESH_REQUEST_FIELDS.clientId, clientId];
  if (request.rejectedFingerprint !== undefined) fields.push(REFRESH_REQUEST_FIELDS.rejectedFingerprint, request.rejectedFingerprint);
  if (request.reason !== undefined) fields.push(REFRESH_REQUEST_FIELDS.reason, request.reason);
  fields.push(REFRESH_REQUEST_FIELDS.proof, refreshRequestProof(accessToken, clientId, request.rejectedFingerprint));
  try {
    const entryId = await target.redis.xadd(stream, 'MAXLEN', '~', target.maxLength ?? REFRESH_REQUESTS_MAX_LENGTH, '*', ...fields);
    if (entryId === null) throw new Error('XADD returned no entry ID');
    return { via: 'redis-stream', stream, entryId };
  } catch (error) {
    throw new RefreshRequestError(clientId, `Redis refused the entry on ${stream}: ${errorMessage(error)}`, { cause: error });
  }
}

/** The token Redis holds for `clientId`, to make the proof with when the caller gave none. */
async function currentAccessToken(redis: Redis | Cluster, prefix: string, clientId: string): Promise<string> {
  let stored;
  try {
    stored = await new TokenStore(redis, { prefix }).read(clientId);
  } catch (error) {
    throw new RefreshRequestError(clientId, `reading its token to prove the request failed: ${errorMessage(error)}`, { cause: error });
  }
  if (stored === null) {
    throw new RefreshRequestError(clientId, 'Redis holds no token of it to prove the request with (the worker refuses unproven requests)');
  }
  return stored.accessToken;
}

async function signalForceRefresh(
  target: TemporalRefreshTarget,
  clientId: string,
  request: RefreshRequest,
): Promise<RefreshRequestReceipt> {
  const workflowId = workflowIdFor(clientId);
  try {
    await target.temporal.workflow.getHandle(workflowId).signal(forceRefreshSignal, {
      ...(request.reason !== undefined && { reason: request.reason }),
      ...(request.rejectedFingerprint !== undefined && { rejectedFingerprint: request.rejectedFingerprint }),
    });
    return { via: 'temporal-signal', workflowId };
  } catch (error) {
    const reason =
      error instanceof WorkflowNotFoundError
        ? `no workflow ${workflowId} is running (is the client registered?)`
        : `Temporal refused the forceRefresh signal: ${errorMessage(error)}`;
    throw new RefreshRequestError(clientId, reason, { cause: error });
  }
}
