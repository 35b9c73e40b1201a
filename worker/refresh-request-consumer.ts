/**
 * The refresh-request handler (docs/design.md, "The forced-refresh path"): each entry of the
 * stream `<prefix>refresh-requests` becomes a `forceRefresh` signal, once its origin proof checks
 * out against the stored token. worker/redis-stream-reader.ts reads, claims and acknowledges.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { DEFAULT_KEY_PREFIX, REFRESH_REQUEST_FIELDS, REFRESH_REQUESTS_GROUP, refreshRequestsStream } from '../shared/redis-layout.js';
import { isValidRefreshRequestProof, isValidTraceparent } from 'token-lifecycle/contract';
import { MalformedStoredTokenError, TokenStore } from '../shared/token-store.js';
import { forceRefreshSignal, workflowIdFor, type ForceRefreshRequest } from '../workflows/messages.js';
import { CLIENT_ID_PATTERN, CLIENT_ID_RULE } from '../workflows/registration.js';
import { FINGERPRINT_PATTERN } from '../workflows/token-metadata.js';
import {
  createRedisStreamReader,
  type RedisStreamReader,
  type RedisStreamReaderOptions,
  type RedisStreamReaderSettings,
  type StreamEntry,
} from './redis-stream-reader.js';
import { inRefreshRequestSpan, type RefreshRequestOutcome } from './refresh-request-span.js';

/** The longest `reason` passed on to the workflow (it is shown in the Temporal UI). */
const MAX_REASON_LENGTH = 200;

/** Options of {@link createRefreshRequestConsumer}. */
export interface RefreshRequestConsumerOptions extends RedisStreamReaderSettings, Pick<RedisStreamReaderOptions, 'redis' | 'logger'> {
  /** Sends the `forceRefresh` signals. */
  client: Client;
  /** The key prefix (`TOKEN_KEY_PREFIX`). @default 'oauth:' */
  prefix?: string;
  /** @default {@link REFRESH_REQUESTS_GROUP} */
  group?: string;
  /** Called for each entry refused for want of a valid origin proof (the metric `token_refresh_requests_refused_total`). */
  onRefused?: (reason: RefusedRefreshRequestReason) => void;
}

/**
 * Why an entry was refused: it carries no `proof`; its proof was not made with the client's
 * current token; or no token of the client is stored to check it against (unknown client,
 * expired or lost token).
 */
export type RefusedRefreshRequestReason = 'missing_proof' | 'invalid_proof' | 'no_token';

/** What an entry asks for, or why it cannot be signalled. */
export type ParsedRefreshRequest =
  | {
      ok: true;
      clientId: string;
      /** What the signal carries; never the proof, which stays out of Temporal. */
      request: ForceRefreshRequest;
      /** The entry's origin proof, unchecked; undefined when the entry has none. */
      proof: string | undefined;
    }
  | { ok: false; problem: string };

/**
 * Reads one entry's fields (`clientId`, `rejectedFingerprint`, `reason`, `traceparent`, `proof`;
 * docs/design.md, "Redis layout"). `clientId` is required; an empty `rejectedFingerprint` counts as
 * absent; a present one must be a fingerprint (16 lowercase hex digits), else the request could
 * never match and is refused. A malformed `traceparent` is dropped, as W3C Trace Context says: the
 * refresh starts a trace of its own. The proof is returned as found: {@link createRefreshRequestConsumer}
 * checks it against the stored token.
 */
export function parseRefreshRequest(fields: string[] | null): ParsedRefreshRequest {
  if (fields === null) return { ok: false, problem: 'the entry was deleted before it was read' };
  const values = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (!values.has(fields[i]!)) values.set(fields[i]!, fields[i + 1]!);
  }
  const clientId = values.get(REFRESH_REQUEST_FIELDS.clientId);
  if (clientId === undefined || clientId === '')
    return { ok: false, problem: `field "clientId" is missing (fields: ${[...values.keys()].join(', ') || 'none'})` };
  if (!CLIENT_ID_PATTERN.test(clientId)) return { ok: false, problem: `field "clientId" must be ${CLIENT_ID_RULE}` };
  const rejectedFingerprint = values.get(REFRESH_REQUEST_FIELDS.rejectedFingerprint) || undefined;
  if (rejectedFingerprint !== undefined && !FINGERPRINT_PATTERN.test(rejectedFingerprint)) {
    return {
      ok: false,
      problem: `field "rejectedFingerprint" of ${clientId} must be 16 lowercase hex digits (the token hash's "fingerprint")`,
    };
  }
  const reason = values.get(REFRESH_REQUEST_FIELDS.reason) || undefined;
  const traceparent = values.get(REFRESH_REQUEST_FIELDS.traceparent);
  return {
    ok: true,
    clientId,
    proof: values.get(REFRESH_REQUEST_FIELDS.proof) || undefined,
    request: {
      reason: reason === undefined ? 'refresh-requests stream' : reason.slice(0, MAX_REASON_LENGTH),
      ...(rejectedFingerprint !== undefined && { rejectedFingerprint }),
      ...(isValidTraceparent(traceparent) && { traceparent }),
    },
  };
}

