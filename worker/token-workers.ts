/**
 * The two Temporal workers of a worker process: one for the workflows (their Redis-only activities,
 * and the renewals they run as local activities) on the workflow task queue, one for the IAM
 * activity on `<queue>-iam`, whose server-side rate limit paces the other token requests across the
 * whole fleet (docs/design.md, "The IAM is never hammered").
 */
import { Client } from '@temporalio/client';
import { Runtime, Worker, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { createActivities } from '../activities/index.js';
import { LoginBudget, LoginProofKey, type LoginBudgetOptions } from '../activities/login-budget.js';
import type { TokenStore } from '../shared/token-store.js';
import { duplicateConnection } from '../shared/redis-connection.js';
import { iamTaskQueueFor } from '../workflows/messages.js';
import type { TokenMetrics } from './metrics.js';
import { endpointRecoveryWaker } from './endpoint-recovery.js';
import { createRefreshRequestConsumer, type RefreshRequestConsumerOptions } from './refresh-request-consumer.js';
import type { WorkerTracing } from './tracing.js';
import { bundleOptions } from './workflow-bundle.js';

export interface TokenWorkersOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  store: TokenStore;
  /**
   * Token requests per second for the whole fleet: Temporal's task-queue rate limit, and the cap
   * of each IAM host's one-second window in Redis.
   */
  iamMaxRps: number;
  /** `MAX_CACHED_WORKFLOWS`: the workflow worker's sticky cache. @default {@link DEFAULT_MAX_CACHED_WORKFLOWS} */
  maxCachedWorkflows?: number;
  /** Prebuilt workflow code; without it the workflow sources are bundled at start (slow). */
  workflowBundle?: WorkflowBundleOption | null;
  metrics?: TokenMetrics;
  /**
   * The key of the proofs of accepted credentials (`LOGIN_PROOF_KEY`), the same on every worker.
   * @default a random key of this process: proofs then neither outlive it nor are shared with other
   *   workers, so credentials are unproven again after a restart (docs/design.md, "The failed-login budget")
   */
  loginProofKey?: LoginProofKey;
  /** The failed-login budget per IAM host. @default 2 rejected logins per 60 s */
  loginBudget?: Pick<LoginBudgetOptions, 'maxRejections' | 'windowMs'>;
  env?: NodeJS.ProcessEnv;
  /**
   * The reader of the `<prefix>refresh-requests` stream (on a connection of its own, duplicated
   * from the store's), with optional settings; `false` leaves the stream to other workers.
   * @default {}
   */
  refreshRequests?: false | Pick<RefreshRequestConsumerOptions, 'consumerName' | 'blockMs' | 'batchSize' | 'claimMinIdleMs' | 'retry'>;
  /**
   * The tracing a worker with `OTEL_*` settings started (worker/tracing.ts): its interceptors and
   * workflow-span sink are installed, and a prebuilt `workflowBundle` must be the traced one.
   * @default none: no interceptor, no sink
   */
  tracing?: WorkerTracing;
}

export interface TokenWorkers {
  /** Resolves when both workers have shut down (after {@link TokenWorkers.shutdown} or a signal). */
  run(): Promise<void>;
  shutdown(): void;
}

/**
 * How long a workflow's next task waits on the sticky queue of the worker that ran its last task
 * before the server hands it to the shared queue (docs/deployment.md, "After a crash"). After a
 * kill -9 nobody polls that sticky queue, so this is how long a due timer can wait beyond the
 * moment a live worker polls. The SDK's 10 s would let a short-lived token lapse before its
 * renewal (a 20 s token is renewed 3 s before it expires); a task that misses it is replayed
 * from its history by whichever worker takes it (docs/deployment.md, "Sizing a worker": under load
 * it is not missed).
 */
export const STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT_MS = 1_000;

/**
 * How long a shutdown (SIGTERM, SIGINT) may wait for the workers to drain before they give up and
 * the process exits (docs/deployment.md, "The image"). The SDK waits without bound by default, and
 * a worker whose Temporal server is gone (stopped with it, as Ctrl-C stops the demo's whole process
 * group) would never exit. Under the 30 s grace an orchestrator gives before SIGKILL, and far over
 * what a token request takes; what it abandons is retried by the server as after a kill -9.
 */
export const SHUTDOWN_FORCE_TIME_MS = 20_000;

/**
 * How long whoever stops a worker process (the demo, the tests) waits after SIGTERM before
 * SIGKILL: a little over {@link SHUTDOWN_FORCE_TIME_MS}, so that only a stuck worker is killed.
 */
export const WORKER_STOP_GRACE_MS = SHUTDOWN_FORCE_TIME_MS + 5_000;

