// The pure decisions of the token lifecycle (workflows/policy.ts). Long horizons (a thousand
// failures, a thousand clients) are tested here, because no time-skipping server is available.
import { describe, expect, it } from 'vitest';
import {
  backoffDelayMs,
  BREAKER_MIN_WAIT_MS,
  breakerWaitMs,
  decideForcedRefresh,
  DEFAULT_POLICY,
  jitterUnit,
  nextRefreshAt,
  policyProblems,
  resolvePolicy,
} from '../../workflows/policy.js';
import { isRetryable } from '../../workflows/failures.js';
import { FAILURE_KINDS, type RetryableFailureKind } from '../../workflows/failures.js';
import type { PolicyOverrides, RefreshPolicy } from '../../workflows/policy.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

const RETRYABLE_KINDS = FAILURE_KINDS.filter((kind): kind is RetryableFailureKind => kind !== 'credentials_rejected');

/** A policy override as it arrives from JSON (tokenctl `--policy`, a clients.yaml). */
function overrides(value: PolicyOverrides): PolicyOverrides {
  return value;
}

function policyWith(changes: Partial<RefreshPolicy>): RefreshPolicy {
  return { ...DEFAULT_POLICY, ...changes };
}

/** `base × 2^(n−1)` up to the cap: the delay before jitter takes its share off. */
function unjittered(kind: RetryableFailureKind, failures: number): number {
  const { baseMs, capMs } = DEFAULT_POLICY.backoff[kind];
  return Math.min(capMs, baseMs * 2 ** (failures - 1));
}

const seeds = (count: number, prefix = 'client') => Array.from({ length: count }, (_, i) => `${prefix}-${i}#1`);

describe('DEFAULT_POLICY', () => {
  it('renews at 0.85 of the lifetime, jitters by 0.05, assumes 300 s and allows a forced refresh every 10 s', () => {
    expect(DEFAULT_POLICY.refreshFraction).toBe(0.85);
    expect(DEFAULT_POLICY.jitterFraction).toBe(0.05);
    expect(DEFAULT_POLICY.defaultExpiresInSeconds).toBe(300);
    expect(DEFAULT_POLICY.minForcedRefreshIntervalMs).toBe(10_000);
  });

  it("backs off as docs/design.md's failure table says: 1 s–60 s after 429, 30 s–15 min when blocked, 2 s–5 min on server or malformed answers", () => {
    expect(DEFAULT_POLICY.backoff).toEqual({
      rate_limited: { baseMs: 1_000, capMs: 60_000 },
      blocked: { baseMs: 30_000, capMs: 900_000 },
      server_error: { baseMs: 2_000, capMs: 300_000 },
      malformed_response: { baseMs: 2_000, capMs: 300_000 },
      secret_unavailable: { baseMs: 5_000, capMs: 300_000 },
      store_unavailable: { baseMs: 1_000, capMs: 30_000 },
      login_budget: { baseMs: 1_000, capMs: 60_000 },
    });
  });

  it('clamps Retry-After to 1 s – 15 min, parks rejected credentials without probing, and continues as new after 50 cycles', () => {
    expect(DEFAULT_POLICY.retryAfterMinMs).toBe(1_000);
    expect(DEFAULT_POLICY.retryAfterMaxMs).toBe(900_000);
    expect(DEFAULT_POLICY.rejectedProbeIntervalMs).toBe(0);
    expect(DEFAULT_POLICY.maxCyclesPerRun).toBe(50);
  });

  it('renews current tokens as local activities', () => {
    expect(DEFAULT_POLICY.localRenewals).toBe(true);
  });

  it('probes an endpoint that is down at least every 8 s', () => {
    expect(DEFAULT_POLICY.probeIntervalMaxMs).toBe(8_000);
  });

  it("gives a token request 10 s, the token endpoint client's own default", () => {
    expect(DEFAULT_POLICY.requestTimeoutMs).toBe(10_000);
  });

  it('has a backoff rule for every retryable failure kind and none for rejected credentials', () => {
    expect(Object.keys(DEFAULT_POLICY.backoff).sort()).toEqual([...RETRYABLE_KINDS].sort());
  });

  it('passes its own validation', () => {
    expect(policyProblems(DEFAULT_POLICY)).toEqual([]);
  });
});

