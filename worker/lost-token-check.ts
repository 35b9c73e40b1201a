/**
 * Writes again the tokens Redis lost (a failover, an empty restart, an eviction): asks the workflow
 * of each `active` client whose key is missing or older than its workflow's generation for a new
 * token (docs/design.md, "Tokens Redis lost").
 *
 * The active clients come from the fleet's one listing of the running workflows
 * (worker/running-clients.ts): only the worker holding the listing lease checks, on each of its
 * listings and, with a fresh listing, after its Redis connection is ready.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from '@temporalio/common';
import type { TokenStore } from '../shared/token-store.js';
import type { RedisClient } from '../shared/redis-connection.js';
import { forEachConcurrently } from '../shared/for-each-concurrently.js';
import { forceRefreshSignal, statusQuery, workflowIdFor } from '../workflows/messages.js';
import { DEFAULT_POLICY, nextRefreshAt } from '../workflows/policy.js';
import type { RunningClients, RunningClientsListener, RunningClientStates } from './running-clients.js';

/** Options of {@link startLostTokenCheck}. */
export interface LostTokenCheckOptions {
  /** The store the workflows write to; its connection's `ready` events trigger a check. */
  store: TokenStore;
  /** Sends the queries and signals. */
  client: Client;
  /** The listing of the running workflows: each of its listings is checked, and a check after `ready` asks it for a fresh one. */
  runningClients: RunningClients;
  /** How long after Redis is ready a check runs (the failover settles, visibility catches up). @default 1_000 */
  afterReadyDelayMs?: number;
  logger: Logger;
  /** Told how many workflows were asked for a new token, by why. @default ignore */
  onRewritten?: (reason: LostTokenReason, count: number) => void;
}

/** Why a token is written again: its key is missing, or holds an older generation than its workflow's. */
export type LostTokenReason = 'missing' | 'behind';

/** What one check found and did. */
export interface LostTokenCheckResult {
  trigger: string;
  /** Active workflows. */
  checked: number;
  /** Clients whose key was missing. */
  missing: string[];
  /** Clients whose key held a lower generation than their workflow's. */
  behind: string[];
  /** Workflows asked for their generation with the `status` query. */
  queried: number;
  /** Clients whose workflow accepted the signal. */
  signalled: number;
}

export interface LostTokenCheck {
  /**
   * Runs one check now (after the one in progress, if any) on a fresh listing; with `everyKey`,
   * every present key is compared with its workflow, not only those past their renewal point.
   * Resolves with `null` when this worker does not list (another one holds the listing lease, or
   * Redis is down). Never rejects: failures are logged.
   */
  check(trigger: string, options?: { everyKey?: boolean }): Promise<LostTokenCheckResult | null>;
  /** Stops the timers and waits for a check in progress. */
  stop(): Promise<void>;
}

/** Redis reads and signals in flight at once during a check. */
const CONCURRENCY = 50;

