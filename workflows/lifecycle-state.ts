/**
 * The state machine of one client's token lifecycle (docs/design.md, "States and transitions"):
 * what each message and each attempt's outcome does to the state. Deterministic: times come in as
 * parameters (the workflow passes its own `Date.now()`), decisions come from the pure policy
 * module. How the state is shown (search attributes, current details, summaries, metrics) is
 * workflows/lifecycle-presentation.ts.
 */
import * as wf from '@temporalio/workflow';
import type { AcquireTokenInput } from '../activities/acquire-token.js';
import { isRetryable, type FailureDetails, type FailureKind, type LastError } from './failures.js';
import type { ForceRefreshRequest, TokenState, TokenStatus } from './messages.js';
import {
  backoffDelayMs,
  decideForcedRefresh,
  isEndpointDownKind,
  renewalAt,
  resolvePolicy,
  type PolicyOverrides,
  type RefreshPolicy,
} from './policy.js';
import { applyRegistrationChanges, type ClientRegistration, type RegistrationChanges } from './registration.js';
import type { TokenMetadata } from './token-metadata.js';

/** What continue-as-new hands to the next run, so nothing pending is lost (docs/design.md, "Continue-as-new"). */
export interface CarriedState {
  state: TokenState;
  /**
   * False until a token request of this lifecycle succeeded: until then `generation` does not
   * account for what Redis held before the start, and requests ask the activity to number after
   * it (`afterStoredGeneration`). Absent in states carried by older runs, which had read it.
   */
  generationKnown?: boolean;
  backoffReason: FailureKind | null;
  generation: number;
  fingerprint: string | null;
  expiresAt: number | null;
  nextRefreshAt: number | null;
  /** When the last token request left the worker, or was scheduled (the minimum interval counts from it). */
  lastRequestStartedAt: number | null;
  consecutiveFailures: number;
  backoffUntil: number | null;
  rejectedAt: number | null;
  lastError: LastError | null;
  forced: PendingForcedRefresh | null;
  /** Which fallback credential the IAM accepted last (`TokenMetadata.credential`); absent without fallbacks. */
  credential?: string;
}

/** A forced refresh that is due at `notBefore`. */
export interface PendingForcedRefresh {
  notBefore: number;
  reason: string;
}

/**
 * What the workflow did with a forced-refresh request (`forceRefresh` signal, refresh-requests
 * stream entry, `refreshNow` update), the `decision` tag of `token_forced_refreshes`:
 * - `scheduled`: a refresh is now pending (at once, or when the minimum interval has passed);
 * - `coalesced`: joined a refresh already pending or in flight: no extra request;
 * - `ignored_stale`: named a fingerprint that is no longer current (already rotated);
 * - `ignored_parked`: the credentials were rejected; only `resume`/`reconfigure` start it again.
 */
export type ForcedRefreshDecision = 'scheduled' | 'coalesced' | 'ignored_stale' | 'ignored_parked';

/** Told about each forced-refresh decision: signal handlers cannot return one, so it is shown instead. */
export type ForcedRefreshObserver = (clientId: string, decision: ForcedRefreshDecision) => void;

/**
 * Says whether a forced refresh asked for during an attempt may outlive that attempt's success
 * (docs/design.md, "The forced-refresh path"). The workflow answers with a Temporal patch, asked
 * only where the answer changes the commands: histories recorded before the rule still replay.
 */
export type ForcedRefreshOutlivesAttemptGate = () => boolean;

/** Distinct unknown fingerprints held during one attempt; more are ignored as stale. */
const MAX_AWAITING_ATTEMPT = 16;

function initialState(): CarriedState {
  return {
    state: 'acquiring',
    generationKnown: false,
    backoffReason: null,
    generation: 0,
    fingerprint: null,
    expiresAt: null,
    nextRefreshAt: null,
    lastRequestStartedAt: null,
    consecutiveFailures: 0,
    backoffUntil: null,
    rejectedAt: null,
    lastError: null,
    forced: null,
  };
}

