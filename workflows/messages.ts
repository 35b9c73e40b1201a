/**
 * The messages of the `tokenLifecycle` workflow (docs/design.md, "The workflow"). Defined once and
 * imported by the workflow and by its callers (admin API, tokenctl, the refresh-request bridge).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { FailureKind, LastError } from './failures.js';
import type { RegistrationChanges } from './registration.js';

const WORKFLOW_ID_PREFIX = 'token-lifecycle:';

/** Workflow ID of a client's workflow: one workflow per client ID. */
export function workflowIdFor(clientId: string): string {
  return `${WORKFLOW_ID_PREFIX}${clientId}`;
}

/** The client ID of a workflow ID made by {@link workflowIdFor}. */
export function clientIdOf(workflowId: string): string {
  return workflowId.startsWith(WORKFLOW_ID_PREFIX) ? workflowId.slice(WORKFLOW_ID_PREFIX.length) : workflowId;
}

/** Task queue of the workflows (and their Redis-only activities). */
export const WORKFLOW_TASK_QUEUE = 'token-lifecycle';

/**
 * Task queue of the activity that calls the IAM, derived from the workflow's task queue
 * (`token-lifecycle` → `token-lifecycle-iam`). Its server-side rate limit caps the whole fleet.
 */
export function iamTaskQueueFor(workflowTaskQueue: string): string {
  return `${workflowTaskQueue}-iam`;
}

export { TOKEN_STATES, type TokenState } from './token-states.js';
import type { TokenState } from './token-states.js';

/** What the `status` query returns. Times are Unix ms. */
export interface TokenStatus {
  clientId: string;
  state: TokenState;
  /** Why the workflow is backing off, when `state` is `backing_off`. */
  backoffReason: FailureKind | null;
  /**
   * The generation of the last token this registration stored; 0 before its first (a client
   * registered again numbers its first token after what Redis still holds).
   */
  generation: number;
  /** The fingerprint of that token (see `FINGERPRINT_PATTERN`); null before the first. */
  fingerprint: string | null;
  expiresAt: number | null;
  nextRefreshAt: number | null;
  lastError: LastError | null;
  consecutiveFailures: number;
  backoffUntil: number | null;
  /** When a pending forced refresh will run, if one is pending. */
  forcedRefreshAt: number | null;
  /**
   * Which of `secretRefs` / `keyRefs` the IAM accepted last, e.g. `secretRefs[0] file:/run/secrets/new`:
   * the rotation is finished when it is the new one. Absent without fallbacks.
   */
  credential?: string;
}

export interface ForceRefreshRequest {
  /** Free text for the operator, e.g. `401 invalid_token from orders-api`. */
  reason?: string;
  /**
   * The fingerprint of the token the caller saw rejected. A request naming a fingerprint that is no
   * longer current is ignored: that token was already replaced.
   */
  rejectedFingerprint?: string;
  /**
   * The W3C `traceparent` (Trace Context Level 1 §3.2) of the span that asked: the refresh this
   * request causes runs in that trace (docs/design.md, "Traces"). Not a secret, and no authority.
   */
  traceparent?: string;
}

export type { RegistrationChanges } from './registration.js';

/**
 * Refresh as soon as allowed (coalesced, at most once per minimum interval); ignored when it names
 * a fingerprint that is no longer current, or while the credentials are rejected. Sent by services
 * directly or by the worker for each entry of the `<prefix>refresh-requests` stream.
 */
export const forceRefreshSignal = defineSignal<[ForceRefreshRequest]>('forceRefresh');
/** Change the registration; a parked workflow starts again, and a new token is requested. */
export const reconfigureSignal = defineSignal<[RegistrationChanges]>('reconfigure');
/** Leave `credentials_rejected` and try again (after an operator fixed the credentials at the IAM). */
export const resumeSignal = defineSignal<[]>('resume');
/**
 * The token endpoint this client waited for is up again: a probe got an answer and closed its
 * shared breaker (docs/design.md, "The IAM is never hammered"). A wait for the endpoint ends now;
 * any other wait stands. Sent by the worker whose probe succeeded; names the endpoint only.
 */
export const endpointRecoveredSignal = defineSignal<[{ endpoint: string }]>('endpointRecovered');
/** End the workflow; with `purge`, also delete the token from Redis. */
export const stopSignal = defineSignal<[{ purge?: boolean }]>('stop');
/**
 * Refresh now and return the new status once the token is in Redis. Coalesces with a refresh in
 * flight or pending, and waits for the minimum interval between forced refreshes if needed.
 * Rejected with an `ApplicationFailure` whose `type` says why: `stopped`, `credentials_rejected`,
 * `backing_off` (refused before anything happens), or the failure kind of the attempt that ran.
 */
export const refreshNowUpdate = defineUpdate<TokenStatus, [{ reason?: string }]>('refreshNow');
export const statusQuery = defineQuery<TokenStatus>('status');
