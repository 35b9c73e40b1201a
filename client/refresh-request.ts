/**
 * Asking the worker for a new token, from a service that saw its token refused (docs/design.md,
 * "The consumer library"). Two ways, with the same effect: a `forceRefresh` signal to the client's
 * workflow, where it is coalesced, checked against the current fingerprint, and held to the
 * minimum interval (docs/design.md, "One refresh at a time"):
 *
 * - an entry on the Redis stream `<prefix>refresh-requests`, for services that hold only Redis
 *   credentials; the worker reads the stream with a consumer group and sends the signal;
 * - the signal itself, through a Temporal {@link Client}.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Cluster, Redis } from 'ioredis';
import { errorMessage } from '../shared/error-message.js';
import { DEFAULT_KEY_PREFIX, REFRESH_REQUEST_FIELDS, REFRESH_REQUESTS_MAX_LENGTH, refreshRequestsStream } from '../shared/redis-layout.js';
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
 * Stream entries have the fields `clientId`, and `rejectedFingerprint` and `reason` when given.
 *
 * @throws {@link RefreshRequestError} when Redis or Temporal refused the request.
 */
export async function requestRefresh(
  target: StreamRefreshTarget | TemporalRefreshTarget,
  clientId: string,
  request: RefreshRequest = {},
): Promise<RefreshRequestReceipt> {
  return 'temporal' in target ? signalForceRefresh(target, clientId, request) : addStreamEntry(target, clientId, request);
}

async function addStreamEntry(target: StreamRefreshTarget, clientId: string, request: RefreshRequest): Promise<RefreshRequestReceipt> {
  const stream = refreshRequestsStream(target.prefix ?? DEFAULT_KEY_PREFIX);
  const fields: string[] = [REFRESH_REQUEST_FIELDS.clientId, clientId];
  if (request.rejectedFingerprint !== undefined) fields.push(REFRESH_REQUEST_FIELDS.rejectedFingerprint, request.rejectedFingerprint);
  if (request.reason !== undefined) fields.push(REFRESH_REQUEST_FIELDS.reason, request.reason);
  try {
    const entryId = await target.redis.xadd(stream, 'MAXLEN', '~', target.maxLength ?? REFRESH_REQUESTS_MAX_LENGTH, '*', ...fields);
    if (entryId === null) throw new Error('XADD returned no entry ID');
    return { via: 'redis-stream', stream, entryId };
  } catch (error) {
    throw new RefreshRequestError(clientId, `Redis refused the entry on ${stream}: ${errorMessage(error)}`, { cause: error });
  }
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