export class TokenLifecycleState {
  registration: ClientRegistration;
  private policy: RefreshPolicy;
  /** The durable part of the state: what continue-as-new carries. */
  private carried: CarriedState;

  /** Bumped by every message that may change what is due, to wake the main loop. */
  changeCount = 0;
  stopRequested = false;
  purgeRequested = false;
  attemptsStarted = 0;
  attemptsFinished = 0;
  private attemptInFlight = false;
  /**
   * Requests that named a fingerprint other than the current one while a token request was in
   * flight: it may name the token that request just wrote to Redis (a service can read it and
   * see it rejected before the workflow learns the result; Temporal also delivers signals before
   * an activity's result in the same workflow task). Decided when the attempt ends. Never
   * carried: continue-as-new happens only between attempts.
   */
  private awaitingAttempt = new Map<string, string>();
  /**
   * A forced refresh was asked for during the attempt in flight by someone who may already have
   * seen that attempt's token (no fingerprint named, or a `reconfigure`): that token cannot satisfy
   * it. Never carried: continue-as-new happens only between attempts.
   */
  private forcedOutlivesAttempt = false;
  private refreshNowWaiting = 0;
  private lastOutcome: { attempt: number; error: LastError | null } | null = null;
  private cyclesThisRun = 0;

  /**
   * @param defaults - Policy values to use where the registration is silent, instead of
   *   `DEFAULT_POLICY`'s: the bounds a run that began under older code keeps.
   * @param forcedRefreshOutlivesAttempt - False in runs recorded before that rule (see
   *   {@link ForcedRefreshOutlivesAttemptGate}).
   */
  constructor(
    registration: ClientRegistration,
    carried: CarriedState | undefined,
    private readonly onForcedRefresh: ForcedRefreshObserver = () => undefined,
    private readonly defaults: PolicyOverrides = {},
    private readonly forcedRefreshOutlivesAttempt: ForcedRefreshOutlivesAttemptGate = () => true,
  ) {
    this.registration = registration;
    this.policy = this.resolvePolicy();
    this.carried = carried ?? initialState();
  }

  private resolvePolicy(): RefreshPolicy {
    return resolvePolicy({ ...this.defaults, ...this.registration.policy });
  }

  get clientId(): string {
    return this.registration.clientId;
  }

  /** The state as it is now, for showing it (read-only). */
  get current(): Readonly<CarriedState> {
    return this.carried;
  }

  status(): TokenStatus {
    const c = this.carried;
    return {
      clientId: this.clientId,
      state: c.state,
      backoffReason: c.state === 'backing_off' ? c.backoffReason : null,
      generation: c.generation,
      fingerprint: c.fingerprint,
      expiresAt: c.expiresAt,
      nextRefreshAt: c.nextRefreshAt,
      lastError: c.lastError,
      consecutiveFailures: c.consecutiveFailures,
      backoffUntil: c.state === 'backing_off' ? c.backoffUntil : null,
      forcedRefreshAt: c.forced?.notBefore ?? null,
      ...(c.credential !== undefined && { credential: c.credential }),
    };
  }

  carry(): CarriedState {
    return { ...this.carried };
  }

  // ---- messages ------------------------------------------------------------------------------

  requestForcedRefresh(request: ForceRefreshRequest, now: number): void {
    if (this.stopRequested) return;
    if (this.carried.state === 'credentials_rejected') {
      // A new token needs new credentials first; retrying these is what gets an IP blocked.
      this.onForcedRefresh(this.clientId, 'ignored_parked');
      return;
    }
    const decision = decideForcedRefresh(
      request,
      { fingerprint: this.carried.fingerprint ?? undefined, lastRequestStartedAt: this.carried.lastRequestStartedAt ?? undefined },
      now,
      this.policy,
    );
    if (
      decision.action === 'ignore' &&
      this.attemptInFlight &&
      request.rejectedFingerprint !== undefined &&
      this.awaitingAttempt.size < MAX_AWAITING_ATTEMPT
    ) {
      if (!this.awaitingAttempt.has(request.rejectedFingerprint))
        this.awaitingAttempt.set(request.rejectedFingerprint, request.reason ?? 'forced refresh');
      return;
    }
    if (decision.action === 'ignore') {
      this.onForcedRefresh(this.clientId, 'ignored_stale');
      return;
    }
    // A request naming the current token is answered by any newer one, the one in flight
    // included. One naming none may come from someone who has seen the token in flight already.
    const outlivesAttempt = request.rejectedFingerprint === undefined;
    this.onForcedRefresh(this.clientId, this.refreshAlreadyComing(outlivesAttempt) ? 'coalesced' : 'scheduled');
    this.scheduleForced(decision.notBefore, request.reason ?? 'forced refresh', outlivesAttempt);
  }