describe('resolvePolicy', () => {
  it('gives the defaults when a registration has no policy', () => {
    expect(resolvePolicy(undefined)).toEqual(DEFAULT_POLICY);
    expect(resolvePolicy({})).toEqual(DEFAULT_POLICY);
  });

  it('overrides one field of one backoff kind and keeps the other field and every other kind', () => {
    const policy = resolvePolicy(overrides({ backoff: { blocked: { capMs: 2 * MINUTE } } }));

    expect(policy.backoff).toEqual({ ...DEFAULT_POLICY.backoff, blocked: { baseMs: 30_000, capMs: 120_000 } });
  });

  it('merges several kinds at once and leaves the scalar fields alone', () => {
    const policy = resolvePolicy(overrides({ backoff: { rate_limited: { baseMs: 500 }, server_error: { baseMs: 1_000, capMs: 10_000 } } }));

    expect(policy).toEqual({
      ...DEFAULT_POLICY,
      backoff: {
        ...DEFAULT_POLICY.backoff,
        rate_limited: { baseMs: 500, capMs: 60_000 },
        server_error: { baseMs: 1_000, capMs: 10_000 },
      },
    });
  });

  it('overrides scalar fields and keeps the default backoff', () => {
    const policy = resolvePolicy({ refreshFraction: 0.9, minForcedRefreshIntervalMs: 0 });

    expect(policy).toEqual({ ...DEFAULT_POLICY, refreshFraction: 0.9, minForcedRefreshIntervalMs: 0 });
  });

  it('leaves DEFAULT_POLICY unchanged', () => {
    const before = structuredClone(DEFAULT_POLICY);
    resolvePolicy(overrides({ refreshFraction: 0.5, backoff: { blocked: { baseMs: 1, capMs: 2 } } }));

    expect(DEFAULT_POLICY).toEqual(before);
  });

  it('treats a field set to undefined as absent', () => {
    const policy = resolvePolicy({ refreshFraction: undefined, backoff: { blocked: { capMs: undefined } } });

    expect(policy).toEqual(DEFAULT_POLICY);
  });

  it('gives each resolved policy its own backoff rules, so changing one cannot reach the defaults', () => {
    const policy = resolvePolicy(undefined);
    policy.backoff.blocked.baseMs = 1;

    expect(DEFAULT_POLICY.backoff.blocked.baseMs).toBe(30_000);
    expect(Object.isFrozen(DEFAULT_POLICY.backoff.blocked)).toBe(true);
  });
});

