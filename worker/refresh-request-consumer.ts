/**
 * The worker's reader of the Redis stream `<prefix>refresh-requests` (docs/design.md, "Redis
 * layout"): a service that holds only Redis credentials asks for a refresh by adding an entry with
 * the fields `clientId`, `proof`, `rejectedFingerprint` (optional) and `reason` (optional); the
 * worker turns each entry into a `forceRefresh` signal to `token-lifecycle:<clientId>`, where it is
 * coalesced, checked against the current fingerprint and held to the minimum interval
 * (docs/design.md, "One refresh at a time").
 *
 * Only entries whose author can read the client's token are signalled (docs/design.md, "The
 * forced-refresh path"): the worker reads the stored token and checks the entry's `proof`
 * (consumers/node/src/refresh-request-proof.ts) against it. An entry naming a token already replaced is
 * stale and dropped without a signal (its proof cannot be checked: the worker no longer has that
 * token, and the workflow would ignore it anyway). An entry without a valid proof, or for a
 * client without a stored token, is refused: acknowledged, logged (never the proof) and counted.
 *
 * Delivery is at least once, through a consumer group:
 * - an entry is acknowledged (XACK, then XDEL to keep the stream small) only once its signal was
 *   accepted by Temporal, or when it can never be signalled (malformed, unknown client), which
 *   is logged; a signal delivered twice is harmless (coalesced, or ignored as stale);
 * - on start, and after every error, the consumer first re-reads its own pending entries (ID 0);
 * - every `claimMinIdleMs` it claims (XAUTOCLAIM) entries that another consumer read and left
 *   unacknowledged that long: a worker that died, or was killed, before acknowledging;
 * - when Redis or Temporal is unreachable it backs off and tries again; it never throws.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from '@temporalio/common';
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_KEY_PREFIX, REFRESH_REQUEST_FIELDS, REFRESH_REQUESTS_GROUP, refreshRequestsStream } from '../shared/redis-layout.js';
import { errorMessage } from '../shared/error-message.js';
import { isValidRefreshRequestProof } from 'token-lifecycle/contract';
import { MalformedStoredTokenError, TokenStore } from '../shared/token-store.js';
import { forceRefreshSignal, workflowIdFor, type ForceRefreshRequest } from '../workflows/messages.js';
import { exponentialDelayMs } from '../workflows/policy.js';
import { CLIENT_ID_PATTERN, CLIENT_ID_RULE } from '../workflows/registration.js';
import { FINGERPRINT_PATTERN } from '../workflows/token-metadata.js';

/** The longest `reason` passed on to the workflow (it is shown in the Temporal UI). */
const MAX_REASON_LENGTH = 200;

/** Options of {@link createRefreshRequestConsumer}. */
export interface RefreshRequestConsumerOptions {
  /**
   * A connection for this consumer alone: `XREADGROUP … BLOCK` holds it while waiting. The
   * consumer closes it when it stops.
   */
  redis: Redis | Cluster;
  /** Sends the `forceRefresh` signals. */
  client: Client;
  /** The key prefix (`TOKEN_KEY_PREFIX`). @default 'oauth:' */
  prefix?: string;
  /** @default {@link REFRESH_REQUESTS_GROUP} */
  group?: string;
  /** Unique per worker process, so a dead worker's pending entries can be told apart and claimed. @default `<hostname>:<pid>:<random>` */
  consumerName?: string;
  /** How long one XREADGROUP waits for new entries. @default 5_000 */
  blockMs?: number;
  /** Entries read (and signalled in parallel) at a time. @default 100 */
  batchSize?: number;
  /**
   * How long an entry stays unacknowledged by another consumer before this one claims it, and
   * how often it looks for such entries. Longer than a signal may take, so a live worker's
   * entries are rarely signalled twice. @default 30_000
   */
  claimMinIdleMs?: number;
  /** Consumers idle this long with nothing pending are removed from the group (dead workers). @default 600_000 */
  forgetIdleConsumersAfterMs?: number;
  /** First and longest wait after Redis or Temporal failed. @default { initialMs: 100, maxMs: 5_000 } */
  retry?: { initialMs?: number; maxMs?: number };
  logger: Logger;
  /** Called for each entry refused for want of a valid origin proof (the metric `token_refresh_requests_refused_total`). */
  onRefused?: (reason: RefusedRefreshRequestReason) => void;
}

/**
 * Why an entry was refused: it carries no `proof`; its proof was not made with the client's
 * current token; or no token of the client is stored to check it against (unknown client,
 * expired or lost token).
 */
