/**
 * Tokens that Redis lost after they were written: Redis replicates asynchronously, so a failover
 * (Sentinel promoting a replica, a cluster failing a shard over) can drop the last writes, and a
 * Redis restarted without persistence, an eviction or a FLUSHDB drops them all. The workflow still
 * holds the token's metadata and sleeps until its renewal, which may come after the older token that
 * is left in Redis (or none at all) has expired: consumers would run dry.
 *
 * The worker never keeps a token (neither in memory nor in Temporal), so the only way to write one
 * again is a new token request: for each client whose workflow is `active` with a token that is
 * still valid, and whose key in Redis is missing or holds a lower generation than the workflow
 * knows, it sends the workflow a `forceRefresh` signal naming why. The workflow coalesces it with
 * any refresh already coming and holds it to the minimum interval between forced refreshes; the new
 * token's generation follows the workflow's, so generations never go backwards even when
 * `<prefix>generations` was lost too.
 *
 * When it checks:
 * - on every (re)connection of the worker's Redis client, `afterReadyDelayMs` after it is ready:
 *   with Sentinel that is right after a failover (Sentinel disconnects the clients of a demoted
 *   master, and ioredis reconnects to the master the Sentinels name), and after any outage;
 * - every `intervalMs`, for what no reconnection announces (eviction, FLUSHDB, a failover behind a
 *   proxy or within a cluster).
 * Each check is one visibility list of the task queue's active workflows, one HMGET per client,
 * and a `status` query only for clients whose key holds an older token. Every worker of a fleet
 * checks; duplicate signals coalesce in the workflow.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from '@temporalio/common';
import type { TokenStore } from '../shared/token-store.js';
import type { RedisClient } from '../shared/redis-connection.js';
import { forceRefreshSignal, statusQuery, workflowIdFor } from '../workflows/messages.js';
import { TokenClientId, TokenExpiresAt, TokenState } from '../workflows/search-attributes.js';

/** Options of {@link startLostTokenCheck}. */
export interface LostTokenCheckOptions {
  /** The store the workflows write to; its connection's `ready` events trigger a check. */
  store: TokenStore;
  /** Lists the workflows and sends the signals. */
  client: Client;
  /** The workflow task queue (`TEMPORAL_TASK_QUEUE`): only its workflows are checked. */
  taskQueue: string;
  /** @default 60_000 */
  intervalMs?: number;
  /** How long after Redis is ready a check runs (the failover settles, visibility catches up). @default 1_000 */
  afterReadyDelayMs?: number;
  /** Tokens expiring sooner than this are left to their renewal. @default 2_000 */
  minRemainingMs?: number;
  logger: Logger;
}

/** What one check found and did. */
export interface LostTokenCheckResult {
  trigger: string;
  /** Active workflows with a token that is still valid. */
  checked: number;
  /** Clients whose key was missing. */
  missing: string[];
  /** Clients whose key held a lower generation than their workflow's. */
  behind: string[];
  /** Clients whose workflow accepted the signal. */
  signalled: number;
}

export interface LostTokenCheck {
  /** Runs one check now (after the one in progress, if any). Never rejects: failures are logged. */
  check(trigger: string): Promise<LostTokenCheckResult | null>;
  /** Stops the timers and waits for a check in progress. */
  stop(): Promise<void>;
}

/** Redis reads and signals in flight at once during a check. */
const CONCURRENCY = 50;

