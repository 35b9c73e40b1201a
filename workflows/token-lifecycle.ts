/**
 * `tokenLifecycle`: one durable workflow per OAuth client ID (docs/design.md, "The workflow"). It
 * acquires a client-credentials token (through an activity that writes it to Redis and returns
 * metadata only), sleeps until `refreshFraction × expires_in` after the request left, and renews,
 * forever; it backs off per failure kind and parks on rejected credentials. The transitions are
 * workflows/lifecycle-state.ts; how they show in the Temporal UI, workflows/lifecycle-presentation.ts.
 */
import * as wf from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import { FAILURE_KINDS, type FailureDetails, type FailureKind } from './failures.js';
import { attemptSummary, publishLifecycle, showForcedRefreshDecision, waitSummary } from './lifecycle-presentation.js';
import { TokenLifecycleState, type CarriedState } from './lifecycle-state.js';
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
import type { ClientRegistration } from './registration.js';
import { errorMessage } from '../shared/error-message.js';

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

/** How the Redis-only activities (purge) are run: retried until Redis answers. */
const redisActivityOptions: wf.ActivityOptions = { startToCloseTimeout: '30s', retry: { initialInterval: '1s', maximumInterval: '30s' } };

export async function tokenLifecycle(input: TokenLifecycleInput): Promise<TokenStatus> {
  const info = wf.workflowInfo();
  const { acquireToken } = wf.proxyActivities<ReturnType<typeof createActivities>>(iamActivityOptions(info.taskQueue));
  const { purgeToken } = wf.proxyActivities<ReturnType<typeof createActivities>>(redisActivityOptions);

  const lifecycle = new TokenLifecycleState(input.registration, input.carried, showForcedRefreshDecision);

  wf.setHandler(statusQuery, () => lifecycle.status());
  wf.setHandler(forceRefreshSignal, (request) => lifecycle.requestForcedRefresh(request ?? {}, Date.now()));
  wf.setHandler(reconfigureSignal, (changes) => lifecycle.reconfigure(changes ?? {}));
  wf.setHandler(resumeSignal, () => lifecycle.resume());
  wf.setHandler(stopSignal, (options) => lifecycle.requestStop(options?.purge === true));
  wf.setHandler(
    refreshNowUpdate,
    async (request) => {
      const ticket = lifecycle.requestRefreshNow(request?.reason, Date.now());
      await wf.condition(() => lifecycle.attemptsFinished >= ticket || lifecycle.stopRequested);
      return lifecycle.outcomeOfAttempt(ticket);
    },
    { validator: (_request) => lifecycle.assertRefreshNowAllowed() },
  );

  publishLifecycle(lifecycle);

  const continueAsNewDue = () => lifecycle.continueAsNewDue(wf.workflowInfo().continueAsNewSuggested);
  while (!lifecycle.stopRequested) {
    if (continueAsNewDue()) {
      // Handlers must finish in this run (Temporal's rule); signals are synchronous and done, so
      // this waits only for `refreshNow` updates. One that arrives now needs the loop to run its
      // refresh: go on and continue-as-new after it.
      await wf.condition(() => wf.allHandlersFinished() || lifecycle.refreshNowPending > 0 || lifecycle.stopRequested);
      if (lifecycle.refreshNowPending > 0 || lifecycle.stopRequested) continue;
      // Everything pending travels in the carried state: generation, forced refresh, backoff, and
      // the start of the last request (the minimum interval between forced refreshes).
      await wf.continueAsNew<typeof tokenLifecycle>({ registration: lifecycle.registration, carried: lifecycle.carry() });
    }

    const wakeAt = lifecycle.nextActionAt(Date.now());
    if (wakeAt === null || wakeAt > Date.now()) {
      const seen = lifecycle.changeCount;
      // Also wake when Temporal suggests continue-as-new: signals that change nothing (stale
      // fingerprints) still grow the history while the loop sleeps.
      const woken = () => lifecycle.changeCount !== seen || lifecycle.stopRequested || continueAsNewDue();
      if (wakeAt === null) {
        await wf.condition(woken);
        continue;
      }
      const wokenEarly = await wf.condition(woken, wakeAt - Date.now(), { summary: waitSummary(lifecycle, wakeAt) });
      // Re-evaluate only when a signal may have changed what is due. When the timer fired, the
      // attempt is due: re-comparing with Date.now() could start a second timer when the task ran
      // late on a new worker after a crash, and the next replay would diverge from the history.
      if (wokenEarly) continue;
    }

    const summary = attemptSummary(lifecycle, Date.now());
    const generation = lifecycle.beginAttempt(Date.now());
    try {
      const metadata = await acquireToken.executeWithOptions({ ...iamActivityOptions(info.taskQueue), summary }, [
        lifecycle.acquireInput(generation),
      ]);
      lifecycle.recordSuccess(metadata, Date.now());
    } catch (err) {
      const { kind, message, details } = describeFailure(err);
      lifecycle.recordFailure(kind, message, details, Date.now());
    }
    publishLifecycle(lifecycle);
  }

  if (lifecycle.purgeRequested) {
    await purgeToken.executeWithOptions({ summary: 'Delete the token from Redis', ...redisActivityOptions }, [lifecycle.clientId]);
  }
  lifecycle.markStopped();
  publishLifecycle(lifecycle);
  await wf.condition(wf.allHandlersFinished);
  return lifecycle.status();
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
  return { kind: 'server_error', message: `Token request failed unexpectedly: ${errorMessage(err)}`, details: {} };
}
