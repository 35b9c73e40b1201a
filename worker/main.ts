/**
 * The worker process (`npm start`): reads its settings from the environment, registers the
 * search attributes if missing, runs the workflow and IAM workers, exports Prometheus metrics,
 * and shuts down gracefully on SIGTERM or SIGINT (Temporal's runtime handles both signals).
 */
import { Client } from '@temporalio/client';
import type { Logger } from '@temporalio/common';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { TokenStore } from '../shared/token-store.js';
import { redactRedisUrl, watchConnection } from '../shared/redis-connection.js';
import { createRedisClientFromSettings, describeRedisConnectionError } from '../shared/redis-tls.js';
import { readSettings, type Settings } from '../shared/settings.js';
import { SettingsError } from '../shared/settings-error.js';
import { errorMessage } from '../shared/error-message.js';
import { LoginProofKey } from '../activities/login-budget.js';
import { resolveReference } from '../shared/references.js';
import { TemporalUnreachableError, temporalConnectionOptions } from '../shared/temporal-connection.js';
import { createClientStateGauge } from './client-state-gauge.js';
import { createWorkerLogger } from './logger.js';
import { startLostTokenCheck } from './lost-token-check.js';
import { createTokenMetrics, TOKEN_ENDPOINT_LATENCY_BUCKETS } from './metrics.js';
import { metricsListenAddress, metricsLocalUrl } from './metrics-address.js';
import { startRunningClients, visibilityLister } from './running-clients.js';
import { ensureSearchAttributes } from './search-attribute-registration.js';
import { startTokenExpiryGauge } from './token-expiry-gauge.js';
import { createTokenWorkers } from './token-workers.js';
import { readTracingSettings } from './tracing-settings.js';
import { prebuiltBundlePath } from './workflow-bundle.js';
import { capWorkflowThreadYoungGeneration } from './workflow-thread-heap.js';

