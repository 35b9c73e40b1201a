/**
 * The two Temporal workers of a worker process: one for the workflows (and their Redis-only
 * activities) on the workflow task queue, one for the IAM activity on `<queue>-iam`, whose
 * server-side rate limit caps token requests across the whole fleet (invariant 5).
 */
import { Worker, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import type { TokenStore } from '../activities/token-store.js';
import { iamTaskQueueFor } from '../workflows/messages.js';
import type { TokenMetrics } from './metrics.js';
import { bundleOptions } from './workflow-bundle.js';

export interface TokenWorkersOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  store: TokenStore;
  /** Token requests per second for the whole fleet (Temporal's task-queue rate limit). */
  iamMaxRps: number;
  /** Prebuilt workflow code; without it the workflow sources are bundled at start (slow). */
  workflowBundle?: WorkflowBundleOption | null;
  metrics?: TokenMetrics;
  env?: NodeJS.ProcessEnv;
}

export interface TokenWorkers {
  /** Resolves when both workers have shut down (after {@link TokenWorkers.shutdown} or a signal). */
  run(): Promise<void>;
  shutdown(): void;
}

export async function createTokenWorkers(options: TokenWorkersOptions): Promise<TokenWorkers> {
  const { connection, namespace, taskQueue, store, metrics } = options;
  const activities = createActivities({
    store,
    ...(options.env !== undefined && { env: options.env }),
    ...(metrics !== undefined && { onOutcome: (clientId, outcome, seconds) => metrics.recordTokenRequest(clientId, outcome, seconds) }),
  });
  const { workflowsPath, ...bundlerOptions } = bundleOptions();
  const workflowCode = options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath, bundlerOptions };

  const workflowWorker = await Worker.create({
    connection,
    namespace,
    taskQueue,
    ...workflowCode,
    activities: { readStoredGeneration: activities.readStoredGeneration, purgeToken: activities.purgeToken },
  });
  const iamWorker = await Worker.create({
    connection,
    namespace,
    taskQueue: iamTaskQueueFor(taskQueue),
    activities: { acquireToken: activities.acquireToken },
    maxTaskQueueActivitiesPerSecond: options.iamMaxRps,
  });
  return {
    async run() {
      await Promise.all([workflowWorker.run(), iamWorker.run()]);
    },
    shutdown() {
      for (const worker of [workflowWorker, iamWorker]) {
        if (worker.getState() === 'RUNNING') worker.shutdown();
      }
    },
  };
}