  /** Returns the attempt whose outcome answers this request: one that starts after it was asked. */
  requestRefreshNow(reason: string | undefined, now: number): number {
    this.refreshNowWaiting++;
    if (this.attemptInFlight && !this.forcedRefreshOutlivesAttempt()) {
      // Runs recorded before the rule answered with the attempt in flight.
      this.onForcedRefresh(this.clientId, 'coalesced');
      return this.attemptsStarted;
    }
    this.onForcedRefresh(this.clientId, this.refreshAlreadyComing(true) ? 'coalesced' : 'scheduled');
    const decision = decideForcedRefresh(
      {},
      { fingerprint: undefined, lastRequestStartedAt: this.carried.lastRequestStartedAt ?? undefined },
      now,
      this.policy,
    );
    if (decision.action === 'schedule') this.scheduleForced(decision.notBefore, reason ?? 'refreshNow', true);
    return this.attemptsStarted + 1;
  }

  /** Updates waiting for an attempt; continue-as-new waits until there are none. */
  get refreshNowPending(): number {
    return this.refreshNowWaiting;
  }

  /**
   * Update validator: rejects a refresh that cannot happen now, with the reason as the failure's
   * message and a stable `type` (`stopped`, `credentials_rejected`, `backing_off`). A rejected
   * update leaves no trace in the history.
   */
  assertRefreshNowAllowed(): void {
    const reject = (type: string, message: string) => {
      throw wf.ApplicationFailure.create({ type, message, nonRetryable: true });
    };
    const c = this.carried;
    if (this.stopRequested || c.state === 'stopped') reject('stopped', `${this.clientId} is stopped`);
    if (c.state === 'credentials_rejected') {
      reject(
        'credentials_rejected',
        `${this.clientId}: the IAM rejected the credentials (${c.lastError?.message ?? 'unknown'}); fix them, then resume or reconfigure`,
      );
    }
    if (c.state === 'backing_off' && c.backoffUntil !== null) {
      reject(
        'backing_off',
        `${this.clientId} is backing off after ${c.backoffReason} until ${new Date(c.backoffUntil).toISOString()}; try again then`,
      );
    }
  }

  outcomeOfAttempt(attempt: number): TokenStatus {
    this.refreshNowWaiting--;
    if (this.stopRequested)
      throw wf.ApplicationFailure.create({
        type: 'stopped',
        message: `${this.clientId} was stopped before the refresh`,
        nonRetryable: true,
      });
    const error = this.lastOutcome !== null && this.lastOutcome.attempt >= attempt ? this.lastOutcome.error : null;
    if (error !== null) {
      throw wf.ApplicationFailure.create({ type: error.kind, message: `Refresh failed: ${error.message}`, nonRetryable: true });
    }
    return this.status();
  }

  reconfigure(changes: RegistrationChanges): void {
    this.registration = applyRegistrationChanges(this.registration, changes);
    this.policy = this.resolvePolicy();
    const c = this.carried;
    if (c.state === 'credentials_rejected' || (c.state === 'backing_off' && c.backoffReason === 'secret_unavailable')) {
      this.leaveParking();
    }
    // New credentials, scope or endpoint deserve a new token now, not at the next renewal; an
    // attempt in flight still uses the old registration.
    this.scheduleForced(c.state === 'backing_off' && c.backoffUntil !== null ? c.backoffUntil : 0, 'reconfigured', true);
  }

