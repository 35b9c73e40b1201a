// A forced refresh is satisfied only by a token its requester cannot have seen yet (docs/design.md,
// "The forced-refresh path"): every ordering of a request and an attempt, driven through the state
// class with an injected clock, no server.
import { describe, expect, it } from 'vitest';
import { TokenLifecycleState, type ForcedRefreshDecision } from '../../workflows/lifecycle-state.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import type { TokenMetadata } from '../../workflows/token-metadata.js';

const SECOND = 1000;
const MIN_INTERVAL_MS = 10 * SECOND;
const LIFETIME_SECONDS = 300;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

const registration: ClientRegistration = {
  clientId: 'orders',
  tokenUrl: 'https://iam.example/token',
  authMethod: 'client_secret_basic',
  secretRef: 'env:SECRET',
  policy: { minForcedRefreshIntervalMs: MIN_INTERVAL_MS },
};

/** The fingerprint of generation `n`: distinct per generation, of the real form. */
const fingerprintOf = (generation: number) => generation.toString(16).padStart(16, '0');

/** A client with one token (generation 1, requested at T0) and the decisions it reported. */
function activeClient(options: { patched?: boolean } = {}) {
  const decisions: ForcedRefreshDecision[] = [];
  const lifecycle = new TokenLifecycleState(
    registration,
    undefined,
    (_clientId, decision) => decisions.push(decision),
    {},
    () => options.patched ?? true,
  );
  const attempt = (startedAt: number) => {
    const generation = lifecycle.beginAttempt(startedAt);
    return {
      generation,
      succeed(at: number) {
        lifecycle.recordSuccess(tokenOf(generation, startedAt, at), at);
      },
      fail(at: number) {
        lifecycle.recordFailure('server_error', 'HTTP 503', { status: 503 }, at);
      },
    };
  };
  attempt(T0).succeed(T0 + 100);
  return { lifecycle, decisions, attempt };
}

function tokenOf(generation: number, requestStartedAt: number, obtainedAt: number): TokenMetadata {
  return {
    clientId: registration.clientId,
    generation,
    fingerprint: fingerprintOf(generation),
    tokenType: 'Bearer',
    scope: '',
    requestStartedAt,
    obtainedAt,
    expiresAt: requestStartedAt + LIFETIME_SECONDS * SECOND,
    expiresInSeconds: LIFETIME_SECONDS,
    written: true,
  };
}

/** When a forced refresh is pending, or null. */
const pendingAt = (lifecycle: TokenLifecycleState) => lifecycle.status().forcedRefreshAt;

describe('a forced refresh naming no token', () => {
  it('arriving before an attempt is satisfied by that attempt', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    lifecycle.requestForcedRefresh({}, T0 + 20 * SECOND);
    expect(decisions).toEqual(['scheduled']);
    expect(pendingAt(lifecycle)).toBe(T0 + 20 * SECOND);

    attempt(T0 + 20 * SECOND).succeed(T0 + 20.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
    expect(lifecycle.status().generation).toBe(2);
  });

  it('arriving during an attempt stays pending after it succeeds, at the minimum interval after its request', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    lifecycle.requestForcedRefresh({ reason: 'tokenctl refresh' }, T0 + 255.05 * SECOND);
    expect(decisions).toEqual(['scheduled']);

    renewal.succeed(T0 + 255.1 * SECOND);
    expect(lifecycle.status().generation).toBe(2);
    expect(pendingAt(lifecycle)).toBe(T0 + 265 * SECOND);
    expect(lifecycle.nextActionAt(T0 + 255.1 * SECOND)).toBe(T0 + 265 * SECOND);

    attempt(T0 + 265 * SECOND).succeed(T0 + 265.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
    expect(lifecycle.status().generation).toBe(3);
  });

  it('arriving during an attempt counts the interval from when that request really left the worker', () => {
    const { lifecycle, attempt } = activeClient();
    const generation = lifecycle.beginAttempt(T0 + 50 * SECOND);
    lifecycle.requestForcedRefresh({}, T0 + 50.5 * SECOND);
    // The request waited 3 s in the rate window before it left.
    lifecycle.recordSuccess(tokenOf(generation, T0 + 53 * SECOND, T0 + 53.1 * SECOND), T0 + 53.1 * SECOND);
    expect(pendingAt(lifecycle)).toBe(T0 + 63 * SECOND);
    attempt(T0 + 63 * SECOND).succeed(T0 + 63.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
  });

  it('arriving during an attempt that fails stays pending for the retry that ends the backoff', () => {
    const { lifecycle, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    lifecycle.requestForcedRefresh({}, T0 + 255.05 * SECOND);
    renewal.fail(T0 + 255.1 * SECOND);
    expect(lifecycle.status().state).toBe('backing_off');
    expect(pendingAt(lifecycle)).toBe(T0 + 265 * SECOND);

    attempt(T0 + 266 * SECOND).succeed(T0 + 266.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
  });

  it('arriving after an attempt waits for the minimum interval from that attempt', () => {
    const { lifecycle, decisions } = activeClient();
    lifecycle.requestForcedRefresh({}, T0 + 2 * SECOND);
    expect(decisions).toEqual(['scheduled']);
    expect(pendingAt(lifecycle)).toBe(T0 + MIN_INTERVAL_MS);
  });

  it('many arriving during one attempt add one refresh after it, not one each', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    for (let i = 0; i < 5; i++) lifecycle.requestForcedRefresh({}, T0 + 255 * SECOND + i);
    expect(decisions).toEqual(['scheduled', 'coalesced', 'coalesced', 'coalesced', 'coalesced']);
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(pendingAt(lifecycle)).toBe(T0 + 265 * SECOND);
  });

  it('pending before an attempt and asked again during it stays pending after it', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    lifecycle.requestForcedRefresh({}, T0 + 20 * SECOND);
    const forced = attempt(T0 + 20 * SECOND);
    lifecycle.requestForcedRefresh({}, T0 + 20.05 * SECOND);
    expect(decisions).toEqual(['scheduled', 'scheduled']);
    forced.succeed(T0 + 20.1 * SECOND);
    expect(pendingAt(lifecycle)).toBe(T0 + 30 * SECOND);
  });

  it('in a run recorded before the rule, is satisfied by the attempt in flight (replay)', () => {
    const { lifecycle, attempt } = activeClient({ patched: false });
    const renewal = attempt(T0 + 255 * SECOND);
    lifecycle.requestForcedRefresh({}, T0 + 255.05 * SECOND);
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
  });
});

describe('a forced refresh naming the current token', () => {
  it('arriving before an attempt is satisfied by that attempt', () => {
    const { lifecycle, attempt } = activeClient();
    lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(1) }, T0 + 20 * SECOND);
    attempt(T0 + 20 * SECOND).succeed(T0 + 20.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
  });

  it('arriving during an attempt is satisfied by the newer token that attempt brings', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(1) }, T0 + 255.05 * SECOND);
    expect(decisions).toEqual(['coalesced']);
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(pendingAt(lifecycle)).toBeNull();
  });

  it('arriving after an attempt, naming the token it brought, is scheduled at the minimum interval', () => {
    const { lifecycle, decisions } = activeClient();
    lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(1) }, T0 + 2 * SECOND);
    expect(decisions).toEqual(['scheduled']);
    expect(pendingAt(lifecycle)).toBe(T0 + MIN_INTERVAL_MS);
  });
});