async function main(): Promise<void> {
  const settings = readSettings();
  const tracingSettings = readTracingSettings();
  // Loaded only when tracing: a worker without OTEL_* settings loads no OpenTelemetry SDK.
  const tracing = tracingSettings === null ? undefined : (await import('./tracing.js')).startTracing(tracingSettings);
  // Before the SDK starts the workflow thread: the flag reaches isolates created after it.
  capWorkflowThreadYoungGeneration();
  Runtime.install({
    logger: createWorkerLogger({ level: settings.LOG_LEVEL, format: settings.LOG_FORMAT }),
    telemetryOptions: {
      metrics:
        settings.METRICS_PORT === 0
          ? undefined
          : {
              prometheus: {
                bindAddress: metricsListenAddress(settings.METRICS_HOST, settings.METRICS_PORT),
                countersTotalSuffix: true,
                histogramBucketOverrides: { token_endpoint_latency_seconds: TOKEN_ENDPOINT_LATENCY_BUCKETS },
              },
            },
    },
  });
  const log = Runtime.instance().logger;

  const connectionOptions = temporalConnectionOptions(settings);
  const connection = await NativeConnection.connect(connectionOptions).catch((err: unknown) => {
    throw new TemporalUnreachableError(settings.TEMPORAL_ADDRESS, err);
  });
  const added = await ensureSearchAttributes(connection, settings.TEMPORAL_NAMESPACE);
  if (added.length > 0) log.info('Registered search attributes', { namespace: settings.TEMPORAL_NAMESPACE, added });

  const redis = await createRedisClientFromSettings(settings, { maxRetriesPerRequest: 2 });
  // Token requests fail as store_unavailable meanwhile and back off; one line each way is enough.
  const redisUrl = redactRedisUrl(settings.REDIS_URL);
  watchConnection(redis, {
    down(error) {
      log.warn('Redis unreachable: the worker keeps reconnecting', {
        redis: redisUrl,
        error: describeRedisConnectionError(error, settings),
      });
    },
    restored() {
      log.info('Redis connection restored', { redis: redisUrl });
    },
  });
  const store = new TokenStore(redis, { prefix: settings.TOKEN_KEY_PREFIX });
  const workflowBundlePath = prebuiltBundlePath(settings.WORKFLOW_BUNDLE_PATH, { traced: tracing !== undefined });
  if (workflowBundlePath === null) log.warn('No prebuilt workflow bundle (npm run build): bundling the sources at start');

  const loginProofKey = await readLoginProofKey(settings, log);
  const metrics = createTokenMetrics(Runtime.instance().metricMeter);
  const workers = await createTokenWorkers({
    connection,
    namespace: settings.TEMPORAL_NAMESPACE,
    taskQueue: settings.TEMPORAL_TASK_QUEUE,
    store,
    iamMaxRps: settings.IAM_MAX_RPS,
    ...(settings.MAX_CACHED_WORKFLOWS !== undefined && { maxCachedWorkflows: settings.MAX_CACHED_WORKFLOWS }),
    workflowBundle: workflowBundlePath === null ? null : { codePath: workflowBundlePath },
    metrics,
    ...(loginProofKey !== undefined && { loginProofKey }),
    loginBudget: { maxRejections: settings.LOGIN_BUDGET_MAX_REJECTIONS, windowMs: settings.LOGIN_BUDGET_WINDOW_SECONDS * 1000 },
    ...(tracing !== undefined && { tracing }),
  });
  log.info('Worker started', {
    namespace: settings.TEMPORAL_NAMESPACE,
    taskQueue: settings.TEMPORAL_TASK_QUEUE,
    iamMaxRps: settings.IAM_MAX_RPS,
    metrics: settings.METRICS_PORT === 0 ? 'off' : metricsLocalUrl(settings.METRICS_HOST, settings.METRICS_PORT),
    tracing: tracingSettings === null ? 'off' : `${tracingSettings.serviceName}, ${tracingSettings.sampler}`,
  });
  const expiryGauge =
    settings.METRICS_PORT === 0
      ? null
      : await startTokenExpiryGauge({
          redis,
          prefix: settings.TOKEN_KEY_PREFIX,
          meter: Runtime.instance().metricMeter,
          onError: (error) => {
            log.warn('Token expiry gauge: Redis error', { error: error.message });
          },
        });
  const client = new Client({ connection, namespace: settings.TEMPORAL_NAMESPACE });
  // One worker of the fleet, the lease holder, lists the running workflows for both consumers
  // (docs/design.md, "One listing, by one worker").
  const runningClients = startRunningClients({
    list: visibilityLister(client, settings.TEMPORAL_TASK_QUEUE),
    redis,
    prefix: settings.TOKEN_KEY_PREFIX,
    taskQueue: settings.TEMPORAL_TASK_QUEUE,
    logger: log,
    onError: (error) => {
      log.warn('Listing the running workflows failed; the gauge keeps the last listing', { error: error.message });
    },
  });
  if (settings.METRICS_PORT !== 0) runningClients.subscribe(createClientStateGauge(Runtime.instance().metricMeter));
  const lostTokens = startLostTokenCheck({
    store,
    client,
    runningClients,
    logger: log,
    onRewritten: (reason, count) => metrics.recordLostTokensRewritten(reason, count),
  });
  try {
    await workers.run();
  } finally {
    await lostTokens.stop();
    // Releases the listing lease, so another worker lists at once.
    await runningClients.stop();
    expiryGauge?.stop();
    redis.disconnect();
    await connection.close();
    // The spans still buffered leave before the process does.
    await tracing?.shutdown();
  }
}

/**
 * `LOGIN_PROOF_KEY`, resolved like a client secret's reference. Without it each process makes up
 * its own key: fine for one worker, but with several (or after a restart) every credential counts
 * as unproven again until it is accepted once more, and unproven ones go one at a time per host.
 */
async function readLoginProofKey(settings: Settings, log: Logger): Promise<LoginProofKey | undefined> {
  if (settings.LOGIN_PROOF_KEY === undefined) {
    log.warn(
      'LOGIN_PROOF_KEY is not set: this worker keeps proofs of accepted credentials under a key of its own, so other workers and its next start see them as unproven (docs/deployment.md, "The failed-login budget")',
    );
    return undefined;
  }
  try {
    return new LoginProofKey((await resolveReference(settings.LOGIN_PROOF_KEY)).reveal());
  } catch (err) {
    throw new SettingsError([`LOGIN_PROOF_KEY: ${errorMessage(err)}`]);
  }
}

main().catch((err: unknown) => {
  // What the operator must fix, in one message; anything else with its stack.
  console.error(err instanceof SettingsError || err instanceof TemporalUnreachableError ? err.message : err);
  process.exit(1);
});
