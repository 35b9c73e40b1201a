/**
 * The project's own metrics, exported by the Temporal runtime's Prometheus endpoint next to its
 * worker metrics (one `/metrics` for everything). Tags never carry a secret or a token.
 */
import type { MetricMeter } from '@temporalio/common';
import type { FailureKind } from '../workflows/failures.js';
import type { RefusedRefreshRequestReason } from './refresh-request-consumer.js';
import type { LostTokenReason } from './lost-token-check.js';

/** Histogram buckets for token endpoint latency, in seconds. */
export const TOKEN_ENDPOINT_LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The gauge of seconds until each client's stored token expires (see token-expiry-gauge.ts). */
export const TOKEN_SECONDS_UNTIL_EXPIRY = 'token_seconds_until_expiry';

/** The gauge of seconds each client's stored token is past its renewal point (see token-expiry-gauge.ts). */
export const TOKEN_RENEWAL_OVERDUE_SECONDS = 'token_renewal_overdue_seconds';

/** The gauge of each running client's workflow state (see client-state-gauge.ts). */
export const TOKEN_CLIENT_STATE = 'token_client_state';

/**
 * Every metric family the project exports, by the name it has on `/metrics` (counters get
 * `_total` from `countersTotalSuffix`; histograms also expose `_bucket`, `_sum` and `_count`).
 * Keep it in step with the meters created here, in the activities and in the workflow: the
 * Grafana dashboard's test refuses queries for any `token_*` name missing from this list.
 */
export const PROJECT_METRIC_NAMES = {
  counters: [
    'token_requests_total',
    'token_forced_refreshes_total',
    'token_rejected_logins_total',
    'token_login_budget_waits_total',
    'token_refresh_requests_refused_total',
    'token_lost_tokens_rewritten_total',
  ],
  histograms: ['token_endpoint_latency_seconds'],
  gauges: [TOKEN_SECONDS_UNTIL_EXPIRY, TOKEN_RENEWAL_OVERDUE_SECONDS, TOKEN_CLIENT_STATE, 'token_breaker_open'],
} as const;

/**
 * The Temporal SDK's worker metrics that the Grafana dashboard charts, as the SDK names them on
 * `/metrics` (no unit suffix; durations in milliseconds). The metrics integration test checks that
 * the worker really exports each one.
 */
export const TEMPORAL_WORKER_METRIC_NAMES = {
  counters: [],
  histograms: ['temporal_activity_schedule_to_start_latency', 'temporal_workflow_task_schedule_to_start_latency'],
  gauges: ['temporal_worker_task_slots_available', 'temporal_worker_task_slots_used', 'temporal_num_pollers'],
} as const;

export interface TokenMetrics {
  /** One token request finished with `outcome` after `seconds`. */
  recordTokenRequest(clientId: string, outcome: FailureKind | 'issued', seconds: number): void;
  /**
   * This worker saw the shared breaker of `endpoint` (the token URL's origin and path) open or
   * close: gauge `token_breaker_open{endpoint}`, 1 while open.
   */
  recordBreakerState(endpoint: string, open: boolean): void;
  /** A login was rejected at `host`: `token_rejected_logins_total{host}` (docs/design.md, "The failed-login budget"). */
  recordRejectedLogin(host: string): void;
  /** Unproven credentials were held back at `host`: `token_login_budget_waits_total{host,reason}`. */
  recordLoginBudgetWait(host: string, reason: 'exhausted' | 'busy'): void;
  /**
   * A refresh-requests stream entry was refused for want of a valid origin proof:
   * `token_refresh_requests_refused_total{reason}` (docs/design.md, "The forced-refresh path"). No
   * `client_id` tag: the entry's author chose that name, and could make the tags unbounded.
   */
  recordRefusedRefreshRequest(reason: RefusedRefreshRequestReason): void;
  /**
   * The lost-token check asked `count` workflows for a new token because Redis lost theirs:
   * `token_lost_tokens_rewritten_total{reason}`, `missing` (no key) or `behind` (an older
   * generation than the workflow's; docs/design.md, "Tokens Redis lost").
   */
  recordLostTokensRewritten(reason: LostTokenReason, count: number): void;
}

export function createTokenMetrics(meter: MetricMeter): TokenMetrics {
  const requests = meter.createCounter('token_requests', 'requests', 'Token requests sent to the IAM, by client and outcome');
  const latency = meter.createHistogram('token_endpoint_latency_seconds', 'float', 's', 'Time from sending a token request to its outcome');
  const breakerOpen = meter.createGauge(
    'token_breaker_open',
    'int',
    '',
    'Whether the shared breaker of a token endpoint holds every client back (1) or not (0)',
  );
  const rejectedLogins = meter.createCounter(
    'token_rejected_logins',
    'logins',
    'Logins the IAM rejected, by host: what its failed-login block counts',
  );
  const budgetWaits = meter.createCounter(
    'token_login_budget_waits',
    'requests',
    'Unproven credentials held back by the failed-login budget, by host and why (exhausted: too many rejections; busy: another unproven request in flight)',
  );
  const refusedRefreshRequests = meter.createCounter(
    'token_refresh_requests_refused',
    'requests',
    'Refresh-requests stream entries refused without a signal, by why: no proof, a proof not made with the client token, or no stored token to check it against',
  );
  const lostTokensRewritten = meter.createCounter(
    'token_lost_tokens_rewritten',
    'tokens',
    'Tokens Redis lost that the workers asked their workflows for again, by why: missing (no key) or behind (an older generation than the workflow knows)',
  );
  return {
    recordLostTokensRewritten(reason, count) {
      if (count > 0) lostTokensRewritten.withTags({ reason }).add(count);
    },
    recordRefusedRefreshRequest(reason) {
      refusedRefreshRequests.withTags({ reason }).add(1);
    },
    recordRejectedLogin(host) {
      rejectedLogins.withTags({ host }).add(1);
    },
    recordLoginBudgetWait(host, reason) {
      budgetWaits.withTags({ host, reason }).add(1);
    },
    recordBreakerState(endpoint, open) {
      breakerOpen.set(open ? 1 : 0, { endpoint });
    },
    recordTokenRequest(clientId, outcome, seconds) {
      requests.withTags({ client_id: clientId, outcome }).add(1);
      latency.withTags({ outcome }).record(seconds);
    },
  };
}
