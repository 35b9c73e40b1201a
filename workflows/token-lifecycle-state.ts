/**
 * The state of one client's token lifecycle and the transitions between states. Deterministic:
 * times come in as parameters (the workflow passes its own `Date.now()`), decisions come from the
 * pure policy module.
 */
import type { MetricCounter, SearchAttributeUpdatePair } from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import type { AcquireTokenInput } from '../activities/acquire-token.js';
import type { ForceRefreshRequest, LastError, RegistrationChanges, TokenState, TokenStatus } from './messages.js';
import { backoffDelayMs, decideForcedRefresh, isRetryable, nextRefreshAt, resolvePolicy } from './policy.js';
import type { ClientRegistration, FailureDetails, FailureKind, RefreshPolicy, TokenMetadata } from './registration.js';
import {
  endpointHost,
  TokenClientId,
  TokenEndpointHost,
  TokenExpiresAt,
  TokenFailures,
  TokenNextRefreshAt,
  TokenState as TokenStateKey,
} from './search-attributes.js';

/** What continue-as-new hands to the next run, so nothing pending is lost (DESIGN.md). */
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
  lastRequestStartedAt: number | null;
  consecutiveFailures: number;
  backoffUntil: number | null;
  rejectedAt: number | null;
  lastError: LastError | null;
  forced: PendingForcedRefresh | null;
}

/**
 * What the workflow did with a forced-refresh request (`forceRefresh` signal, refresh-requests
 * stream entry, `refreshNow` update), the `decision` tag of `token_forced_refreshes`:
 * - `scheduled`: a refresh is now pending (at once, or when the minimum interval has passed);
 * - `coalesced`: joined a refresh already pending or in flight: no extra request;
 * - `ignored_stale`: named a fingerprint that is no longer current (already rotated);
 * - `ignored_parked`: the credentials were rejected; only `resume`/`reconfigure` start it again.
 */
export type ForcedRefreshDecisionTag = 'scheduled' | 'coalesced' | 'ignored_stale' | 'ignored_parked';

interface PendingForcedRefresh {
  notBefore: number;
  reason: string;
}

/** Distinct unknown fingerprints held during one attempt; more are ignored as stale. */
const MAX_AWAITING_ATTEMPT = 16;

export class TokenLifecycleState {
  registration: ClientRegistration;
  private policy: RefreshPolicy;
  private s: CarriedState;

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
  private refreshNowWaiting = 0;
  private lastOutcome: { attempt: number; error: LastError | null } | null = null;
  private cyclesThisRun = 0;
  /** Created lazily: the workflow's meter works only inside workflow context. */
  private forcedRefreshCounter: MetricCounter | null = null;

