/**
 * The one listing of the task queue's running workflows (client ID → `TokenState`, from their
 * search attributes), made by one worker of the fleet, the holder of a lease in Redis, and handed
 * to the client-state gauge and the lost-token check (docs/design.md, "One listing, by one worker").
 *
 * Every worker listing every client, for each of two consumers, was N × 2 listings of the whole
 * task queue per period: a real load on Temporal's visibility store (the dev server's SQLite failed
 * under it) and CPU on every worker, for the same answer. With the lease, one worker lists; the
 * others take over when it stops (it releases the lease) or dies (the lease expires). Without
 * Redis nobody lists: nobody can renew the lease, and the lost-token check needs Redis anyway.
 */
import type { Client } from '@temporalio/client';
import type { Logger } from '@temporalio/common';
import { listingLeaseKey } from '../shared/redis-layout.js';
import type { RedisClient } from '../shared/redis-connection.js';
import { errorMessage } from '../shared/error-message.js';
import { TokenClientId, TokenState } from '../workflows/search-attributes.js';
import { RedisLease } from './redis-lease.js';

/**
 * How often the holder lists. It bounds how late `token_client_state` follows a client into or out
 * of a state (the alerts and docs/runbook.md count on 30 s), and each listing reads every running
 * workflow from visibility, so not much more often.
 */
export const LISTING_INTERVAL_MS = 30_000;

/**
 * How long the lease outlives its last renewal (one per listing): three intervals, so two missed
 * renewals (a slow listing, a stalled process, a Redis blip) do not hand it over, and a dead
 * holder is replaced within about four intervals. A holder that stops gracefully releases it at
 * once.
 */
export const LEASE_INTERVALS = 3;

/** ioredis's states of a connection on its way to `ready`, before it failed. */
const CONNECTING = new Set(['wait', 'connecting', 'connect']);

/** Each running client's `TokenState`, by client ID. */
export type RunningClientStates = ReadonlyMap<string, string>;

/** Lists the running workflows of the task queue. */
export type ListRunningClients = () => Promise<RunningClientStates>;

/** What a consumer of the listing is told. */
export interface RunningClientsListener {
  /** A new listing, by this worker as the lease holder. */
  listed(clients: RunningClientStates): void;
  /** This worker stopped listing (it lost the lease, or Redis is down): what it showed is not current. */
  stoppedListing?(): void;
}

/** Options of {@link startRunningClients}. */
export interface RunningClientsOptions {
  /** How the workflows are listed: {@link visibilityLister} (tests wrap it to count the listings). */
  list: ListRunningClients;
  /** Where the lease is: the token store's connection. */
  redis: RedisClient;
  /** `TOKEN_KEY_PREFIX`, under which the lease key is. */
  prefix: string;
  /** The workflow task queue: one lease per task queue, as one listing per task queue. */
  taskQueue: string;
  /** @default {@link LISTING_INTERVAL_MS} */
  intervalMs?: number;
  /** @default {@link LEASE_INTERVALS} × `intervalMs` */
  leaseTtlMs?: number;
  logger: Logger;
  /** Told when a scheduled listing fails; consumers keep the last one until the next. @default ignore */
  onError?: (error: Error) => void;
}

/** The running listing. */
export interface RunningClients {
  /** Adds a consumer; it gets every listing that ends after this call. */
  subscribe(listener: RunningClientsListener): void;
  /** Removes a consumer. */
  unsubscribe(listener: RunningClientsListener): void;
  /**
   * Lists now, after the listing in progress (one at a time), and hands the result to the
   * consumers too. Resolves with it, or with `null`
   * when this worker does not hold the lease (another one lists, or Redis is down) or has
   * stopped; rejects when the listing fails.
   */
  list(): Promise<RunningClientStates | null>;
  /** Whether this worker held the lease at its last try. */
  isListing(): boolean;
  /** Stops the timer, waits for a listing in progress and releases the lease. */
  stop(): Promise<void>;
}