describe('a forced refresh naming another token', () => {
  it('arriving during an attempt and naming the token it brings is decided again after it', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(2) }, T0 + 255.05 * SECOND);
    expect(decisions).toEqual([]);
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(decisions).toEqual(['scheduled']);
    expect(pendingAt(lifecycle)).toBe(T0 + 265 * SECOND);
  });

  it('arriving outside an attempt is ignored as stale', () => {
    const { lifecycle, decisions } = activeClient();
    lifecycle.requestForcedRefresh({ rejectedFingerprint: fingerprintOf(7) }, T0 + 2 * SECOND);
    expect(decisions).toEqual(['ignored_stale']);
    expect(pendingAt(lifecycle)).toBeNull();
  });
});

describe('refreshNow', () => {
  it('asked during an attempt is answered by the next attempt, at the minimum interval after it', () => {
    const { lifecycle, decisions, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    const answeredBy = lifecycle.requestRefreshNow('tokenctl refresh --wait', T0 + 255.05 * SECOND);
    expect(decisions).toEqual(['scheduled']);
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(lifecycle.attemptsFinished).toBeLessThan(answeredBy);
    expect(pendingAt(lifecycle)).toBe(T0 + 265 * SECOND);

    attempt(T0 + 265 * SECOND).succeed(T0 + 265.1 * SECOND);
    expect(lifecycle.attemptsFinished).toBe(answeredBy);
    expect(lifecycle.outcomeOfAttempt(answeredBy).generation).toBe(3);
  });

  it('asked between attempts is answered by the next one', () => {
    const { lifecycle, attempt } = activeClient();
    const answeredBy = lifecycle.requestRefreshNow(undefined, T0 + 20 * SECOND);
    expect(pendingAt(lifecycle)).toBe(T0 + 20 * SECOND);
    attempt(T0 + 20 * SECOND).succeed(T0 + 20.1 * SECOND);
    expect(lifecycle.attemptsFinished).toBe(answeredBy);
    expect(pendingAt(lifecycle)).toBeNull();
  });

  it('in a run recorded before the rule, is answered by the attempt in flight (replay)', () => {
    const { lifecycle, attempt } = activeClient({ patched: false });
    const renewal = attempt(T0 + 255 * SECOND);
    const answeredBy = lifecycle.requestRefreshNow(undefined, T0 + 255.05 * SECOND);
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(lifecycle.attemptsFinished).toBe(answeredBy);
  });
});

describe('reconfigure', () => {
  it('during an attempt gets a token of the new registration after it', () => {
    const { lifecycle, attempt } = activeClient();
    const renewal = attempt(T0 + 255 * SECOND);
    lifecycle.reconfigure({ scope: 'orders:write' });
    renewal.succeed(T0 + 255.1 * SECOND);
    expect(pendingAt(lifecycle)).toBe(T0 + 265 * SECOND);
  });
});
