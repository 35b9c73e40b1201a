// The state machine of docs/design.md, "States and transitions", one row of its table per test, and
// the long horizons (an hour's token, the backoff cap, continue-as-new) driven through the state
// class with an injected clock: no server, no waiting. The orderings of forced refreshes and
// attempts are test/unit/forced-refresh-ordering.test.ts.
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import type { FailureDetails, FailureKind } from '../../workflows/failures.js';
import { TokenLifecycleState, type ForcedRefreshDecision } from '../../workflows/lifecycle-state.js';
import type { TokenState } from '../../workflows/messages.js';
import { DEFAULT_POLICY, type PolicyOverrides } from '../../workflows/policy.js';
import type { ClientRegistration } from '../../workflows/registration.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const MIN_INTERVAL_MS = DEFAULT_POLICY.minForcedRefreshIntervalMs;

const fingerprintOf = (generation: number) => generation.toString(16).padStart(16, '0');

/** One client's lifecycle and a clock: what the workflow does, as plain calls. */
class Driver {
  now = T0;
  readonly decisions: ForcedRefreshDecision[] = [];
  readonly lifecycle: TokenLifecycleState;

  constructor(
    policy: PolicyOverrides = {},
    private readonly lifetimeSeconds = 300,
  ) {
    const registration: ClientRegistration = {
      clientId: 'orders',
      tokenUrl: 'https://iam.example/token',
      authMethod: 'client_secret_basic',
      secretRef: 'env:SECRET',
      policy,
    };
    this.lifecycle = new TokenLifecycleState(registration, undefined, (_clientId, decision) => this.decisions.push(decision));
  }

  get state(): TokenState {
    return this.lifecycle.status().state;
  }

  /** Moves the clock to when the loop acts next, as its timer would. */
  sleepUntilDue(): number {
    const due = this.lifecycle.nextActionAt(this.now);
    if (due === null) throw new Error(`nothing is due in state ${this.state}`);
    this.now = Math.max(this.now, due);
    return due;
  }

  succeed(): void {
    const generation = this.lifecycle.beginAttempt(this.now);
    this.lifecycle.recordSuccess(
      {
        clientId: 'orders',
        generation,
        fingerprint: fingerprintOf(generation),
        tokenType: 'Bearer',
        scope: '',
        requestStartedAt: this.now,
        obtainedAt: this.now + 50,
        expiresAt: this.now + this.lifetimeSeconds * SECOND,
        expiresInSeconds: this.lifetimeSeconds,
        written: true,
      },
      this.now + 50,
    );
    this.now += 50;
  }

  fail(kind: FailureKind, details: FailureDetails = {}): void {
    this.lifecycle.beginAttempt(this.now);
    this.lifecycle.recordFailure(kind, `${kind} for the test`, details, this.now + 50);
    this.now += 50;
  }
}

/** A client in `state`, its clock just after it got there. */
function clientIn(
  state: 'acquiring' | 'active' | 'backing_off' | 'credentials_rejected' | 'stopped',
  policy: PolicyOverrides = {},
): Driver {
  const client = new Driver(policy);
  if (state === 'acquiring') return client;
  client.succeed();
  if (state === 'backing_off') client.fail('server_error', { status: 503 });
  if (state === 'credentials_rejected') client.fail('credentials_rejected', { status: 401, oauthError: 'invalid_client' });
  if (state === 'stopped') {
    client.lifecycle.requestStop(false);
    client.lifecycle.markStopped();
  }
  expect(client.state).toBe(state);
  return client;
}

const RUNNING = ['acquiring', 'active', 'backing_off', 'credentials_rejected'] as const;