/** Lists the running workflows of `taskQueue` through Temporal visibility. */
export function visibilityLister(client: Client, taskQueue: string): ListRunningClients {
  const query = `TaskQueue = '${taskQueue.replaceAll("'", "\\'")}' AND ExecutionStatus = 'Running'`;
  return async () => {
    const listed = new Map<string, string>();
    for await (const execution of client.workflow.list({ query })) {
      const clientId = execution.typedSearchAttributes.get(TokenClientId);
      const state = execution.typedSearchAttributes.get(TokenState);
      if (clientId !== undefined && state !== undefined) listed.set(clientId, state);
    }
    return listed;
  };
}

/**
 * Starts listing: tries the lease at once, then every `intervalMs`, and lists while it holds it.
 * Subscribe the consumers right after (before the first listing ends); stop it with
 * {@link RunningClients.stop}.
 */
export function startRunningClients(options: RunningClientsOptions): RunningClients {
  const { list: listRunning, redis, logger } = options;
  const onError = options.onError ?? (() => undefined);
  const intervalMs = options.intervalMs ?? LISTING_INTERVAL_MS;
  const lease = new RedisLease(
    redis,
    listingLeaseKey(options.prefix, options.taskQueue),
    options.leaseTtlMs ?? LEASE_INTERVALS * intervalMs,
  );
  const listeners = new Set<RunningClientsListener>();

  let stopped = false;
  let holding = false;
  let redisDownReported = false;

  const setHolding = (now: boolean) => {
    if (now === holding) return;
    holding = now;
    if (now) logger.info('This worker lists the running workflows for the fleet (it took the listing lease)', { key: lease.key });
    else {
      logger.info('This worker no longer lists the running workflows (the listing lease is not its own)', { key: lease.key });
      for (const listener of listeners) listener.stoppedListing?.();
    }
  };

  /** Whether this worker holds the lease, having renewed or taken it. */
  const keepLease = async (): Promise<boolean> => {
    // A client that is not connected would queue the command until it is: nobody lists meanwhile.
    // One still connecting (at start, or between attempts) is not an outage to report yet.
    if (CONNECTING.has(redis.status)) return false;
    try {
      if (redis.status !== 'ready') throw new Error(`the Redis connection is ${redis.status}`);
      const held = await lease.keep();
      redisDownReported = false;
      return held;
    } catch (err) {
      // Once per outage: the connection's own warning says the rest (worker/main.ts).
      if (!redisDownReported) {
        logger.warn('No listing of the running workflows while Redis is unavailable: the listing lease cannot be kept', {
          error: errorMessage(err),
        });
        redisDownReported = true;
      }
      return false;
    }
  };

  const listOnce = async (): Promise<RunningClientStates | null> => {
    if (stopped) return null;
    const held = await keepLease();
    setHolding(held);
    if (!held) return null;
    const clients = await listRunning();
    for (const listener of listeners) listener.listed(clients);
    return clients;
  };

  let current: Promise<unknown> = Promise.resolve();
  /** Listings running or waiting to. */
  let pending = 0;
  const list = (): Promise<RunningClientStates | null> => {
    pending++;
    const next = current.then(listOnce).finally(() => pending--);
    current = next.catch(() => undefined);
    return next;
  };

  // A listing slower than the interval (a slow visibility store) does not stack scheduled ones up
  // behind it: the tick that finds one running or waiting is skipped.
  const scheduled = () => {
    if (pending > 0) return;
    list().catch((err: unknown) => onError(err instanceof Error ? err : new Error(String(err))));
  };
  scheduled();
  const timer = setInterval(scheduled, intervalMs);
  // The workers keep the process alive; this timer must not hold up a graceful shutdown.
  timer.unref();

  return {
    subscribe: (listener) => void listeners.add(listener),
    unsubscribe: (listener) => void listeners.delete(listener),
    list,
    isListing: () => holding,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await current;
      // Another worker takes over at its next try instead of after the lease's TTL.
      if (holding && redis.status === 'ready') {
        await lease.release().catch((err: unknown) => {
          logger.warn('Could not release the listing lease: another worker takes over when it expires', { error: errorMessage(err) });
        });
      }
      holding = false;
    },
  };
}
