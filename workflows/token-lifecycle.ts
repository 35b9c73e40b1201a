/**
 * `tokenLifecycle`: one durable workflow per OAuth client ID (docs/design.md, "The workflow"). It
 * acquires a client-credentials token (through an activity that writes it to Redis and returns
 * metadata only), sleeps until `refreshFraction × expires_in` after the request left, and renews,
 * forever; it backs off per failure kind and parks on rejected credentials. The transitions are
 * workflows/lifecycle-state.ts; how they show in the Temporal UI, workflows/lifecycle-presentation.ts.
 */
import * as wf from '@temporalio/workflow';
import type { createActivities } from '../activities/index.js';
import type { AcquireTokenInput } from '../activities/acquire-token.js';
import { FAILURE_KINDS, readFailureDetails, type FailureDetails, type FailureKind } from './failures.js';
import { attemptSummary, publishLifecycle, showForcedRefreshDecision, waitSummary } from './lifecycle-presentation.js';
import { TokenLifecycleState, type CarriedState } from './lifecycle-state.js';
import {
  endpointRecoveredSignal,
  forceRefreshSignal,
  iamTaskQueueFor,
  reconfigureSignal,
  refreshNowUpdate,
  resumeSignal,
  statusQuery,
  stopSignal,
  type TokenStatus,
} from './messages.js';
import { MAX_CYCLES_PER_RUN_BEFORE_PATCH } from './policy.js';
import type { TokenMetadata } from './token-metadata.js';
import { inRequesterTrace } from './requester-trace.js';
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

/**
 * How the IAM activity runs as a local activity (docs/design.md, "Local renewals"): inside the
 * workflow task the renewal timer woke, one attempt, every answer a non-retryable failure type as
 * from the queue. Its worker's loss times out that task, and the worker that takes the task over
 * runs the request again, as a heartbeat timeout does for the queued activity.
 */
const localIamActivityOptions: wf.LocalActivityOptions = {
  startToCloseTimeout: '60s',
  retry: { maximumAttempts: 1, nonRetryableErrorTypes: [...FAILURE_KINDS] },
};

/**
 * The patch by which a token that is current is renewed by a local activity (docs/design.md,
 * "Local renewals"): one workflow task and no activity task per cycle. A run that began before
 * keeps the queued activity for every request (Temporal's determinism rule).
 */
const LOCAL_RENEWALS_PATCH = 'local-renewals';

/**
 * The patch of the loop that leaves nothing behind per cycle (docs/design.md, "Continue-as-new"):
 * the loop runs in a non-cancellable scope and sleeps without a condition's timeout, and the default
 * `maxCyclesPerRun` fell to 50 (see {@link MAX_CYCLES_PER_RUN_BEFORE_PATCH}). A run that began
 * before keeps the old loop and bound, or its history would not replay (Temporal's determinism rule).
 */
const LEAN_CYCLES_PATCH = 'lean-cycles';

/**
 * The patch that keeps the expiry times out of the search attributes while a client is `active`
 * (docs/design.md, "In the Temporal UI"): they changed at every renewal, so every cycle cost an
 * upsert, a billable action. A run that began before keeps upserting them (Temporal's determinism rule).
 */
const ACTIVE_WITHOUT_TIMES_PATCH = 'active-without-times';

/**
 * The patch by which a forced refresh asked for during an attempt outlives that attempt when its
 * requester may have seen the attempt's token (docs/design.md, "The forced-refresh path"). Asked
 * only where it changes the commands, so only runs that meet the case carry its marker.
 */
const FORCED_REFRESH_OUTLIVES_ATTEMPT_PATCH = 'forced-refresh-outlives-attempt';

/**
 * The patches every run asks for as it starts, so a run that lacks one in its
 * `TemporalChangeVersion` search attribute began before it: what tells when a patch can be
 * deprecated (docs/design.md, "Retiring a patch"). Not {@link FORCED_REFRESH_OUTLIVES_ATTEMPT_PATCH},
 * asked only where it changes the commands: a run without it need not be older.
 */
export const PATCHES_OF_EVERY_RUN = [LEAN_CYCLES_PATCH, ACTIVE_WITHOUT_TIMES_PATCH, LOCAL_RENEWALS_PATCH] as const;

/** The `traceparent` of the forced-refresh request the next attempt answers, if it sent one. */
interface RequesterTrace {
  traceparent: string | undefined;
}

/** Shows the lifecycle's state to operators: search attributes and current details. */
type Publish = () => void;