describe('the transition table', () => {
  it.each(RUNNING)('%s, token issued → active: renewal scheduled, failures reset, pending forced refresh satisfied', (state) => {
    const client = clientIn(state);
    client.now += MIN_INTERVAL_MS;
    if (state !== 'credentials_rejected') client.lifecycle.requestForcedRefresh({}, client.now);
    client.succeed();
    const status = client.lifecycle.status();
    expect(status).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null, backoffUntil: null, forcedRefreshAt: null });
    expect(status.nextRefreshAt).toBeGreaterThan(client.now);
    expect(status.nextRefreshAt).toBeLessThanOrEqual(client.now + 0.85 * 300 * SECOND);
  });

  it.each(RUNNING)('%s, retryable failure → backing_off: wait per the failure kind, counted', (state) => {
    const client = clientIn(state);
    const before = client.lifecycle.status().consecutiveFailures;
    client.fail('server_error', { status: 503 });
    const status = client.lifecycle.status();
    expect(status).toMatchObject({ state: 'backing_off', backoffReason: 'server_error', consecutiveFailures: before + 1 });
    expect(client.lifecycle.nextActionAt(client.now)).toBe(status.backoffUntil);
    expect(status.backoffUntil! - client.now).toBeLessThanOrEqual(DEFAULT_POLICY.backoff.server_error.capMs);
  });

  it.each(RUNNING)('%s, a request held back (no request sent) → backing_off for the wait it names, not counted as a failure', (state) => {
    const client = clientIn(state);
    const before = client.lifecycle.status().consecutiveFailures;
    client.fail('rate_limited', { heldBack: true, retryAfterMs: 7 * SECOND });
    const status = client.lifecycle.status();
    expect(status).toMatchObject({ state: 'backing_off', consecutiveFailures: before, lastError: { heldBack: true } });
    expect(status.backoffUntil).toBe(client.now + 7 * SECOND);
  });

  it.each(RUNNING)('%s, credentials rejected → credentials_rejected: no timer, pending forced refresh dropped', (state) => {
    const client = clientIn(state);
    if (state !== 'credentials_rejected') client.lifecycle.requestForcedRefresh({}, client.now);
    client.fail('credentials_rejected', { status: 401, oauthError: 'invalid_client' });
    expect(client.lifecycle.status()).toMatchObject({ state: 'credentials_rejected', forcedRefreshAt: null });
    expect(client.lifecycle.nextActionAt(client.now)).toBeNull();
  });

  it('active, renewal timer fires → a token request at the renewal time', () => {
    const client = clientIn('active');
    const renewalAt = client.lifecycle.status().nextRefreshAt;
    expect(client.sleepUntilDue()).toBe(renewalAt);
    client.succeed();
    expect(client.lifecycle.status().generation).toBe(2);
  });

  it('backing_off, backoff timer fires → a token request at backoffUntil', () => {
    const client = clientIn('backing_off');
    expect(client.sleepUntilDue()).toBe(client.lifecycle.status().backoffUntil);
  });

  it('acquiring → a token request at once', () => {
    const client = clientIn('acquiring');
    expect(client.lifecycle.nextActionAt(client.now)).toBe(client.now);
  });

  it.each(['acquiring', 'active', 'backing_off'] as const)(
    '%s, forceRefresh naming the current token or none → pending at max(now, last send + minimum interval), coalesced',
    (state) => {
      const client = clientIn(state);
      const lastSend = client.now - 50;
      client.lifecycle.requestForcedRefresh({}, client.now);
      client.lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(1) }, client.now);
      expect(client.decisions).toEqual(state === 'acquiring' ? ['scheduled', 'ignored_stale'] : ['scheduled', 'coalesced']);
      const expected = state === 'acquiring' ? client.now : lastSend + MIN_INTERVAL_MS;
      expect(client.lifecycle.status().forcedRefreshAt).toBe(expected);
    },
  );

  it.each(['active', 'backing_off'] as const)('%s, forceRefresh naming another token → ignored as stale', (state) => {
    const client = clientIn(state);
    client.lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(9) }, client.now);
    expect(client.decisions).toEqual(['ignored_stale']);
    expect(client.lifecycle.status().forcedRefreshAt).toBeNull();
  });

  it('credentials_rejected, forceRefresh → ignored (parked)', () => {
    const client = clientIn('credentials_rejected');
    client.lifecycle.requestForcedRefresh({}, client.now);
    expect(client.decisions).toEqual(['ignored_parked']);
    expect(client.lifecycle.nextActionAt(client.now)).toBeNull();
  });

  it.each(['acquiring', 'active'] as const)('%s, refreshNow → like forceRefresh; answered by the next attempt', (state) => {
    const client = clientIn(state);
    expect(() => client.lifecycle.assertRefreshNowAllowed()).not.toThrow();
    const answeredBy = client.lifecycle.requestRefreshNow('test', client.now);
    client.sleepUntilDue();
    client.succeed();
    expect(client.lifecycle.attemptsFinished).toBe(answeredBy);
    expect(client.lifecycle.outcomeOfAttempt(answeredBy).state).toBe('active');
  });

  it.each([
    ['credentials_rejected', 'credentials_rejected'],
    ['backing_off', 'backing_off'],
    ['stopped', 'stopped'],
  ] as const)('%s, refreshNow → rejected by the validator with type %s', (state, type) => {
    const client = clientIn(state);
    let failure: unknown;
    try {
      client.lifecycle.assertRefreshNowAllowed();
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type, nonRetryable: true });
  });

  it('credentials_rejected, resume → active, a token request at once', () => {
    const client = clientIn('credentials_rejected');
    client.lifecycle.resume();
    expect(client.state).toBe('active');
    expect(client.lifecycle.nextActionAt(client.now)).toBe(0);
  });

  it('credentials_rejected before any token, resume → acquiring', () => {
    const client = new Driver();
    client.fail('credentials_rejected', { status: 401 });
    client.lifecycle.resume();
    expect(client.state).toBe('acquiring');
    expect(client.lifecycle.nextActionAt(client.now)).toBe(client.now);
  });

  it.each([
    ['credentials_rejected', () => clientIn('credentials_rejected')],
    [
      'backing_off after secret_unavailable',
      () => {
        const client = clientIn('active');
        client.fail('secret_unavailable');
        return client;
      },
    ],
  ] as const)('%s, reconfigure → active, a token request at once', (_label, make) => {
    const client = make();
    client.lifecycle.reconfigure({ secretRef: 'env:NEW_SECRET' });
    expect(client.state).toBe('active');
    expect(client.lifecycle.registration.secretRef).toBe('env:NEW_SECRET');
    expect(client.lifecycle.nextActionAt(client.now)).toBe(0);
  });

  it('backing_off (another kind), reconfigure → same state, the token request at backoffUntil', () => {
    const client = clientIn('backing_off');
    client.lifecycle.reconfigure({ scope: 'orders:read' });
    expect(client.state).toBe('backing_off');
    expect(client.lifecycle.status().forcedRefreshAt).toBe(client.lifecycle.status().backoffUntil);
  });

  it('active, reconfigure → same state, a token request at once', () => {
    const client = clientIn('active');
    client.lifecycle.reconfigure({ scope: 'orders:read' });
    expect(client.state).toBe('active');
    expect(client.lifecycle.nextActionAt(client.now)).toBe(0);
  });

  it.each([...RUNNING])('%s, stop with purge → stopped, nothing due', (state) => {
    const client = clientIn(state);
    client.lifecycle.requestStop(true);
    expect(client.lifecycle.stopRequested && client.lifecycle.purgeRequested).toBe(true);
    client.lifecycle.markStopped();
    expect(client.lifecycle.status()).toMatchObject({ state: 'stopped', nextRefreshAt: null, forcedRefreshAt: null });
    expect(client.lifecycle.nextActionAt(client.now)).toBeNull();
  });
});