/**
 * The workflow cache by default (`MAX_CACHED_WORKFLOWS`), chosen by the curve of RSS against CPU
 * per renewal (docs/deployment.md, "The cache: every client or none"), not by the heap as the
 * SDK's is. Renewals come round each client in turn, so a cache smaller than the client count keeps
 * almost none warm when it renews: it costs memory and saves no replay. This one holds every client
 * of a worker of up to 2000, which then stays under 1 GiB of RSS.
 */
export const DEFAULT_MAX_CACHED_WORKFLOWS = 2_000;

/** The SDK's default of `maxConcurrentWorkflowTaskExecutions`. */
const DEFAULT_WORKFLOW_TASK_SLOTS = 40;

export async function createTokenWorkers(options: TokenWorkersOptions): Promise<TokenWorkers> {
  const { connection, namespace, taskQueue, store, metrics, maxCachedWorkflows = DEFAULT_MAX_CACHED_WORKFLOWS } = options;
  const { tracing } = options;
  const client = new Client({
    connection,
    namespace,
    ...(tracing !== undefined && { interceptors: { workflow: tracing.clientInterceptors } }),
  });
  const activities = createActivities({
    store,
    iamMaxRps: options.iamMaxRps,
    ...(options.env !== undefined && { env: options.env }),
    ...(metrics !== undefined && { onOutcome: (clientId, outcome, seconds) => metrics.recordTokenRequest(clientId, outcome, seconds) }),
    ...(metrics !== undefined && { onBreakerChange: (endpoint, open) => metrics.recordBreakerState(endpoint, open) }),
    ...(metrics !== undefined && { onRejectedLogin: (host) => metrics.recordRejectedLogin(host) }),
    ...(metrics !== undefined && { onLoginBudgetWait: (host, reason) => metrics.recordLoginBudgetWait(host, reason) }),
    loginProofKey: options.loginProofKey ?? new LoginProofKey(randomBytes(32).toString('hex')),
    loginBudget: new LoginBudget(store.redis, { prefix: store.prefix, ...options.loginBudget }),
    onEndpointRecovered: endpointRecoveryWaker(client, Runtime.instance().logger),
  });
  const { workflowsPath, workflowInterceptorModules, ...bundlerOptions } = bundleOptions({ traced: tracing !== undefined });
  const workflowCode = options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath, bundlerOptions };
  const interceptors =
    tracing === undefined
      ? {}
      : {
          interceptors: {
            ...tracing.workerInterceptors,
            ...(!options.workflowBundle && workflowInterceptorModules !== undefined && { workflowModules: workflowInterceptorModules }),
          },
        };

  const workflowWorker = await Worker.create({
    connection,
    namespace,
    taskQueue,
    ...workflowCode,
    // acquireToken runs here as a local activity (docs/design.md, "Local renewals"); it is never
    // scheduled on this queue, so this worker takes no queued token request.
    activities: { purgeToken: activities.purgeToken, acquireToken: activities.acquireToken },
    ...interceptors,
    ...(tracing !== undefined && { sinks: tracing.sinks }),
    stickyQueueScheduleToStartTimeout: STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT_MS,
    shutdownForceTime: SHUTDOWN_FORCE_TIME_MS,
    maxCachedWorkflows,
    // The SDK runs no more workflow tasks at once than it can cache (and warns when asked to).
    ...(maxCachedWorkflows > 0 && {
      maxConcurrentWorkflowTaskExecutions: Math.min(DEFAULT_WORKFLOW_TASK_SLOTS, maxCachedWorkflows),
    }),
  });
  const iamWorker = await Worker.create({
    connection,
    namespace,
    taskQueue: iamTaskQueueFor(taskQueue),
    activities: { acquireToken: activities.acquireToken },
    ...(tracing !== undefined && { interceptors: tracing.workerInterceptors }),
    maxTaskQueueActivitiesPerSecond: options.iamMaxRps,
    shutdownForceTime: SHUTDOWN_FORCE_TIME_MS,
  });
  const refreshRequests =
    options.refreshRequests === false
      ? null
      : createRefreshRequestConsumer({
          ...options.refreshRequests,
          redis: duplicateConnection(store.redis),
          client,
          prefix: store.prefix,
          logger: Runtime.instance().logger,
          ...(metrics !== undefined && { onRefused: (reason) => metrics.recordRefusedRefreshRequest(reason) }),
        });
  return {
    async run() {
      const consuming = refreshRequests?.run();
      try {
        await Promise.all([workflowWorker.run(), iamWorker.run()]);
      } finally {
        // However the workers ended (shutdown, SIGTERM), stop reading requests with them.
        await refreshRequests?.stop();
        await consuming;
      }
    },
    shutdown() {
      for (const worker of [workflowWorker, iamWorker]) {
        if (worker.getState() === 'RUNNING') worker.shutdown();
      }
    },
  };
}
