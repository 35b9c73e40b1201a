/**
 * The container's health check (`node dist/worker/healthcheck.js`, Dockerfile `HEALTHCHECK`):
 * healthy when the worker's `/metrics` answers and shows its Temporal workers' task slots, which
 * the SDK reports only once the workers exist, i.e. after the worker connected to Temporal,
 * registered its search attributes and created its workers. Exit 0 healthy, 1 unhealthy.
 *
 * With `METRICS_PORT=0` (metrics off) there is nothing to ask: it reports healthy and says so,
 * and the orchestrator falls back to watching the process.
 */
import { readSettings } from '../shared/settings.js';
import { metricsLocalUrl } from './metrics-address.js';

/** A metric every running Temporal worker exports (see worker/metrics.ts, TEMPORAL_WORKER_METRIC_NAMES). */
const WORKER_READY_METRIC = 'temporal_worker_task_slots_available';
const TIMEOUT_MS = 3_000;

/** Why the worker is not healthy, or null when it is. */
export async function checkWorkerHealth(metricsPort: number, metricsHost = '127.0.0.1'): Promise<string | null> {
  const url = metricsLocalUrl(metricsHost, metricsPort);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!response.ok) return `${url} answered ${response.status}`;
    const body = await response.text();
    return body.includes(WORKER_READY_METRIC)
      ? null
      : `${url} does not show ${WORKER_READY_METRIC} yet: the Temporal workers are not running`;
  } catch (error) {
    return `${url} did not answer: ${(error as Error).message}`;
  }
}

async function main(): Promise<number> {
  const { METRICS_PORT, METRICS_HOST } = readSettings();
  if (METRICS_PORT === 0) {
    console.log('METRICS_PORT=0: metrics are off, so there is no endpoint to check');
    return 0;
  }
  const problem = await checkWorkerHealth(METRICS_PORT, METRICS_HOST);
  console.log(problem ?? 'healthy');
  return problem === null ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