/** Starts checking (see the module comment for when); stop it with {@link LostTokenCheck.stop}. */
export function startLostTokenCheck(options: LostTokenCheckOptions): LostTokenCheck {
  const { store, client, taskQueue, logger } = options;
  const intervalMs = options.intervalMs ?? 60_000;
  const afterReadyDelayMs = options.afterReadyDelayMs ?? 1_000;
  const minRemainingMs = options.minRemainingMs ?? 2_000;
  const redis: RedisClient = store.redis;

  let stopped = false;
  let current: Promise<LostTokenCheckResult | null> = Promise.resolve(null);
  const pendingTimers = new Set<NodeJS.Timeout>();

  const check = (trigger: string): Promise<LostTokenCheckResult | null> => {
    current = current
      .then(() => (stopped ? null : checkOnce(trigger)))
      .catch((err: unknown) => {
        logger.warn('Lost-token check failed; the next one tries again', {
          trigger,
          error: err instanceof Error ? err.message : String(err),
        });
        return null;
      });
    return current;
  };

  async function checkOnce(trigger: string): Promise<LostTokenCheckResult> {
    const validFrom = new Date(Date.now() + minRemainingMs).toISOString();
    const query = `TaskQueue = '${taskQueue.replaceAll("'", "\\'")}' AND ExecutionStatus = 'Running' AND ${TokenState.name} = 'active' AND ${TokenExpiresAt.name} > '${validFrom}'`;
    const known: { clientId: string; expiresAt: number }[] = [];
    for await (const execution of client.workflow.list({ query })) {
      const clientId = execution.typedSearchAttributes.get(TokenClientId);
      const expiresAt = execution.typedSearchAttributes.get(TokenExpiresAt);
      if (clientId !== undefined && expiresAt !== undefined) known.push({ clientId, expiresAt: expiresAt.getTime() });
    }

    const missing: string[] = [];
    const behind: { clientId: string; stored: number; known: number }[] = [];
    await inBatches(known, async ({ clientId, expiresAt }) => {
      const stored = await store.readMetadata(clientId);
      if (stored === null) missing.push(clientId);
      // Visibility may lag behind the workflow, never ahead of Redis (the activity writes Redis
      // before the workflow records the token): an older expiry means an older token.
      else if (stored.expiresAt < expiresAt) {
        // A workflow that ended since it was listed cannot answer: nothing to write again.
        const status = await client.workflow
          .getHandle(workflowIdFor(clientId))
          .query(statusQuery)
          .catch(() => null);
        if (status?.state === 'active' && status.generation > stored.generation)
          behind.push({ clientId, stored: stored.generation, known: status.generation });
      }
    });

    let signalled = 0;
    const requests = [
      ...missing.map((clientId) => ({ clientId, reason: `token missing from Redis (${trigger})` })),
      ...behind.map((b) => ({ clientId: b.clientId, reason: `Redis holds generation ${b.stored}, the workflow ${b.known} (${trigger})` })),
    ];
    await inBatches(requests, async ({ clientId, reason }) => {
      try {
        await client.workflow.getHandle(workflowIdFor(clientId)).signal(forceRefreshSignal, { reason });
        signalled++;
      } catch (err) {
        // Stopped or removed since it was listed: nothing to write again.
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
    });
    if (requests.length > 0) {
      logger.warn('Tokens lost by Redis: asked their workflows for new ones', {
        trigger,
        missing: missing.length,
        behind: behind.length,
        signalled,
        clientIds: requests.slice(0, 20).map((r) => r.clientId),
      });
    }
    return { trigger, checked: known.length, missing, behind: behind.map((b) => b.clientId), signalled };
  }

  const later = (trigger: string, delayMs: number) => {
    if (stopped) return;
    const timer = setTimeout(() => {
      pendingTimers.delete(timer);
      void check(trigger);
    }, delayMs);
    pendingTimers.add(timer);
  };
  const onReady = () => later('Redis connection ready', afterReadyDelayMs);
  redis.on('ready', onReady);
  const interval = setInterval(() => void check('periodic check'), intervalMs);
  // A client that is ready already emits no `ready` again until it reconnects.
  if (redis.status === 'ready') onReady();

  return {
    check,
    async stop() {
      stopped = true;
      clearInterval(interval);
      for (const timer of pendingTimers) clearTimeout(timer);
      pendingTimers.clear();
      redis.off('ready', onReady);
      await current;
    },
  };
}

async function inBatches<T>(items: readonly T[], task: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += CONCURRENCY) await Promise.all(items.slice(i, i + CONCURRENCY).map(task));
}