/**
 * Reads the refresh-requests stream through a {@link createRedisStreamReader} and signals each
 * entry whose origin is proven. An entry that can never be signalled (malformed, stale, refused,
 * unknown client) is logged and acknowledged; one that failed on Redis or Temporal is retried.
 */
export function createRefreshRequestConsumer(options: RefreshRequestConsumerOptions): RedisStreamReader {
  const { redis, client, logger } = options;
  const prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
  const stream = refreshRequestsStream(prefix);
  const store = new TokenStore(redis, { prefix });

  /** Handles one entry in its span (worker/refresh-request-span.ts); resolves when it is done, throws when it must be retried. */
  async function handle([id, fields]: StreamEntry): Promise<void> {
    const parsed = parseRefreshRequest(fields);
    const clientId = parsed.ok ? parsed.clientId : undefined;
    const traceparent = parsed.ok ? parsed.request.traceparent : undefined;
    await inRefreshRequestSpan(stream, id, clientId, traceparent, (signalTraceparent) => signal(id, parsed, signalTraceparent));
  }

  /** Signals one entry, unless it can never be signalled; says which. */
  async function signal(id: string, parsed: ParsedRefreshRequest, traceparent: string | undefined): Promise<RefreshRequestOutcome> {
    if (!parsed.ok) {
      logger.warn(`Refresh request ${id} on ${stream} acknowledged without a signal: ${parsed.problem}`, { stream, entryId: id });
      return 'malformed';
    }
    const origin = await checkOrigin(parsed);
    if (origin.outcome === 'stale') {
      logger.debug(`Refresh request ${id} on ${stream} dropped: the token of '${parsed.clientId}' it names was already replaced`, {
        stream,
        entryId: id,
        clientId: parsed.clientId,
      });
      return 'stale';
    }
    if (origin.outcome === 'refused') {
      // One line, with the entry and the client: never the proof (nor, of course, the token).
      logger.warn(`Refresh request ${id} on ${stream} refused without a signal: ${origin.problem}`, {
        stream,
        entryId: id,
        clientId: parsed.clientId,
        refusal: origin.reason,
      });
      options.onRefused?.(origin.reason);
      return 'refused';
    }
    const request: ForceRefreshRequest = { ...parsed.request, ...(traceparent !== undefined && { traceparent }) };
    try {
      await client.workflow.getHandle(workflowIdFor(parsed.clientId)).signal(forceRefreshSignal, request);
      return 'signalled';
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      logger.warn(
        `Refresh request ${id} on ${stream} acknowledged without a signal: client '${parsed.clientId}' is not registered (no running workflow ${workflowIdFor(parsed.clientId)})`,
        {
          stream,
          entryId: id,
          clientId: parsed.clientId,
        },
      );
      return 'not_registered';
    }
  }

  /**
   * Whether the entry's author could read the token it names (docs/design.md, "The forced-refresh
   * path"). Throws when Redis did not answer: the entry is then retried.
   */
  async function checkOrigin(parsed: Extract<ParsedRefreshRequest, { ok: true }>): Promise<OriginCheck> {
    const { clientId, proof } = parsed;
    const { rejectedFingerprint } = parsed.request;
    let stored;
    try {
      stored = await store.read(clientId);
    } catch (err) {
      if (!(err instanceof MalformedStoredTokenError)) throw err;
      return { outcome: 'refused', reason: 'no_token', problem: `${err.message}: no token to check the proof against` };
    }
    if (stored === null) {
      return {
        outcome: 'refused',
        reason: 'no_token',
        problem: `no token of '${clientId}' is stored to check the entry's proof against (unknown client, or its token expired or was lost)`,
      };
    }
    if (rejectedFingerprint !== undefined && rejectedFingerprint !== stored.fingerprint) return { outcome: 'stale' };
    if (proof === undefined) {
      return {
        outcome: 'refused',
        reason: 'missing_proof',
        problem: `the entry for '${clientId}' has no "${REFRESH_REQUEST_FIELDS.proof}" field`,
      };
    }
    if (!isValidRefreshRequestProof(proof, stored.accessToken, clientId, rejectedFingerprint)) {
      return {
        outcome: 'refused',
        reason: 'invalid_proof',
        problem: `the entry's "${REFRESH_REQUEST_FIELDS.proof}" was not made with the current token of '${clientId}' (fingerprint ${stored.fingerprint})`,
      };
    }
    return { outcome: 'proven' };
  }

  return createRedisStreamReader({ ...options, stream, group: options.group ?? REFRESH_REQUESTS_GROUP, handle });
}

/** What {@link createRefreshRequestConsumer} found of an entry's origin. */
type OriginCheck =
  { outcome: 'proven' } | { outcome: 'stale' } | { outcome: 'refused'; reason: RefusedRefreshRequestReason; problem: string };