describe("which requests run as local activities (docs/design.md, 'Local renewals')", () => {
  it('only a renewal of a current token: never the first token, nor a retry after a failure or a rejection', () => {
    expect(clientIn('acquiring').lifecycle.mayRenewLocally).toBe(false);
    expect(clientIn('active').lifecycle.mayRenewLocally).toBe(true);
    expect(clientIn('backing_off').lifecycle.mayRenewLocally).toBe(false);
    expect(clientIn('credentials_rejected').lifecycle.mayRenewLocally).toBe(false);
    expect(clientIn('stopped').lifecycle.mayRenewLocally).toBe(false);
  });

  it('a held-back renewal retries from the IAM task queue, and the next success renews locally again', () => {
    const client = clientIn('active');
    client.sleepUntilDue();
    client.fail('rate_limited', { heldBack: true, retryAfterMs: 400 });
    expect(client.lifecycle.mayRenewLocally).toBe(false);
    client.sleepUntilDue();
    client.succeed();
    expect(client.lifecycle.mayRenewLocally).toBe(true);
  });

  it('policy.localRenewals: false sends every request through the IAM task queue', () => {
    expect(clientIn('active', { localRenewals: false }).lifecycle.mayRenewLocally).toBe(false);
  });
});

describe("waiting for the endpoint (docs/design.md, 'The IAM is never hammered')", () => {
  it.each(['server_error', 'blocked', 'rate_limited'] as const)(
    'backing_off after %s, endpointRecovered → a token request at once, the wait cut short',
    (kind) => {
      const client = clientIn('active');
      client.fail(kind, { endpointWaitMs: 8 * SECOND });
      const changes = client.lifecycle.changeCount;
      client.lifecycle.endpointRecovered(client.now);
      expect(client.lifecycle.status()).toMatchObject({ state: 'backing_off', backoffUntil: client.now });
      expect(client.lifecycle.changeCount).toBe(changes + 1);
      expect(client.lifecycle.nextActionAt(client.now)).toBe(client.now);
    },
  );

  it('backing_off after another kind, or a wait already over, endpointRecovered → nothing changes', () => {
    const client = clientIn('active');
    client.fail('secret_unavailable');
    const status = client.lifecycle.status();
    client.lifecycle.endpointRecovered(client.now);
    expect(client.lifecycle.status()).toEqual(status);

    const due = clientIn('backing_off');
    due.sleepUntilDue();
    const changes = due.lifecycle.changeCount;
    due.lifecycle.endpointRecovered(due.now);
    expect(due.lifecycle.changeCount).toBe(changes);
  });

  it.each(['active', 'acquiring', 'credentials_rejected'] as const)('%s, endpointRecovered → nothing changes', (state) => {
    const client = clientIn(state);
    const status = client.lifecycle.status();
    client.lifecycle.endpointRecovered(client.now);
    expect(client.lifecycle.status()).toEqual(status);
  });

  it("an outage of a day with the endpoint's breaker: every wait is the endpoint's, never a growing backoff of the client's own", () => {
    const client = clientIn('active');
    const outageEnds = client.now + 24 * HOUR;
    while (client.now < outageEnds) {
      client.fail('server_error', { status: 503, endpointWaitMs: DEFAULT_POLICY.probeIntervalMaxMs });
      expect(client.lifecycle.status().backoffUntil! - client.now).toBe(DEFAULT_POLICY.probeIntervalMaxMs);
      client.sleepUntilDue();
    }
    expect(client.lifecycle.status().consecutiveFailures).toBeGreaterThan(1000);
  });
});

