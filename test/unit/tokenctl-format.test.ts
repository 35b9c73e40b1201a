/** What tokenctl prints for a status and a list (cli/format.ts): pure functions of their input and now. */
import { describe, expect, test } from 'vitest';
import { formatClientTable, formatStatus } from '../../cli/format.js';
import type { TokenStatus } from '../../workflows/messages.js';

const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);

const parked: TokenStatus = {
  clientId: 'shipping-service',
  state: 'credentials_rejected',
  backoffReason: null,
  generation: 0,
  fingerprint: null,
  expiresAt: null,
  nextRefreshAt: null,
  lastError: { kind: 'credentials_rejected', message: 'invalid_client', at: NOW - 5_000 },
  consecutiveFailures: 1,
  backoffUntil: null,
  forcedRefreshAt: null,
};

describe('formatStatus', () => {
  test('a parked client gets the next step, with its ID in the commands', () => {
    expect(formatStatus(parked, NOW).split('\n').at(-1)).toBe(
      "next step     fix the credentials at the IAM or in the worker's reference, then tokenctl resume shipping-service (or tokenctl reconfigure shipping-service --secret REF …)",
    );
  });

  test('an active client has no next step to take', () => {
    const active: TokenStatus = { ...parked, state: 'active', generation: 3, lastError: null, consecutiveFailures: 0 };
    expect(formatStatus(active, NOW)).not.toContain('next step');
  });
});

describe('formatClientTable', () => {
  test('shows the next refresh of an active client', () => {
    const table = formatClientTable(
      [
        {
          clientId: 'orders-service',
          state: 'active',
          expiresAt: NOW + 60_000,
          nextRefreshAt: NOW + 51_000,
          failures: 0,
          tokenEndpointHost: 'iam:8180',
        },
      ],
      NOW,
    );
    expect(table.split('\n')[1]).toMatch(/^orders-service +active +in 60s +in 51s +0 +iam:8180$/);
  });
});
