/**
 * workflows/failures.ts, readFailureDetails: the details of a held-back request are read under
 * their name of today, `heldBack`, and under the one that histories recorded before it carry,
 * `breakerOpen`, so those runs replay and decide as they did.
 */
import { describe, expect, test } from 'vitest';
import { readFailureDetails } from '../../workflows/failures.js';
import { backoffDelayMs, BREAKER_MIN_WAIT_MS, DEFAULT_POLICY } from '../../workflows/policy.js';

describe('readFailureDetails', () => {
  test('reads `breakerOpen` of an older activity as `heldBack`', () => {
    expect(readFailureDetails({ breakerOpen: true, retryAfterMs: 1_500 })).toEqual({ heldBack: true, retryAfterMs: 1_500 });
  });

  test('takes `heldBack` as it is, and keeps the other fields', () => {
    expect(readFailureDetails({ heldBack: true, retryAfterMs: 700 })).toEqual({ heldBack: true, retryAfterMs: 700 });
    expect(readFailureDetails({ status: 429, oauthError: 'slow_down', retryAfterMs: 2_000 })).toEqual({
      status: 429,
      oauthError: 'slow_down',
      retryAfterMs: 2_000,
    });
  });

  test('reads absent details (a failure with none) as none', () => {
    expect(readFailureDetails(undefined)).toEqual({});
    expect(readFailureDetails(null)).toEqual({});
  });

  test('an old held-back failure waits what the breaker said, not an exponential backoff', () => {
    const details = readFailureDetails({ breakerOpen: true, retryAfterMs: 4_321 });
    expect(backoffDelayMs('rate_limited', 3, details, DEFAULT_POLICY, 'seed')).toBe(Math.max(4_321, BREAKER_MIN_WAIT_MS));
  });
});