describe('long horizons', () => {
  it('an hour-long token is renewed every 0.80–0.85 of an hour, for a week', () => {
    const client = new Driver({}, 3600);
    client.succeed();
    for (let renewal = 0; renewal < 7 * 24; renewal++) {
      const issuedAt = client.now - 50;
      const due = client.sleepUntilDue();
      expect(due - issuedAt).toBeGreaterThanOrEqual(0.8 * HOUR);
      expect(due - issuedAt).toBeLessThanOrEqual(0.85 * HOUR);
      client.succeed();
    }
    expect(client.lifecycle.status().generation).toBe(7 * 24 + 1);
  });

  it('an outage of a day backs off up to the 15-minute cap and no further, and one success resets it', () => {
    const cap = DEFAULT_POLICY.backoff.blocked.capMs;
    const client = clientIn('active');
    const outageEnds = client.now + 24 * HOUR;
    const delays: number[] = [];
    while (client.now < outageEnds) {
      client.fail('blocked');
      delays.push(client.lifecycle.status().backoffUntil! - client.now);
      client.sleepUntilDue();
    }
    expect(Math.max(...delays)).toBeLessThanOrEqual(cap);
    expect(Math.min(...delays.slice(-10))).toBeGreaterThanOrEqual(0.8 * cap);
    // The cap bounds the requests of a long outage: a day costs about 24 h / cap of them.
    expect(delays.length).toBeLessThanOrEqual(Math.ceil((24 * HOUR) / (0.8 * cap)) + 10);
    client.succeed();
    expect(client.lifecycle.status()).toMatchObject({ state: 'active', consecutiveFailures: 0, backoffUntil: null });
  });

  it('continue-as-new is due after maxCyclesPerRun attempts, and not while a refreshNow waits', () => {
    const client = new Driver();
    for (let cycle = 0; cycle < DEFAULT_POLICY.maxCyclesPerRun - 1; cycle++) {
      client.succeed();
      client.sleepUntilDue();
    }
    expect(client.lifecycle.continueAsNewDue(false)).toBe(false);
    client.succeed();
    expect(client.lifecycle.continueAsNewDue(false)).toBe(true);
    client.lifecycle.requestRefreshNow('test', client.now);
    expect(client.lifecycle.continueAsNewDue(true)).toBe(false);
  });

  it('what continue-as-new carries makes the next run act as this one would', () => {
    const client = clientIn('active');
    client.lifecycle.requestForcedRefresh({}, client.now);
    const next = new TokenLifecycleState(client.lifecycle.registration, client.lifecycle.carry());
    expect(next.status()).toEqual(client.lifecycle.status());
    expect(next.nextActionAt(client.now)).toBe(client.lifecycle.nextActionAt(client.now));
  });
});
