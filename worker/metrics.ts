/**
 * The project's own metrics, exported by the Temporal runtime's Prometheus endpoint next to its
 * worker metrics (one `/metrics` for everything). Tags never carry a secret or a token.
 */
import type { MetricMeter } from '@temporalio/common';
import type { FailureKind } from '../workflows/registration.js';

/** Histogram buckets for token endpoint latency, in seconds. */
export const TOKEN_ENDPOINT_LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface TokenMetrics {
  /** One token request finished with `outcome` after `seconds`. */
  recordTokenRequest(clientId: string, outcome: FailureKind | 'issued', seconds: number): void;
}

export function createTokenMetrics(meter: MetricMeter): TokenMetrics {
  const requests = meter.createCounter('token_requests', 'requests', 'Token requests sent to the IAM, by client and outcome');
  const latency = meter.createHistogram('token_endpoint_latency_seconds', 'float', 's', 'Time from sending a token request to its outcome');
  return {
    recordTokenRequest(clientId, outcome, seconds) {
      requests.withTags({ client_id: clientId, outcome }).add(1);
      latency.withTags({ outcome }).record(seconds);
    },
  };
}