  resume(): void {
    if (this.carried.state !== 'credentials_rejected') return;
    this.leaveParking();
    this.scheduleForced(0, 'resumed', false);
  }

  /**
   * The endpoint's breaker closed (`endpointRecovered`): a wait for the endpoint (backing off after
   * a kind that opens the breaker) ends now, so the client does not sleep past the outage
   * (docs/design.md, "The IAM is never hammered"). Any other wait stands.
   */
  endpointRecovered(now: number): void {
    const c = this.carried;
    if (this.stopRequested || c.state !== 'backing_off' || c.backoffReason === null || !isEndpointDownKind(c.backoffReason)) return;
    if (c.backoffUntil !== null && c.backoffUntil <= now) return;
    c.backoffUntil = now;
    this.changeCount++;
  }

  requestStop(purge: boolean): void {
    this.stopRequested = true;
    this.purgeRequested ||= purge;
    this.changeCount++;
  }

  // ---- the loop ------------------------------------------------------------------------------

  /** When the loop should act next; null when parked until a message arrives. */
  nextActionAt(now: number): number | null {
    const c = this.carried;
    switch (c.state) {
      case 'stopped':
        return null;
      case 'credentials_rejected':
        return this.policy.rejectedProbeIntervalMs > 0 && c.rejectedAt !== null ? c.rejectedAt + this.policy.rejectedProbeIntervalMs : null;
      case 'backing_off':
        // The retry at the end of the backoff also answers a pending forced refresh; the
        // minimum interval must not push the retry later.
        return c.backoffUntil ?? now;
      case 'acquiring':
        // There is no token yet: nothing to wait for.
        return now;
      case 'active':
        return Math.min(c.nextRefreshAt ?? now, c.forced?.notBefore ?? Infinity);
    }
  }

  continueAsNewDue(suggested: boolean): boolean {
    return this.refreshNowWaiting === 0 && (suggested || this.cyclesThisRun >= this.policy.maxCyclesPerRun);
  }

  /**
   * Whether the next token request may run as a local activity (docs/design.md, "Local renewals"):
   * only while the client holds a current token and its policy allows it. The first token and every
   * retry after a failure go through the IAM task queue, whose server-side rate limit paces bursts.
   */
  get mayRenewLocally(): boolean {
    return this.policy.localRenewals && this.carried.state === 'active';
  }

  /** A token request starts now: returns the generation it is to write. */
  beginAttempt(now: number): number {
    this.attemptsStarted++;
    this.attemptInFlight = true;
    this.carried.lastRequestStartedAt = now;
    return this.carried.generation + 1;
  }

  acquireInput(generation: number): AcquireTokenInput {
    return {
      ...this.registration,
      generation,
      ...(this.carried.generationKnown === false && { afterStoredGeneration: true }),
      defaultExpiresInSeconds: this.policy.defaultExpiresInSeconds,
    };
  }

  recordSuccess(token: TokenMetadata, now: number): void {
    const c = this.carried;
    c.generation = Math.max(c.generation, token.generation);
    c.generationKnown = true;
    // The minimum interval between forced refreshes counts from when the request left the worker,
    // not from when this workflow scheduled it: a request that waited in the IAM task queue or the
    // rate window reached the IAM later, and the next forced one must not follow it too soon.
    c.lastRequestStartedAt = Math.max(c.lastRequestStartedAt ?? 0, token.requestStartedAt);
    c.fingerprint = token.fingerprint;
    c.expiresAt = token.expiresAt;
    if (token.credential !== undefined) c.credential = token.credential;
    else delete c.credential;
    c.nextRefreshAt = renewalAt(token, this.policy, this.clientId);
    c.state = 'active';
    c.backoffReason = null;
    c.backoffUntil = null;
    c.rejectedAt = null;
    c.consecutiveFailures = 0;
    c.lastError = null;
    // A forced refresh pending when this attempt began is satisfied by its token (coalescing)…
    c.forced = this.forcedAfterAttempt(c.forced);
    this.finishAttempt(null);
    // …and so is one that named an older token, unless it named this very one: it was rejected already.
    this.decideAwaitingAttempt(now);
  }