  constructor(registration: ClientRegistration, carried: CarriedState | undefined) {
    this.registration = registration;
    this.policy = resolvePolicy(registration.policy);
    this.s = carried ?? {
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

  get clientId(): string {
    return this.registration.clientId;
  }

  status(): TokenStatus {
    const s = this.s;
    return {
      clientId: this.clientId,
      state: s.state,
      backoffReason: s.state === 'backing_off' ? s.backoffReason : null,
      generation: s.generation,
      fingerprint: s.fingerprint,
      expiresAt: s.expiresAt,
      nextRefreshAt: s.nextRefreshAt,
      lastError: s.lastError,
      consecutiveFailures: s.consecutiveFailures,
      backoffUntil: s.state === 'backing_off' ? s.backoffUntil : null,
      forcedRefreshAt: s.forced?.notBefore ?? null,
    };
  }

  carry(): CarriedState {
    return { ...this.s };
  }

  // ---- messages ------------------------------------------------------------------------------

  requestForcedRefresh(request: ForceRefreshRequest, now: number): void {
    if (this.stopRequested) return;
    if (this.s.state === 'credentials_rejected') {
      // A new token needs new credentials first; retrying these is what gets an IP blocked.
      this.countForcedRefresh('ignored_parked');
      wf.log.info('Forced refresh ignored: the credentials were rejected; resume or reconfigure first', { clientId: this.clientId });
      return;
    }
    const decision = decideForcedRefresh(
      request,
      { fingerprint: this.s.fingerprint ?? undefined, lastRequestStartedAt: this.s.lastRequestStartedAt ?? undefined },
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
      // Signal handlers cannot return errors; the log and the metric say why nothing happened.
      this.countForcedRefresh('ignored_stale');
      wf.log.info('Forced refresh ignored: the rejected token was already replaced', { clientId: this.clientId });
      return;
    }
    this.countForcedRefresh(this.refreshAlreadyComing() ? 'coalesced' : 'scheduled');
    this.scheduleForced(decision.notBefore, request.reason ?? 'forced refresh');
  }

  /** Returns the attempt whose outcome answers this request (an attempt in flight coalesces). */
  requestRefreshNow(reason: string | undefined, now: number): number {
    this.refreshNowWaiting++;
    this.countForcedRefresh(this.refreshAlreadyComing() ? 'coalesced' : 'scheduled');
    if (this.attemptInFlight) return this.attemptsStarted;
    const decision = decideForcedRefresh(
      {},
      { fingerprint: undefined, lastRequestStartedAt: this.s.lastRequestStartedAt ?? undefined },
      now,
      this.policy,
    );
    if (decision.action === 'schedule') this.scheduleForced(decision.notBefore, reason ?? 'refreshNow');
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
    if (this.stopRequested || this.s.state === 'stopped') reject('stopped', `${this.clientId} is stopped`);
    if (this.s.state === 'credentials_rejected') {
      reject(
        'credentials_rejected',
        `${this.clientId}: the IAM rejected the credentials (${this.s.lastError?.message ?? 'unknown'}); fix them, then resume or reconfigure`,
      );
    }
    if (this.s.state === 'backing_off' && this.s.backoffUntil !== null) {
      reject(
        'backing_off',
        `${this.clientId} is backing off after ${this.s.backoffReason} until ${new Date(this.s.backoffUntil).toISOString()}; try again then`,
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
    this.registration = { ...this.registration, ...changes, clientId: this.clientId };
    this.policy = resolvePolicy(this.registration.policy);
    if (this.s.state === 'credentials_rejected' || (this.s.state === 'backing_off' && this.s.backoffReason === 'secret_unavailable')) {
      this.leaveParking();
    }
    // New credentials, scope or endpoint deserve a new token now, not at the next renewal.
    this.scheduleForced(this.s.state === 'backing_off' && this.s.backoffUntil !== null ? this.s.backoffUntil : 0, 'reconfigured');
  }

  resume(): void {
    if (this.s.state !== 'credentials_rejected') return;
    this.leaveParking();
    this.scheduleForced(0, 'resumed');
  }

  requestStop(purge: boolean): void {
    this.stopRequested = true;
    this.purgeRequested ||= purge;
    this.changeCount++;
  }

  // ---- the loop ------------------------------------------------------------------------------

  /** When the loop should act next; null when parked until a message arrives. */
  nextActionAt(now: number): number | null {
    const s = this.s;
    switch (s.state) {
      case 'stopped':
        return null;
      case 'credentials_rejected':
        return this.policy.rejectedProbeIntervalMs > 0 && s.rejectedAt !== null ? s.rejectedAt + this.policy.rejectedProbeIntervalMs : null;
      case 'backing_off':
        // The retry at the end of the backoff also answers a pending forced refresh; the
        // minimum interval must not push the retry later.
        return s.backoffUntil ?? now;
      case 'acquiring':
        // There is no token yet: nothing to wait for.
        return now;
      case 'active':
        return Math.min(s.nextRefreshAt ?? now, s.forced?.notBefore ?? Infinity);
    }
  }

  waitSummary(wakeAt: number): string {
    const at = new Date(wakeAt).toISOString();
    switch (this.s.state) {
      case 'backing_off':
        return `Back off after ${this.s.backoffReason} until ${at}`;
      case 'credentials_rejected':
        return `Probe rejected credentials again at ${at}`;
      default:
        return this.s.forced !== null && this.s.forced.notBefore <= (this.s.nextRefreshAt ?? Infinity)
          ? `Forced refresh (${this.s.forced.reason}) at ${at}`
          : `Renew generation ${this.s.generation} at ${at}`;
    }
  }

  continueAsNewDue(suggested: boolean): boolean {
    return this.refreshNowWaiting === 0 && (suggested || this.cyclesThisRun >= this.policy.maxCyclesPerRun);
  }

  beginAttempt(now: number): { generation: number; summary: string } {
    this.attemptsStarted++;
    this.attemptInFlight = true;
    this.s.lastRequestStartedAt = now;
    const generation = this.s.generation + 1;
    const why =
      this.s.forced !== null && this.s.forced.notBefore <= now
        ? this.s.forced.reason
        : this.s.state === 'backing_off'
          ? `retry ${this.s.consecutiveFailures} after ${this.s.backoffReason}`
          : this.s.fingerprint === null
            ? 'first token'
            : 'scheduled renewal';
    const summary =
      this.s.generationKnown === false
        ? `Token request (${why}), numbered after the generation Redis holds`
        : `Token request for generation ${generation} (${why})`;
    return { generation, summary };
  }

  acquireInput(generation: number): AcquireTokenInput {
    return {
      ...this.registration,
      generation,
      ...(this.s.generationKnown === false && { afterStoredGeneration: true }),
      defaultExpiresInSeconds: this.policy.defaultExpiresInSeconds,
    };
  }

  recordSuccess(token: TokenMetadata, now: number): void {
    const s = this.s;
    s.generation = Math.max(s.generation, token.generation);
    s.generationKnown = true;
    // The minimum interval between forced refreshes counts from when the request left the worker,
    // not from when this workflow scheduled it: a request that waited in the IAM task queue or the
    // rate window reached the IAM later, and the next forced one must not follow it too soon.
    s.lastRequestStartedAt = Math.max(s.lastRequestStartedAt ?? 0, token.requestStartedAt);
    s.fingerprint = token.fingerprint;
    s.expiresAt = token.expiresAt;
    s.nextRefreshAt = Math.min(nextRefreshAt(token, this.policy, `${this.clientId}#${token.generation}`), token.expiresAt);
    s.state = 'active';
    s.backoffReason = null;
    s.backoffUntil = null;
    s.rejectedAt = null;
    s.consecutiveFailures = 0;
    s.lastError = null;
    // Any forced refresh requested until now is satisfied by this new token (coalescing)…
    s.forced = null;
    this.finishAttempt(null);
    // …except one that named this very token: it was rejected already.
    this.decideAwaitingAttempt(now);
  }

  recordFailure(kind: FailureKind, message: string, details: FailureDetails, now: number): void {
    const s = this.s;
    // Held back by the endpoint breaker, no request was sent: not a failure of this client's.
    if (details.breakerOpen !== true) s.consecutiveFailures++;
    s.lastError = {
      kind,
      message,
      at: now,
      ...(details.status !== undefined && { status: details.status }),
      ...(details.oauthError !== undefined && { oauthError: details.oauthError }),
    };
    if (isRetryable(kind)) {
      s.state = 'backing_off';
      s.backoffReason = kind;
      s.backoffUntil =
        now +
        backoffDelayMs(kind, s.consecutiveFailures, details, this.policy, `${this.clientId}#${s.generation}#${s.consecutiveFailures}`);
    } else {
      // Retrying rejected credentials is what gets an IP blocked (invariant 6): park instead.
      s.state = 'credentials_rejected';
      s.backoffReason = null;
      s.backoffUntil = null;
      s.rejectedAt = now;
      s.forced = null;
    }
    this.finishAttempt(s.lastError);
    this.decideAwaitingAttempt(now);
  }

  /** Requests held while an attempt was in flight: those naming the now-current token count. */
  private decideAwaitingAttempt(now: number): void {
    const awaiting = [...this.awaitingAttempt];
    this.awaitingAttempt.clear();
    for (const [rejectedFingerprint, reason] of awaiting) this.requestForcedRefresh({ rejectedFingerprint, reason }, now);
  }

  markStopped(): void {
    this.s.state = 'stopped';
    this.s.nextRefreshAt = null;
    this.s.forced = null;
  }

  /** Shows the state in the Temporal UI: search attributes for lists, details for the page. */
  publish(): void {
    const s = this.s;
    const wanted: SearchAttributeUpdatePair[] = [
      { key: TokenClientId, value: this.clientId },
      { key: TokenEndpointHost, value: endpointHost(this.registration.tokenUrl) },
      { key: TokenStateKey, value: s.state },
      { key: TokenExpiresAt, value: dateOrNull(s.expiresAt) },
      // The next token request: after a failure, the end of the backoff.
      { key: TokenNextRefreshAt, value: dateOrNull(s.state === 'backing_off' ? s.backoffUntil : s.nextRefreshAt) },
      { key: TokenFailures, value: s.consecutiveFailures },
    ];
    // Each upsert is a history event and a visibility write: send only what changed since the
    // start or the last upsert (the SDK keeps both in workflowInfo, identically on replay).
    const current = wf.workflowInfo().typedSearchAttributes;
    const changed = wanted.filter(({ key, value }) => !sameAttributeValue(current.get(key), value));
    if (changed.length > 0) wf.upsertSearchAttributes(changed);
    wf.setCurrentDetails(this.details());
  }

  /** Most urgent first: the UI shows the current details in a frame of a few lines. */
  private details(): string {
    const s = this.s;
    const iso = (ms: number | null) => (ms === null ? '—' : new Date(ms).toISOString());
    const headline =
      s.state === 'credentials_rejected'
        ? 'credentials_rejected — parked: fix the credentials, then `tokenctl resume` or reconfigure'
        : s.state === 'backing_off'
          ? `backing_off (${s.backoffReason}) until ${iso(s.backoffUntil)}`
          : s.state;
    const lines = [`**${this.clientId}** · ${headline}`, /* the UI's Markdown starts a list only after a blank line */ ''];
    if (s.lastError !== null) lines.push(`- last error (${s.consecutiveFailures} in a row): ${s.lastError.kind}: ${s.lastError.message}`);
    lines.push(
      s.fingerprint === null
        ? '- token: none from this registration yet'
        : `- token: generation ${s.generation}, fingerprint ${s.fingerprint}, expires ${iso(s.expiresAt)}`,
    );
    if (s.state === 'active') lines.push(`- next refresh: ${iso(s.nextRefreshAt)}`);
    lines.push(`- endpoint (${this.registration.authMethod}): ${this.registration.tokenUrl}`);
    return lines.join('\n');
  }

  private scheduleForced(notBefore: number, reason: string): void {
    const pending = this.s.forced;
    // Coalesce: one pending forced refresh at a time, at the earliest allowed moment.
    this.s.forced =
      pending === null ? { notBefore, reason } : { notBefore: Math.min(pending.notBefore, notBefore), reason: pending.reason };
    this.changeCount++;
  }

  /** True when a token request is in flight or a forced refresh is already pending. */
  private refreshAlreadyComing(): boolean {
    return this.attemptInFlight || this.s.forced !== null;
  }

  /**
   * Counts a forced-refresh request by decision in `token_forced_refreshes{client_id, decision}`.
   * The workflow's meter emits nothing while replaying, so a request is counted once.
   */
  private countForcedRefresh(decision: ForcedRefreshDecisionTag): void {
    this.forcedRefreshCounter ??= wf.metricMeter.createCounter(
      'token_forced_refreshes',
      'requests',
      'Forced refresh requests, by what the workflow decided',
    );
    this.forcedRefreshCounter.add(1, { client_id: this.clientId, decision });
  }

  private leaveParking(): void {
    this.s.state = this.s.fingerprint === null ? 'acquiring' : 'active';
    this.s.backoffReason = null;
    this.s.backoffUntil = null;
    this.s.rejectedAt = null;
    this.changeCount++;
  }

  private finishAttempt(error: LastError | null): void {
    this.attemptInFlight = false;
    this.attemptsFinished++;
    // Each attempt adds the same few events to the history, successful or not.
    this.cyclesThisRun++;
    this.lastOutcome = { attempt: this.attemptsStarted, error };
  }
}

function dateOrNull(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

/** Whether a search attribute holds `wanted` already (`null` removes it: absent counts as equal). */
function sameAttributeValue(current: unknown, wanted: SearchAttributeUpdatePair['value']): boolean {
  if (wanted === null) return current === undefined;
  if (wanted instanceof Date) return current instanceof Date && current.getTime() === wanted.getTime();
  return current === wanted;
}