describe('policyProblems', () => {
  it.each<[string, Partial<RefreshPolicy>, string]>([
    ['refreshFraction of 1', { refreshFraction: 1 }, 'policy.refreshFraction must be between 0 and 1 (exclusive)'],
    ['negative jitterFraction', { jitterFraction: -0.01 }, 'policy.jitterFraction must be at least 0 and below refreshFraction'],
    [
      'jitterFraction equal to refreshFraction',
      { jitterFraction: 0.85 },
      'policy.jitterFraction must be at least 0 and below refreshFraction',
    ],
    ['defaultExpiresInSeconds of 0', { defaultExpiresInSeconds: 0 }, 'policy.defaultExpiresInSeconds must be greater than 0'],
    ['negative minForcedRefreshIntervalMs', { minForcedRefreshIntervalMs: -1 }, 'policy.minForcedRefreshIntervalMs must be at least 0'],
    ['negative retryAfterMinMs', { retryAfterMinMs: -1 }, 'policy.retryAfterMinMs must be between 0 and retryAfterMaxMs'],
    [
      'retryAfterMinMs above retryAfterMaxMs',
      { retryAfterMinMs: 2_000, retryAfterMaxMs: 1_000 },
      'policy.retryAfterMinMs must be between 0 and retryAfterMaxMs',
    ],
    ['probeIntervalMaxMs below the breaker minimum', { probeIntervalMaxMs: 10 }, 'policy.probeIntervalMaxMs must be at least 50'],
    [
      'negative rejectedProbeIntervalMs',
      { rejectedProbeIntervalMs: -1 },
      'policy.rejectedProbeIntervalMs must be at least 0 (0 disables the probe)',
    ],
    ['maxCyclesPerRun of 0', { maxCyclesPerRun: 0 }, 'policy.maxCyclesPerRun must be an integer of at least 1'],
    ['fractional maxCyclesPerRun', { maxCyclesPerRun: 1.5 }, 'policy.maxCyclesPerRun must be an integer of at least 1'],
    ['requestTimeoutMs of 0', { requestTimeoutMs: 0 }, 'policy.requestTimeoutMs must be greater than 0 and at most 50000'],
    [
      "requestTimeoutMs beyond the IAM activity's own timeout",
      { requestTimeoutMs: 60_000 },
      'policy.requestTimeoutMs must be greater than 0 and at most 50000',
    ],
  ])('names the field for a %s', (_what, changes, message) => {
    expect(policyProblems(policyWith(changes))).toEqual([message]);
  });

  it.each([
    ['a zero baseMs', { baseMs: 0, capMs: 1_000 }],
    ['a capMs below baseMs', { baseMs: 2_000, capMs: 1_000 }],
  ])('names the failure kind of a backoff rule with %s', (_what, rule) => {
    const policy = resolvePolicy(overrides({ backoff: { server_error: rule } }));

    expect(policyProblems(policy)).toEqual(['policy.backoff.server_error must have baseMs > 0 and capMs >= baseMs']);
  });

  it.each([0, Number.NaN])('flags a refreshFraction of %s, and the jitter that can no longer be below it', (refreshFraction) => {
    expect(policyProblems(policyWith({ refreshFraction, jitterFraction: 0 }))).toEqual([
      'policy.refreshFraction must be between 0 and 1 (exclusive)',
      'policy.jitterFraction must be at least 0 and below refreshFraction',
    ]);
  });

  it('names the kind when a partial override puts the cap below the default base', () => {
    const policy = resolvePolicy(overrides({ backoff: { blocked: { capMs: 10_000 } } }));

    expect(policyProblems(policy)).toEqual(['policy.backoff.blocked must have baseMs > 0 and capMs >= baseMs']);
  });

  it('reports every problem at once, in field order', () => {
    const policy = resolvePolicy(
      overrides({
        refreshFraction: 2,
        jitterFraction: -1,
        defaultExpiresInSeconds: -5,
        minForcedRefreshIntervalMs: -1,
        retryAfterMinMs: -1,
        rejectedProbeIntervalMs: -1,
        maxCyclesPerRun: 0,
        backoff: { rate_limited: { baseMs: 0 }, store_unavailable: { capMs: 1 } },
      }),
    );

    expect(policyProblems(policy)).toEqual([
      'policy.refreshFraction must be between 0 and 1 (exclusive)',
      'policy.jitterFraction must be at least 0 and below refreshFraction',
      'policy.defaultExpiresInSeconds must be greater than 0',
      'policy.minForcedRefreshIntervalMs must be at least 0',
      'policy.retryAfterMinMs must be between 0 and retryAfterMaxMs',
      'policy.rejectedProbeIntervalMs must be at least 0 (0 disables the probe)',
      'policy.maxCyclesPerRun must be an integer of at least 1',
      'policy.backoff.rate_limited must have baseMs > 0 and capMs >= baseMs',
      'policy.backoff.store_unavailable must have baseMs > 0 and capMs >= baseMs',
    ]);
  });

  it('accepts every boundary value that is still meaningful', () => {
    const policy = resolvePolicy(
      overrides({
        refreshFraction: 0.01,
        jitterFraction: 0,
        minForcedRefreshIntervalMs: 0,
        retryAfterMinMs: 0,
        retryAfterMaxMs: 0,
        rejectedProbeIntervalMs: 0,
        maxCyclesPerRun: 1,
        backoff: { blocked: { baseMs: 1, capMs: 1 } },
      }),
    );

    expect(policyProblems(policy)).toEqual([]);
  });
});