/** Sleeps until `wakeAt` unless `woken()` becomes true first; resolves true when woken early. */
type WaitUntil = (wakeAt: number, woken: () => boolean, summary: string) => Promise<boolean>;

/**
 * The wait of runs before {@link LEAN_CYCLES_PATCH}: a condition with a timeout. Each call leaves a
 * cancellation scope and its cancellation failure reachable from the root scope until the run ends.
 */
const waitWithConditionTimeout: WaitUntil = (wakeAt, woken, summary) => wf.condition(woken, wakeAt - Date.now(), { summary });

/**
 * The wait of {@link LEAN_CYCLES_PATCH}, in a non-cancellable scope, where neither the timer nor the
 * condition registers with a scope that outlives it. When woken early the timer is left to fire
 * unheard (a non-cancellable timer cannot be cancelled): it costs an event, and only on a signal.
 */
const waitWithTimer: WaitUntil = async (wakeAt, woken, summary) => {
  let slept = false;
  void wf.sleep(wakeAt - Date.now(), { summary }).then(() => (slept = true));
  await wf.condition(() => slept || woken());
  return !slept;
};

type Activities = ReturnType<typeof wf.proxyActivities<ReturnType<typeof createActivities>>>;
type PurgeToken = Activities['purgeToken'];

/** Sends one token request, as a local activity or from the IAM task queue. */
type AcquireToken = (input: AcquireTokenInput, options: { local: boolean; summary: string }) => Promise<TokenMetadata>;

/** How the Redis-only activities (purge) are run: retried until Redis answers. */
const redisActivityOptions: wf.ActivityOptions = { startToCloseTimeout: '30s', retry: { initialInterval: '1s', maximumInterval: '30s' } };

export async function tokenLifecycle(input: TokenLifecycleInput): Promise<TokenStatus> {
  const info = wf.workflowInfo();
  const queued = wf.proxyActivities<ReturnType<typeof createActivities>>(iamActivityOptions(info.taskQueue)).acquireToken;
  const local = wf.proxyLocalActivities<ReturnType<typeof createActivities>>(localIamActivityOptions).acquireToken;
  const { purgeToken } = wf.proxyActivities<ReturnType<typeof createActivities>>(redisActivityOptions);

  const lean = wf.patched(LEAN_CYCLES_PATCH);
  const localRenewals = wf.patched(LOCAL_RENEWALS_PATCH);
  const acquireToken: AcquireToken = (request, options) =>
    options.local
      ? local.executeWithOptions({ ...localIamActivityOptions, summary: options.summary }, [request])
      : queued.executeWithOptions({ ...iamActivityOptions(info.taskQueue), summary: options.summary }, [request]);
  const defaults = lean ? {} : { maxCyclesPerRun: MAX_CYCLES_PER_RUN_BEFORE_PATCH };
  const lifecycle = new TokenLifecycleState(input.registration, input.carried, showForcedRefreshDecision, defaults, () =>
    wf.patched(FORCED_REFRESH_OUTLIVES_ATTEMPT_PATCH),
  );
  // Not carried across continue-as-new: a forced refresh pending then runs outside the requester's trace.
  const requesterTrace: RequesterTrace = { traceparent: undefined };
  const timesWhileActive = !wf.patched(ACTIVE_WITHOUT_TIMES_PATCH);
  const publish: Publish = () => publishLifecycle(lifecycle, { timesWhileActive });

  wf.setHandler(statusQuery, () => lifecycle.status());
  wf.setHandler(forceRefreshSignal, (request) => {
    lifecycle.requestForcedRefresh(request ?? {}, Date.now());
    // The next attempt runs in the trace of the latest request it answers (docs/design.md, "Traces").
    if (request?.traceparent !== undefined && lifecycle.status().forcedRefreshAt !== null) requesterTrace.traceparent = request.traceparent;
  });
  wf.setHandler(reconfigureSignal, (changes) => lifecycle.reconfigure(changes ?? {}));
  wf.setHandler(resumeSignal, () => lifecycle.resume());
  wf.setHandler(endpointRecoveredSignal, () => lifecycle.endpointRecovered(Date.now()));
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

  publish();

  if (!lean) {
    await renewUntilStopped(lifecycle, publish, acquireToken, localRenewals, waitWithConditionTimeout, requesterTrace);
    return stop(lifecycle, publish, purgeToken);
  }
  // In the non-cancellable scope a cancellation reaches nothing: take it as a stop (the token stays
  // in Redis until it expires, as with `tokenctl remove` without --purge), then end as cancelled.
  let cancellation: Error | undefined;
  wf.CancellationScope.current().cancelRequested.catch((err: unknown) => {
    cancellation = err instanceof Error ? err : new wf.CancelledFailure('Workflow cancelled');
    lifecycle.requestStop(false);
  });
  const status = await wf.CancellationScope.nonCancellable(async () => {
    await renewUntilStopped(lifecycle, publish, acquireToken, localRenewals, waitWithTimer, requesterTrace);
    return stop(lifecycle, publish, purgeToken);
  });
  if (cancellation !== undefined) throw cancellation;
  return status;
}