  recordFailure(kind: FailureKind, message: string, details: FailureDetails, now: number): void {
    const c = this.carried;
    // Held back by the endpoint breaker, no request was sent: not a failure of this client's.
    if (details.heldBack !== true) c.consecutiveFailures++;
    c.lastError = {
      kind,
      message,
      at: now,
      ...(details.status !== undefined && { status: details.status }),
      ...(details.oauthError !== undefined && { oauthError: details.oauthError }),
      ...(details.heldBack === true && { heldBack: true as const }),
    };
    if (isRetryable(kind)) {
      c.state = 'backing_off';
      c.backoffReason = kind;
      c.backoffUntil =
        now +
        backoffDelayMs(kind, c.consecutiveFailures, details, this.policy, `${this.clientId}#${c.generation}#${c.consecutiveFailures}`);
    } else {
      // Retrying rejected credentials is what gets an IP blocked (docs/design.md, "No login loop").
      c.state = 'credentials_rejected';
      c.backoffReason = null;
      c.backoffUntil = null;
      c.rejectedAt = now;
      c.forced = null;
    }
    this.finishAttempt(c.lastError);
    this.decideAwaitingAttempt(now);
  }

  markStopped(): void {
    this.carried.state = 'stopped';
    this.carried.nextRefreshAt = null;
    this.carried.forced = null;
  }

  /**
   * What stays pending once an attempt succeeded: nothing, unless a forced refresh was asked for
   * during it by someone who may have seen its token; that one runs at the minimum interval after
   * this attempt's request.
   */
  private forcedAfterAttempt(pending: PendingForcedRefresh | null): PendingForcedRefresh | null {
    if (pending === null || !this.forcedOutlivesAttempt || !this.forcedRefreshOutlivesAttempt()) return null;
    const earliest = (this.carried.lastRequestStartedAt ?? 0) + this.policy.minForcedRefreshIntervalMs;
    return { notBefore: Math.max(pending.notBefore, earliest), reason: pending.reason };
  }

  /** Requests held while an attempt was in flight: those naming the now-current token count. */
  private decideAwaitingAttempt(now: number): void {
    const awaiting = [...this.awaitingAttempt];
    this.awaitingAttempt.clear();
    for (const [rejectedFingerprint, reason] of awaiting) this.requestForcedRefresh({ rejectedFingerprint, reason }, now);
  }

  /** @param outlivesAttempt - The attempt in flight, if any, does not answer this request. */
  private scheduleForced(notBefore: number, reason: string, outlivesAttempt: boolean): void {
    if (this.attemptInFlight && outlivesAttempt) this.forcedOutlivesAttempt = true;
    const pending = this.carried.forced;
    // Coalesce: one pending forced refresh at a time, at the earliest allowed moment.
    this.carried.forced =
      pending === null ? { notBefore, reason } : { notBefore: Math.min(pending.notBefore, notBefore), reason: pending.reason };
    this.changeCount++;
  }

  /** True when a token request in flight or a forced refresh already pending will answer a new request. */
  private refreshAlreadyComing(outlivesAttempt: boolean): boolean {
    if (!this.attemptInFlight) return this.carried.forced !== null;
    return !outlivesAttempt || (this.forcedOutlivesAttempt && this.carried.forced !== null);
  }

  private leaveParking(): void {
    const c = this.carried;
    c.state = c.fingerprint === null ? 'acquiring' : 'active';
    c.backoffReason = null;
    c.backoffUntil = null;
    c.rejectedAt = null;
    this.changeCount++;
  }

  private finishAttempt(error: LastError | null): void {
    this.attemptInFlight = false;
    this.forcedOutlivesAttempt = false;
    this.attemptsFinished++;
    // Each attempt adds the same few events to the history, successful or not.
    this.cyclesThisRun++;
    this.lastOutcome = { attempt: this.attemptsStarted, error };
  }
}