describe('jitterUnit', () => {
  it('gives the same number for the same seed, every time', () => {
    const first = jitterUnit('orders-api#42');

    expect(jitterUnit('orders-api#42')).toBe(first);
    expect(jitterUnit('orders-api#43')).not.toBe(first);
  });

  it('stays in [0, 1) for a thousand seeds, the empty one and long unicode ones', () => {
    for (const seed of [...seeds(1000), '', 'é'.repeat(10_000), '\u{1F511}#1', '\uffff'.repeat(64)]) {
      const unit = jitterUnit(seed);
      expect(unit).toBeGreaterThanOrEqual(0);
      expect(unit).toBeLessThan(1);
    }
  });

  it('spreads a thousand clients over every decile, none holding more than twice its share', () => {
    const deciles = Array.from({ length: 10 }, () => 0);
    for (const seed of seeds(1000)) deciles[Math.floor(jitterUnit(seed) * 10)]! += 1;

    for (const count of deciles) {
      expect(count).toBeGreaterThan(0);
      expect(count).toBeLessThan(200);
    }
  });

  it('spreads the generations of one client over every decile', () => {
    const deciles = Array.from({ length: 10 }, () => 0);
    for (let generation = 1; generation <= 1000; generation++) deciles[Math.floor(jitterUnit(`orders-api#${generation}`) * 10)]! += 1;

    expect(deciles.every((count) => count > 0)).toBe(true);
  });
});

describe('nextRefreshAt', () => {
  it('renews at requestStartedAt + (0.85 − 0.05 × jitter) × expires_in', () => {
    const seed = 'orders-api#7';
    const at = nextRefreshAt({ requestStartedAt: T0, expiresInSeconds: 300 }, DEFAULT_POLICY, seed);

    expect(at).toBe(T0 + Math.round((0.85 - 0.05 * jitterUnit(seed)) * 300_000));
  });

  it('renews at exactly 0.85 × expires_in without jitter', () => {
    const policy = policyWith({ jitterFraction: 0 });

    expect(nextRefreshAt({ requestStartedAt: T0, expiresInSeconds: 300 }, policy, 'any')).toBe(T0 + 255_000);
    expect(nextRefreshAt({ requestStartedAt: T0, expiresInSeconds: 3 }, policy, 'any')).toBe(T0 + 2_550);
  });

  it.each([3, 60, 300, 3600, 86_400])(
    'renews a %i s token after 0.80 and no later than 0.85 of its lifetime, for a thousand seeds',
    (expiresInSeconds) => {
      const lifetimeMs = expiresInSeconds * SECOND;
      for (const seed of seeds(1000)) {
        const at = nextRefreshAt({ requestStartedAt: T0, expiresInSeconds }, DEFAULT_POLICY, seed);
        expect(at - T0).toBeLessThanOrEqual(0.85 * lifetimeMs);
        expect(at - T0).toBeGreaterThanOrEqual(0.8 * lifetimeMs);
      }
    },
  );

  it('is measured from when the request started: a later start moves the renewal by exactly as much', () => {
    const early = nextRefreshAt({ requestStartedAt: T0, expiresInSeconds: 300 }, DEFAULT_POLICY, 'seed');
    const late = nextRefreshAt({ requestStartedAt: T0 + 12_345, expiresInSeconds: 300 }, DEFAULT_POLICY, 'seed');

    expect(late - early).toBe(12_345);
  });

  it('follows an overridden refresh fraction', () => {
    const policy = policyWith({ refreshFraction: 0.5, jitterFraction: 0 });

    expect(nextRefreshAt({ requestStartedAt: T0, expiresInSeconds: 300 }, policy, 'seed')).toBe(T0 + 150_000);
  });
});