export type RefusedRefreshRequestReason = 'missing_proof' | 'invalid_proof' | 'no_token';

export interface RefreshRequestConsumer {
  readonly consumerName: string;
  /** Reads the stream until {@link RefreshRequestConsumer.stop}; never rejects. */
  run(): Promise<void>;
  /** Finishes the batch in hand (signals and acknowledgements), stops, and closes the connection. */
  stop(): Promise<void>;
}

/** One stream entry: its ID and its fields as `[name, value, …]`, or null when its data was deleted. */
type StreamEntry = [id: string, fields: string[] | null];

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
 * Reads one entry's fields (`clientId`, `rejectedFingerprint`, `reason`, `proof`; docs/design.md,
 * "Redis layout"). `clientId` is required; an empty `rejectedFingerprint` counts as absent; a
 * present one must be a fingerprint (16 lowercase hex digits), else the request could never match
 * and is refused. The proof is returned as found: {@link createRefreshRequestConsumer} checks it
 * against the stored token.
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
  return {
    ok: true,
    clientId,
    proof: values.get(REFRESH_REQUEST_FIELDS.proof) || undefined,
    request: {
      reason: reason === undefined ? 'refresh-requests stream' : reason.slice(0, MAX_REASON_LENGTH),
      ...(rejectedFingerprint !== undefined && { rejectedFingerprint }),
    },
  };
}