/** Starts checking (when: docs/design.md, "Tokens Redis lost"); stop it with {@link LostTokenCheck.stop}. */
export function startLostTokenCheck(options: LostTokenCheckOptions): LostTokenCheck {
  const { store, client, runningClients, logger } = options;
  const afterReadyDelayMs = options.afterReadyDelayMs ?? 1_000;
  const redis: RedisClient = store.redis;

  let stopped = false;
  let current: Promise<LostTokenCheckResult | null> = Promise.resolve(null);
  /** Checks running or waiting to. */
  let pending = 0;
  const pendingTimers = new Set<NodeJS.Timeout>();

  const run = (
    trigger: string,
    everyKey: boolean,
    listing: () => Promise<RunningClientStates | null>,
  ): Promise<LostTokenCheckResult | null> => {
    pending++;
    current = current
      .then(async () => {
        if (stopped) return null;
        const clients = await listing();
        if (clients === null) {
          logger.debug('Lost-token check skipped: another worker of the fleet lists the workflows', { trigger });
          return null;
        }
        const active = [...clients].filter(([, state]) => state === 'active').map(([clientId]) => clientId);
        return checkOnce(trigger, everyKey, active);
      })
      .catch((err: unknown) => {
        logger.warn('Lost-token check failed; the next one tries again', {
          trigger,
          error: err instanceof Error ? err.message : String(err),
        });
        return null;
      })
      .finally(() => pending--);
    return current;
  };

  const check = (trigger: string, { everyKey = false } = {}): Promise<LostTokenCheckResult | null> =>
    run(trigger, everyKey, () => runningClients.list());

  // Each listing is checked, unless a check runs or waits: that one lists afresh, and a slow check
  // must not stack up the listings that come meanwhile (the next one is checked).
  const listener: RunningClientsListener = {
    listed(clients) {
      if (pending === 0 && !stopped) void run('periodic check', false, () => Promise.resolve(clients));
    },
  };
  runningClients.subscribe(listener);

  async function checkOnce(trigger: string, everyKey: boolean, known: readonly string[]): Promise<LostTokenCheckResult> {
    const missing: string[] = [];
    const behind: { clientId: string; stored: number; known: number }[] = [];
    let queried = 0;
    await forEachConcurrently(known, CONCURRENCY, async (clientId) => {
      const stored = await store.readMetadata(clientId);
      if (stored === null) missing.push(clientId);
      else if (everyKey || pastRenewalPoint(stored, Date.now())) {
        queried++;
        // A workflow that ended since it was listed cannot answer: nothing to write again.
        const status = await client.workflow
          .getHandle(workflowIdFor(clientId))
          .query(statusQuery)
          .catch(() => null);
        if (status?.state === 'active' && status.generation > stored.generation)
          behind.push({ clientId, stored: stored.generation, known: status.generation });
      }
    });

    const signalledFor: Record<LostTokenReason, number> = { missing: 0, behind: 0 };
    const requests = [
      ...missing.map((clientId) => ({ clientId, why: 'missing' as const, reason: `token missing from Redis (${trigger})` })),
      ...behind.map((b) => ({
        clientId: b.clientId,
        why: 'behind' as const,
        reason: `Redis holds generation ${b.stored}, the workflow ${b.known} (${trigger})`,
      })),
    ];
    try {
      await forEachConcurrently(requests, CONCURRENCY, async ({ clientId, why, reason }) => {
        try {
          await client.workflow.getHandle(workflowIdFor(clientId)).signal(forceRefreshSignal, { reason });
          signalledFor[why]++;
        } catch (err) {
          // Stopped or removed since it was listed: nothing to write again.
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
      });
    } finally {
      // Counted even when a later signal failed: those sent were sent.
      for (const why of ['missing', 'behind'] as const) options.onRewritten?.(why, signalledFor[why]);
    }
    const signalled = signalledFor.missing + signalledFor.behind;
    if (requests.length > 0) {
      logger.warn('Tokens lost by Redis: asked their workflows for new ones', {
        trigger,
        missing: missing.length,
        behind: behind.length,
        signalled,
        clientIds: requests.slice(0, 20).map((r) => r.clientId),
      });
    }
    const result = { trigger, checked: known.length, queried, missing, behind: behind.map((b) => b.clientId), signalled };
    logger.debug('Lost-token check done', { ...result, missing: missing.length, behind: behind.length });
    return result;
  }

  const later = (trigger: string, everyKey: boolean) => {
    if (stopped) return;
    const timer = setTimeout(() => {
      pendingTimers.delete(timer);
      void check(trigger, { everyKey });
    }, afterReadyDelayMs);
    pendingTimers.add(timer);
  };
  // The first connection finds what an outage before the start left (missing keys, tokens past
  // their renewal point) without a query per workflow: each redeploy would otherwise send one for
  // every client, each a replay where no worker has it cached.
  let connectedBefore = false;
  const onReady = () => {
    later(connectedBefore ? 'Redis reconnected' : 'Redis connection ready', connectedBefore);
    connectedBefore = true;
  };
  redis.on('ready', onReady);
  // A client that is ready already emits no `ready` again until it reconnects.
  if (redis.status === 'ready') onReady();

  return {
    check,
    async stop() {
      stopped = true;
      runningClients.unsubscribe(listener);
      for (const timer of pendingTimers) clearTimeout(timer);
      pendingTimers.clear();
      redis.off('ready', onReady);
      await current;
    },
  };
}

/** Whether a healthy workflow under the default policy would have renewed this token already. */
function pastRenewalPoint(stored: { obtainedAt: number; expiresAt: number }, now: number): boolean {
  // Jitter only moves a renewal earlier: without it, the latest point the policy allows.
  const token = { requestStartedAt: stored.obtainedAt, expiresInSeconds: (stored.expiresAt - stored.obtainedAt) / 1000 };
  return now >= nextRefreshAt(token, { ...DEFAULT_POLICY, jitterFraction: 0 }, stored.obtainedAt.toString());
}