describe('backoffDelayMs', () => {
  const SEQUENCES_S: Record<RetryableFailureKind, number[]> = {
    rate_limited: [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60],
    blocked: [30, 60, 120, 240, 480, 900, 900, 900, 900, 900, 900, 900],
    server_error: [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300],
    malformed_response: [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300],
    secret_unavailable: [5, 10, 20, 40, 80, 160, 300, 300, 300, 300, 300, 300],
    store_unavailable: [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30],
    login_budget: [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60],
  };
  const FAILURES = Array.from({ length: 12 }, (_, i) => i + 1);

  it.each(RETRYABLE_KINDS)('doubles the unjittered %s delay from its base up to its cap over 12 failures', (kind) => {
    expect(FAILURES.map((n) => unjittered(kind, n))).toEqual(SEQUENCES_S[kind].map((s) => s * SECOND));
  });

  it.each(RETRYABLE_KINDS)('keeps every %s delay between 0.8 × and 1 × the unjittered value, for a hundred seeds', (kind) => {
    for (const n of FAILURES) {
      for (const seed of seeds(100)) {
        const delay = backoffDelayMs(kind, n, {}, DEFAULT_POLICY, seed);
        expect(delay).toBeLessThanOrEqual(unjittered(kind, n));
        expect(delay).toBeLessThanOrEqual(DEFAULT_POLICY.backoff[kind].capMs);
        expect(delay).toBeGreaterThanOrEqual(0.8 * unjittered(kind, n));
      }
    }
  });

  it.each(RETRYABLE_KINDS)('takes the same jitter share off every %s delay of one seed, so the sequence doubles until the cap', (kind) => {
    const seed = 'orders-api#3#1';
    const factor = 1 - 0.2 * jitterUnit(seed);

    expect(FAILURES.map((n) => backoffDelayMs(kind, n, {}, DEFAULT_POLICY, seed))).toEqual(
      SEQUENCES_S[kind].map((s) => Math.round(s * SECOND * factor)),
    );
  });

  it('jitters different clients apart', () => {
    const delays = new Set(seeds(100).map((seed) => backoffDelayMs('blocked', 3, {}, DEFAULT_POLICY, seed)));

    expect(delays.size).toBeGreaterThan(90);
  });

  it('treats a failure count below 1 as the first failure', () => {
    expect(backoffDelayMs('blocked', 0, {}, DEFAULT_POLICY, 's')).toBe(backoffDelayMs('blocked', 1, {}, DEFAULT_POLICY, 's'));
    expect(backoffDelayMs('blocked', -3, {}, DEFAULT_POLICY, 's')).toBe(backoffDelayMs('blocked', 1, {}, DEFAULT_POLICY, 's'));
  });

  it.each([
    [0, 1_000],
    [500, 1_000],
    [1_000, 1_000],
    [120_000, 120_000],
    [900_000, 900_000],
    [2 * 60 * MINUTE, 900_000],
  ])('honours a Retry-After of %i ms after a 429 as %i ms, unjittered, whatever the failure count', (retryAfterMs, expected) => {
    for (const n of [1, 7, 1000]) {
      for (const seed of ['a', 'b', 'c']) {
        expect(backoffDelayMs('rate_limited', n, { status: 429, retryAfterMs }, DEFAULT_POLICY, seed)).toBe(expected);
      }
    }
  });

  it('clamps Retry-After to the bounds of an overridden policy', () => {
    const policy = policyWith({ retryAfterMinMs: 5_000, retryAfterMaxMs: 30_000 });

    expect(backoffDelayMs('rate_limited', 1, { retryAfterMs: 0 }, policy, 's')).toBe(5_000);
    expect(backoffDelayMs('rate_limited', 1, { retryAfterMs: 10_000 }, policy, 's')).toBe(10_000);
    expect(backoffDelayMs('rate_limited', 1, { retryAfterMs: 60_000 }, policy, 's')).toBe(30_000);
  });

  it.each(RETRYABLE_KINDS.filter((kind) => kind !== 'rate_limited'))('ignores Retry-After after a %s failure', (kind) => {
    for (const n of [1, 4, 12]) {
      expect(backoffDelayMs(kind, n, { status: 503, retryAfterMs: 120_000 }, DEFAULT_POLICY, 'seed')).toBe(
        backoffDelayMs(kind, n, {}, DEFAULT_POLICY, 'seed'),
      );
    }
  });

  it.each(RETRYABLE_KINDS)('never overflows nor exceeds the %s cap over 1000 consecutive failures', (kind) => {
    const { capMs } = DEFAULT_POLICY.backoff[kind];
    for (let n = 1; n <= 1000; n++) {
      const delay = backoffDelayMs(kind, n, {}, DEFAULT_POLICY, `orders-api#1#${n}`);
      expect(Number.isSafeInteger(delay)).toBe(true);
      expect(delay).toBeLessThanOrEqual(capMs);
      expect(delay).toBeGreaterThanOrEqual(n >= 12 ? 0.8 * capMs : 0.8 * unjittered(kind, n));
    }
    expect(backoffDelayMs(kind, Number.MAX_SAFE_INTEGER, {}, DEFAULT_POLICY, 's')).toBeLessThanOrEqual(capMs);
    expect(backoffDelayMs(kind, Infinity, {}, DEFAULT_POLICY, 's')).toBeLessThanOrEqual(capMs);
  });

  describe('when the endpoint breaker held the request back', () => {
    const breaker = (retryAfterMs: number) => ({ heldBack: true, retryAfterMs });

    it.each(['rate_limited', 'blocked'] as const)(
      "waits what remains of the breaker's wait after %s, unjittered, whatever the failure count",
      (kind) => {
        for (const n of [0, 1, 5, 1000]) {
          for (const seed of ['a', 'b', 'c']) {
            expect(backoffDelayMs(kind, n, breaker(2_345), DEFAULT_POLICY, seed)).toBe(2_345);
          }
        }
      },
    );

    it('lets a blocked client follow the breaker after seconds, not after the 30 s blocked backoff', () => {
      expect(backoffDelayMs('blocked', 1, breaker(4_000), DEFAULT_POLICY, 's')).toBe(4_000);
      expect(backoffDelayMs('blocked', 1, { retryAfterMs: 4_000 }, DEFAULT_POLICY, 's')).toBeGreaterThanOrEqual(24_000);
    });

    it('follows a successful probe soon: a short wait is not raised to the Retry-After floor, only to the breaker minimum', () => {
      expect(backoffDelayMs('rate_limited', 1, breaker(200), DEFAULT_POLICY, 's')).toBe(200);
      expect(backoffDelayMs('rate_limited', 1, breaker(3), DEFAULT_POLICY, 's')).toBe(BREAKER_MIN_WAIT_MS);
      expect(backoffDelayMs('blocked', 1, breaker(0), DEFAULT_POLICY, 's')).toBe(BREAKER_MIN_WAIT_MS);
    });

    it('never waits longer than retryAfterMaxMs, and rounds to whole milliseconds', () => {
      expect(backoffDelayMs('blocked', 1, breaker(2 * 60 * MINUTE), DEFAULT_POLICY, 's')).toBe(15 * MINUTE);
      expect(backoffDelayMs('rate_limited', 1, breaker(1_234.6), policyWith({ retryAfterMaxMs: 60_000 }), 's')).toBe(1_235);
    });

    it("falls back to the kind's own backoff when the breaker gave no wait", () => {
      expect(backoffDelayMs('blocked', 2, { heldBack: true }, DEFAULT_POLICY, 's')).toBe(
        backoffDelayMs('blocked', 2, {}, DEFAULT_POLICY, 's'),
      );
    });

    it.each(['malformed_response', 'secret_unavailable', 'store_unavailable'] as const)(
      'is ignored for %s, which the breaker never reports',
      (kind) => {
        expect(backoffDelayMs(kind, 3, breaker(1_000), DEFAULT_POLICY, 's')).toBe(backoffDelayMs(kind, 3, {}, DEFAULT_POLICY, 's'));
      },
    );
  });

  describe("when the request failed and the endpoint's breaker holds every client back", () => {
    it.each(['rate_limited', 'blocked', 'server_error'] as const)(
      "waits for the endpoint's next probe after %s, whatever the failure count, not a growing backoff of its own",
      (kind) => {
        for (const n of [1, 5, 1000]) expect(backoffDelayMs(kind, n, { endpointWaitMs: 6_400 }, DEFAULT_POLICY, 's')).toBe(6_400);
      },
    );

    it('is bounded like a held-back wait', () => {
      expect(backoffDelayMs('server_error', 1, { endpointWaitMs: 0 }, DEFAULT_POLICY, 's')).toBe(BREAKER_MIN_WAIT_MS);
      expect(backoffDelayMs('blocked', 1, { endpointWaitMs: 2 * 60 * MINUTE }, DEFAULT_POLICY, 's')).toBe(15 * MINUTE);
    });

    it.each(['malformed_response', 'secret_unavailable', 'store_unavailable'] as const)('is ignored for %s', (kind) => {
      expect(backoffDelayMs(kind, 3, { endpointWaitMs: 1_000 }, DEFAULT_POLICY, 's')).toBe(
        backoffDelayMs(kind, 3, {}, DEFAULT_POLICY, 's'),
      );
    });
  });

  it('still reaches a cap of a day from a 1 ms base (the doubling stops at 2^30, not at the cap)', () => {
    const policy = resolvePolicy(overrides({ backoff: { blocked: { baseMs: 1, capMs: 24 * 60 * MINUTE } } }));

    expect(backoffDelayMs('blocked', 1000, {}, { ...policy }, 's')).toBeGreaterThanOrEqual(0.8 * 24 * 60 * MINUTE);
  });
});