/** After the loop: purge if asked, show the stopped state, and let every handler finish (Temporal's rule). */
async function stop(lifecycle: TokenLifecycleState, publish: Publish, purgeToken: PurgeToken): Promise<TokenStatus> {
  if (lifecycle.purgeRequested) {
    await purgeToken.executeWithOptions({ summary: 'Delete the token from Redis', ...redisActivityOptions }, [lifecycle.clientId]);
  }
  lifecycle.markStopped();
  publish();
  await wf.condition(wf.allHandlersFinished);
  return lifecycle.status();
}

/** The loop of docs/design.md, "The workflow": sleep until something is due, request a token, again. */
async function renewUntilStopped(
  lifecycle: TokenLifecycleState,
  publish: Publish,
  acquireToken: AcquireToken,
  localRenewals: boolean,
  waitUntil: WaitUntil,
  requesterTrace: RequesterTrace,
): Promise<void> {
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
      const wokenEarly = await waitUntil(wakeAt, woken, waitSummary(lifecycle, wakeAt));
      // Re-evaluate only when a signal may have changed what is due. When the timer fired, the
      // attempt is due: re-comparing with Date.now() could start a second timer when the task ran
      // late on a new worker after a crash, and the next replay would diverge from the history.
      if (wokenEarly) continue;
    }

    const summary = attemptSummary(lifecycle, Date.now());
    const local = localRenewals && lifecycle.mayRenewLocally;
    const generation = lifecycle.beginAttempt(Date.now());
    const { traceparent } = requesterTrace;
    requesterTrace.traceparent = undefined;
    try {
      const metadata = await inRequesterTrace(
        traceparent,
        { 'token_lifecycle.client_id': lifecycle.clientId, 'token_lifecycle.generation': generation },
        () => acquireToken(lifecycle.acquireInput(generation), { local, summary }),
      );
      lifecycle.recordSuccess(metadata, local ? localAttemptEndedAt(metadata.obtainedAt) : Date.now());
    } catch (err) {
      const { kind, message, details } = describeFailure(err);
      lifecycle.recordFailure(kind, message, details, local ? localAttemptEndedAt(details.failedAt) : Date.now());
    }
    publish();
  }
}

/**
 * When a local attempt ended: the workflow's clock, or the activity's if later. The workflow's clock
 * stands still within a workflow task, and a local activity runs inside one (docs/design.md, "Local
 * renewals"): a wait counted from the task's start would end early by the request's time. (A queued
 * activity's outcome comes in a later task, whose clock is past it.)
 */
function localAttemptEndedAt(activityClock: number | undefined): number {
  return Math.max(Date.now(), activityClock ?? 0);
}

/**
 * Maps what the IAM activity threw to a failure kind; anything unexpected is a server error. A
 * queued activity's failure comes wrapped in an `ActivityFailure`; a local activity's, as the SDK's
 * core records it in the marker, comes as it was thrown (or as the timeout that ended it).
 */
function describeFailure(err: unknown): { kind: FailureKind; message: string; details: FailureDetails } {
  const cause = err instanceof wf.ActivityFailure ? err.cause : err;
  if (cause instanceof wf.ApplicationFailure) {
    const kind = FAILURE_KINDS.find((k) => k === cause.type);
    if (kind !== undefined) {
      return { kind, message: cause.message, details: readFailureDetails(cause.details?.[0]) };
    }
  }
  if (cause instanceof wf.TimeoutFailure) {
    // Every attempt lost its worker or hung past the timeouts: treat it like a blocked endpoint.
    return { kind: 'blocked', message: `Token request timed out (${cause.timeoutType})`, details: {} };
  }
  return { kind: 'server_error', message: `Token request failed unexpectedly: ${errorMessage(err)}`, details: {} };
}