export function createRefreshRequestConsumer(options: RefreshRequestConsumerOptions): RefreshRequestConsumer {
  const { redis, client, logger } = options;
  const prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
  const stream = refreshRequestsStream(prefix);
  const store = new TokenStore(redis, { prefix });
  const group = options.group ?? REFRESH_REQUESTS_GROUP;
  const consumerName = options.consumerName ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const blockMs = options.blockMs ?? 5_000;
  const batchSize = options.batchSize ?? 100;
  const claimMinIdleMs = options.claimMinIdleMs ?? 30_000;
  const forgetAfterMs = options.forgetIdleConsumersAfterMs ?? 600_000;
  const retryInitialMs = options.retry?.initialMs ?? 100;
  const retryMaxMs = options.retry?.maxMs ?? 5_000;

  let stopping = false;
  let blocking = false;
  let wake: (() => void) | null = null;
  let running: Promise<void> | null = null;
  // Errors surface through the commands; this keeps ioredis from printing each reconnect.
  redis.on('error', () => undefined);

  const call = (command: string, ...args: (string | number)[]): Promise<unknown> => redis.call(command, ...args);

  async function ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: requests added before any worker ever ran are not lost.
      await call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
    }
  }

  /** Signals each entry; acknowledges those signalled or never signallable; throws if any must be retried. */
  async function handle(entries: StreamEntry[]): Promise<void> {
    const done: string[] = [];
    const retryable: Error[] = [];
    await Promise.all(
      entries.map(async ([id, fields]) => {
        const parsed = parseRefreshRequest(fields);
        if (!parsed.ok) {
          logger.warn(`Refresh request ${id} on ${stream} acknowledged without a signal: ${parsed.problem}`, { stream, entryId: id });
          done.push(id);
          return;
        }
        let origin: OriginCheck;
        try {
          origin = await checkOrigin(parsed);
        } catch (err) {
          retryable.push(err instanceof Error ? err : new Error(`Reading the token of ${parsed.clientId} failed: ${JSON.stringify(err)}`));
          return;
        }
        if (origin.outcome === 'stale') {
          logger.debug(`Refresh request ${id} on ${stream} dropped: the token of '${parsed.clientId}' it names was already replaced`, {
            stream,
            entryId: id,
            clientId: parsed.clientId,
          });
          done.push(id);
          return;
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
          done.push(id);
          return;
        }
        try {
          await client.workflow.getHandle(workflowIdFor(parsed.clientId)).signal(forceRefreshSignal, parsed.request);
          done.push(id);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) {
            logger.warn(
              `Refresh request ${id} on ${stream} acknowledged without a signal: client '${parsed.clientId}' is not registered (no running workflow ${workflowIdFor(parsed.clientId)})`,
              {
                stream,
                entryId: id,
                clientId: parsed.clientId,
              },
            );
            done.push(id);
          } else {
            retryable.push(
              err instanceof Error ? err : new Error(`Signal to ${workflowIdFor(parsed.clientId)} failed: ${JSON.stringify(err)}`),
            );
          }
        }
      }),
    );
    if (done.length > 0) {
      const replies = await redis
        .multi()
        .xack(stream, group, ...done)
        .xdel(stream, ...done)
        .exec();
      const failed = replies?.find(([err]) => err !== null)?.[0];
      if (replies === null || failed) throw failed ?? new Error(`XACK/XDEL on ${stream} was aborted`);
    }
    if (retryable.length > 0) throw retryable[0]!;
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

  /** Entries this consumer read earlier and has not acknowledged (after an error or a reconnect). */
  async function drainOwnPending(): Promise<void> {
    let after = '0';
    for (;;) {
      const entries = entriesOf(await call('XREADGROUP', 'GROUP', group, consumerName, 'COUNT', batchSize, 'STREAMS', stream, after));
      if (entries.length === 0 || stopping) return;
      await handle(entries);
      after = entries.at(-1)![0];
    }
  }

  /** Entries other consumers read and left unacknowledged for `claimMinIdleMs`: their worker died. */
  async function claimAbandoned(): Promise<void> {
    let cursor = '0-0';
    do {
      const reply = (await call('XAUTOCLAIM', stream, group, consumerName, claimMinIdleMs, cursor, 'COUNT', batchSize)) as [
        string,
        StreamEntry[] | null,
      ];
      cursor = reply[0];
      const entries = reply[1] ?? [];
      if (entries.length > 0) {
        logger.info(`Claimed ${entries.length} unacknowledged refresh requests of a stopped worker`, { stream, consumer: consumerName });
        await handle(entries);
      }
    } while (cursor !== '0-0' && !stopping);
    await forgetIdleConsumers();
  }

  /** Keeps the group's consumer list from growing with every worker restart. */
  async function forgetIdleConsumers(): Promise<void> {
    const consumers = (await call('XINFO', 'CONSUMERS', stream, group)) as unknown[][];
    for (const row of consumers) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < row.length; i += 2) info.set(String(row[i]), row[i + 1]);
      const name = String(info.get('name'));
      if (name !== consumerName && Number(info.get('pending')) === 0 && Number(info.get('idle')) > forgetAfterMs) {
        await call('XGROUP', 'DELCONSUMER', stream, group, name);
      }
    }
  }

  async function readNew(): Promise<void> {
    if (stopping) return;
    blocking = true;
    let reply: unknown;
    try {
      reply = await call('XREADGROUP', 'GROUP', group, consumerName, 'COUNT', batchSize, 'BLOCK', blockMs, 'STREAMS', stream, '>');
    } finally {
      blocking = false;
    }
    const entries = entriesOf(reply);
    if (entries.length > 0) await handle(entries);
  }

  async function loop(): Promise<void> {
    let failures = 0;
    let ready = false;
    let nextClaimAt = 0;
    while (!stopping) {
      try {
        if (!ready) {
          await ensureGroup();
          await drainOwnPending();
          ready = true;
        }
        if (Date.now() >= nextClaimAt) {
          await claimAbandoned();
          nextClaimAt = Date.now() + claimMinIdleMs;
        }
        await readNew();
        failures = 0;
      } catch (err) {
        if (stopping) break;
        // The group may be gone (Redis restarted empty), entries may be half done: start over.
        ready = false;
        failures++;
        const delayMs = exponentialDelayMs({ baseMs: retryInitialMs, capMs: retryMaxMs }, failures);
        logger.warn(`Refresh requests on ${stream}: ${errorMessage(err)}; trying again in ${delayMs} ms`, {
          stream,
          consumer: consumerName,
          failures,
        });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    }
  }

  return {
    consumerName,
    run() {
      running ??= loop().finally(() => redis.disconnect());
      return running;
    },
    async stop() {
      stopping = true;
      // A blocked XREADGROUP holds no entry yet: closing the connection loses nothing.
      if (blocking) redis.disconnect();
      wake?.();
      if (running === null) redis.disconnect();
      await running;
    },
  };
}

/** What {@link createRefreshRequestConsumer} found of an entry's origin. */
type OriginCheck =
  { outcome: 'proven' } | { outcome: 'stale' } | { outcome: 'refused'; reason: RefusedRefreshRequestReason; problem: string };

/**
 * The entries of an XREADGROUP reply for one stream: `[[stream, entries]]`, or null when there
 * are none. ioredis' `call` flattens a single-stream reply to `[stream, entries]`: both are read.
 */
function entriesOf(reply: unknown): StreamEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const streamReply = (typeof reply[0] === 'string' ? reply : reply[0]) as [string, StreamEntry[] | null];
  return Array.isArray(streamReply[1]) ? streamReply[1] : [];
}