describe('breakerWaitMs', () => {
  const unbounded = policyWith({ probeIntervalMaxMs: 24 * 60 * MINUTE });

  it.each(['rate_limited', 'blocked', 'server_error'] as const)(
    'after %s, is the shortest delay backoffDelayMs can choose alone, so a probe never comes later than the client would have tried',
    (kind) => {
      for (let n = 1; n <= 12; n++) {
        const wait = breakerWaitMs(kind, n, {}, unbounded);
        expect(wait).toBe(Math.floor(0.8 * unjittered(kind, n)));
        for (const seed of seeds(200)) expect(backoffDelayMs(kind, n, {}, unbounded, seed)).toBeGreaterThanOrEqual(wait);
      }
    },
  );

  it('stays at or below every jittered delay for odd bases too (no rounding up)', () => {
    const policy = resolvePolicy(overrides({ backoff: { blocked: { baseMs: 3, capMs: 1_000 } } }));
    for (let n = 1; n <= 10; n++) {
      const wait = breakerWaitMs('blocked', n, {}, policy);
      for (const seed of seeds(500)) expect(backoffDelayMs('blocked', n, {}, policy, seed)).toBeGreaterThanOrEqual(wait);
    }
  });

  it("honours a 429's Retry-After exactly as the opener's own backoff does, clamped to the policy", () => {
    expect(breakerWaitMs('rate_limited', 1, { retryAfterMs: 3_000 }, DEFAULT_POLICY)).toBe(3_000);
    expect(breakerWaitMs('rate_limited', 4, { retryAfterMs: 3_000 }, DEFAULT_POLICY)).toBe(
      backoffDelayMs('rate_limited', 4, { retryAfterMs: 3_000 }, DEFAULT_POLICY, 's'),
    );
    expect(breakerWaitMs('rate_limited', 1, { retryAfterMs: 0 }, DEFAULT_POLICY)).toBe(1_000);
    expect(breakerWaitMs('rate_limited', 1, { retryAfterMs: 3 * 60 * MINUTE }, DEFAULT_POLICY)).toBe(15 * MINUTE);
  });

  it("honours a 503's Retry-After too, beyond the probe interval's cap (RFC 9110 §10.2.3)", () => {
    expect(breakerWaitMs('server_error', 1, { retryAfterMs: 30_000 }, DEFAULT_POLICY)).toBe(30_000);
  });

  it('grows with each failed probe up to probeIntervalMaxMs: 1.6 s, 3.2 s, 6.4 s, then 8 s after 5xx, by default', () => {
    expect([1, 2, 3, 4, 7, 50].map((n) => breakerWaitMs('server_error', n, {}, DEFAULT_POLICY))).toEqual([
      1_600, 3_200, 6_400, 8_000, 8_000, 8_000,
    ]);
    expect([1, 2, 50].map((n) => breakerWaitMs('blocked', n, {}, DEFAULT_POLICY))).toEqual([8_000, 8_000, 8_000]);
    expect([1, 50].map((n) => breakerWaitMs('blocked', n, {}, policyWith({ probeIntervalMaxMs: 2_000 })))).toEqual([2_000, 2_000]);
  });

  it('ignores a Retry-After sent with a block (a reset has none; a later one is not its to give)', () => {
    expect(breakerWaitMs('blocked', 1, { retryAfterMs: 1_000 }, unbounded)).toBe(24_000);
  });
});

