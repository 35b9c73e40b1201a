/**
 * `tokenLifecycle`: one durable workflow per OAuth client ID. It acquires a client-credentials
 * token (through an activity that writes it to Redis and returns metadata only), sleeps until
 * `refreshFraction × expires_in` after the request started, and renews, forever; it backs off per
 * failure kind and parks on rejected credentials. See DESIGN.md for the contract.
 */
import * as wf from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import {
  forceRefreshSignal,
  iamTaskQueueFor,
  reconfigureSignal,
  refreshNowUpdate,
  resumeSignal,
  statusQuery,
  stopSignal,
  type TokenStatus,
} from './messages.js';
import { TokenLifecycleState, type CarriedState } from './token-lifecycle-state.js';
import type { ClientRegistration, FailureDetails, FailureKind } from './registration.js';
import { FAILURE_KINDS } from './registration.js';

export interface TokenLifecycleInput {
  registration: ClientRegistration;
  /** State handed over by continue-as-new; absent on a fresh start. */
  carried?: CarriedState;
}

/**
 * How the IAM activity is run. Temporal retries it only when the worker running it is lost (a
 * heartbeat timeout): every answer from the IAM, good or bad, comes back to the workflow as a
 * non-retryable failure type, so retry decisions stay in one place (the policy).
 */
const iamActivityOptions = (taskQueue: string): wf.ActivityOptions => ({
  taskQueue: iamTaskQueueFor(taskQueue),
  startToCloseTimeout: '60s',
  heartbeatTimeout: '10s',
  retry: {
    initialInterval: '1s',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [...FAILURE_KINDS],
  },
});

export async function tokenLifecycle(input: TokenLifecycleInput): Promise<TokenStatus> {
  const info = wf.workflowInfo();
  const { acquireToken } = wf.proxyActivities<ReturnType<typeof createActivities>>(iamActivityOptions(info.taskQueue));
  const { purgeToken } = wf.proxyActivities<ReturnType<typeof createActivities>>(readOptions());

  const s = new TokenLifecycleState(input.registration, input.carried);

  wf.setHandler(statusQuery, () => s.status());
  wf.setHandler(forceRefreshSignal, (request) => s.requestForcedRefresh(request ?? {}, Date.now()));
  wf.setHandler(reconfigureSignal, (changes) => s.reconfigure(changes ?? {}));
  wf.setHandler(resumeSignal, () => s.resume());
  wf.setHandler(stopSignal, (options) => s.requestStop(options?.purge === true));
  wf.setHandler(
    refreshNowUpdate,
    async (request) => {
      const ticket = s.requestRefreshNow(request?.reason, Date.now());
      await wf.condition(() => s.attemptsFinished >= ticket || s.stopRequested);
      return s.outcomeOfAttempt(ticket);
    },
    { validator: (_request) => s.assertRefreshNowAllowed() },
  );

  s.publish();

  const continueAsNewDue = () => s.continueAsNewDue(wf.workflowInfo().continueAsNewSuggested);
  while (!s.stopRequested) {
    if (continueAsNewDue()) {
      // Handlers must finish in this run (Temporal's rule); signals are synchronous and done, so
      // this waits only for `refreshNow` updates. One that arrives now needs the loop to run its
      // refresh: go on and continue-as-new after it.
      await wf.condition(() => wf.allHandlersFinished() || s.refreshNowPending > 0 || s.stopRequested);
      if (s.refreshNowPending > 0 || s.stopRequested) continue;
      // Everything pending travels in the carried state: generation, forced refresh, backoff, and
      // the start of the last request (the minimum interval between forced refreshes).
      await wf.continueAsNew<typeof tokenLifecycle>({ registration: s.registration, carried: s.carry() });
    }

    const wakeAt = s.nextActionAt(Date.now());
    if (wakeAt === null || wakeAt > Date.now()) {
      const seen = s.changeCount;
      // Also wake when Temporal suggests continue-as-new: signals that change nothing (stale
      // fingerprints) still grow the history while the loop sleeps.
      const woken = () => s.changeCount !== seen || s.stopRequested || continueAsNewDue();
      if (wakeAt === null) {
        await wf.condition(woken);
        continue;
      }
      const wokenEarly = await wf.condition(woken, wakeAt - Date.now(), { summary: s.waitSummary(wakeAt) });
      // Re-evaluate only when a signal may have changed what is due. When the timer fired, the
      // attempt is due: re-comparing with Date.now() could start a second timer when the task ran
      // late on a new worker after a crash, and the next replay would diverge from the history.
      if (wokenEarly) continue;
    }

    const attempt = s.beginAttempt(Date.now());
    try {
      const metadata = await acquireToken.executeWithOptions({ ...iamActivityOptions(info.taskQueue), summary: attempt.summary }, [
        s.acquireInput(attempt.generation),
      ]);
      s.recordSuccess(metadata, Date.now());
    } catch (err) {
      const { kind, message, details } = describeFailure(err);
      s.recordFailure(kind, message, details, Date.now());
    }
    s.publish();
  }

  if (s.purgeRequested) {
    await purgeToken.executeWithOptions({ summary: 'Delete the token from Redis', ...readOptions() }, [s.clientId]);
  }
  s.markStopped();
  s.publish();
  await wf.condition(wf.allHandlersFinished);
  return s.status();
}

function readOptions(): wf.ActivityOptions {
  return { startToCloseTimeout: '30s', retry: { initialInterval: '1s', maximumInterval: '30s' } };
}

/** Maps what the IAM activity threw to a failure kind; anything unexpected is a server error. */
function describeFailure(err: unknown): { kind: FailureKind; message: string; details: FailureDetails } {
  if (err instanceof wf.ActivityFailure && err.cause instanceof wf.ApplicationFailure) {
    const cause = err.cause;
    const kind = FAILURE_KINDS.find((k) => k === cause.type);
    if (kind !== undefined) {
      return { kind, message: cause.message, details: (cause.details?.[0] as FailureDetails | undefined) ?? {} };
    }
  }
  if (err instanceof wf.ActivityFailure && err.cause instanceof wf.TimeoutFailure) {
    // Every attempt lost its worker or hung past the timeouts: treat it like a blocked endpoint.
    return { kind: 'blocked', message: `Token request timed out (${err.cause.timeoutType})`, details: {} };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { kind: 'server_error', message: `Token request failed unexpectedly: ${message}`, details: {} };
}