describe('isRetryable', () => {
  it('is false only for rejected credentials', () => {
    expect(isRetryable('credentials_rejected')).toBe(false);
  });

  it.each(RETRYABLE_KINDS)('is true for %s', (kind) => {
    expect(isRetryable(kind)).toBe(true);
  });
});

describe('decideForcedRefresh', () => {
  const policy = DEFAULT_POLICY;

  it('ignores a request naming a fingerprint that is no longer current', () => {
    const decision = decideForcedRefresh(
      { rejectedFingerprint: '0123456789abcdef' },
      { fingerprint: 'fedcba9876543210', lastRequestStartedAt: T0 - MINUTE },
      T0,
      policy,
    );

    expect(decision).toEqual({ action: 'ignore', why: 'stale_fingerprint' });
  });

  it('ignores a request naming a fingerprint while the workflow holds no token', () => {
    const decision = decideForcedRefresh(
      { rejectedFingerprint: '0123456789abcdef' },
      { fingerprint: undefined, lastRequestStartedAt: undefined },
      T0,
      policy,
    );

    expect(decision).toEqual({ action: 'ignore', why: 'stale_fingerprint' });
  });

  it.each([
    ['naming the current fingerprint', { rejectedFingerprint: '0123456789abcdef' }],
    ['naming no fingerprint', {}],
  ])('schedules a request %s no earlier than 10 s after the last request started', (_what, request) => {
    const decision = decideForcedRefresh(request, { fingerprint: '0123456789abcdef', lastRequestStartedAt: T0 - 3_000 }, T0, policy);

    expect(decision).toEqual({ action: 'schedule', notBefore: T0 + 7_000 });
  });

  it('schedules a request now when the last request started more than the minimum interval ago', () => {
    const decision = decideForcedRefresh(
      { rejectedFingerprint: 'aaaa' },
      { fingerprint: 'aaaa', lastRequestStartedAt: T0 - 10 * MINUTE },
      T0,
      policy,
    );

    expect(decision).toEqual({ action: 'schedule', notBefore: T0 });
  });

  it('schedules a request now when exactly the minimum interval has passed', () => {
    const decision = decideForcedRefresh({}, { fingerprint: 'aaaa', lastRequestStartedAt: T0 - 10_000 }, T0, policy);

    expect(decision).toEqual({ action: 'schedule', notBefore: T0 });
  });

  it('schedules the first request now when there was no previous request', () => {
    const decision = decideForcedRefresh({}, { fingerprint: undefined, lastRequestStartedAt: undefined }, T0, policy);

    expect(decision).toEqual({ action: 'schedule', notBefore: T0 });
  });

  it('follows an overridden minimum interval, and 0 lets every request through at once', () => {
    const last = { fingerprint: 'aaaa', lastRequestStartedAt: T0 - 1_000 };

    expect(decideForcedRefresh({}, last, T0, policyWith({ minForcedRefreshIntervalMs: 60_000 }))).toEqual({
      action: 'schedule',
      notBefore: T0 + 59_000,
    });
    expect(decideForcedRefresh({}, last, T0, policyWith({ minForcedRefreshIntervalMs: 0 }))).toEqual({ action: 'schedule', notBefore: T0 });
  });

  it('gives a hundred requests within the interval one and the same time, so they coalesce', () => {
    const current = { fingerprint: 'aaaa', lastRequestStartedAt: T0 };
    const times = new Set(
      Array.from({ length: 100 }, (_, i) => decideForcedRefresh({ rejectedFingerprint: 'aaaa' }, current, T0 + i * 50, policy)).map((d) =>
        d.action === 'schedule' ? d.notBefore : null,
      ),
    );

    expect([...times]).toEqual([T0 + 10_000]);
  });
});
