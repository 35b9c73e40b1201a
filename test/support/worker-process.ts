/**
 * The real worker (`worker/main.ts`, compiled from the current sources) as a separate OS
 * process, for tests that crash it with SIGKILL: nothing in the test process survives with it, so
 * what resumes the work is Temporal's durable state and a fresh worker, exactly as in production.
 *
 * ```ts
 * const worker = await startWorkerProcess({ temporalAddress, taskQueue, redisUrl, env: { MY_SECRET } });
 * console.log(worker.startMs); // spawn → polling both task queues
 * await worker.kill9();
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { build } from 'esbuild';
import { exitDescription, hasExited, stopChild } from '../../dev/child-process.js';
import { WORKER_STOP_GRACE_MS } from '../../worker/token-workers.js';
import { iamTaskQueueFor } from '../../workflows/messages.js';

const ROOT = join(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'worker', 'main.ts');
const { TaskQueueType } = proto.temporal.api.enums.v1;

/** Options of {@link startWorkerProcess}. */
export interface WorkerProcessOptions {
  /** `TEMPORAL_ADDRESS` */
  temporalAddress: string;
  /** `TEMPORAL_TASK_QUEUE`: unique per test, so no other worker takes its tasks. */
  taskQueue: string;
  /** `REDIS_URL` */
  redisUrl: string;
  /** `WORKFLOW_BUNDLE_PATH`: a prebuilt bundle, so the process does not bundle at start. */
  workflowBundlePath: string;
  /** More environment, e.g. the variables that `env:` secret references name. @default {} */
  env?: Record<string, string>;
  /** @default 'default' */
  namespace?: string;
  /** How long the process may take to poll both task queues. @default 60_000 */
  readyTimeoutMs?: number;
  /** The script to run, e.g. the build's `dist/worker/main.js` (`npm start`). @default the sources, compiled by {@link compileWorkerMain} */
  script?: string;
}

/** A running worker process. */
export interface WorkerProcess {
  readonly pid: number;
  /** Milliseconds from spawn until the process polled both of its task queues. */
  readonly startMs: number;
  /** Everything the process wrote to stdout and stderr so far (its log). */
  output(): string;
  /** Kills it with SIGKILL (a crash: no graceful shutdown) and waits until it is gone. Idempotent. */
  kill9(): Promise<void>;
  /**
   * Sends SIGTERM (a graceful shutdown, as `docker stop` does), SIGKILL if it has not exited after
   * `WORKER_STOP_GRACE_MS`, and resolves with how it exited: `code 0`, `SIGKILL`, …
   */
  stop(): Promise<string>;
  /** Whether it exited, by itself or killed. */
  hasExited(): boolean;
}

/** Processes started here and not seen exiting: killed if the test process exits first. */
const running = new Set<ChildProcess>();
let compiledMain: Promise<string> | undefined;
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  rmSync(compiledMainPath(), { force: true });
});

/**
 * `worker/main.ts` and the project files it imports, compiled once per test process into one
 * JavaScript file (packages stay imports of node_modules). A crashed worker must be replaced
 * fast: it starts in about half the time `node --import tsx` takes, which transpiles at start.
 */
export function compileWorkerMain(): Promise<string> {
  compiledMain ??= build({
    entryPoints: [MAIN],
    outfile: compiledMainPath(),
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node24',
    sourcemap: 'inline',
    logLevel: 'silent',
  }).then(() => compiledMainPath());
  return compiledMain;
}

/** In the checkout (ignored by git), so the compiled file resolves the project's node_modules. */
function compiledMainPath(): string {
  return join(ROOT, '.cache', 'worker-process', `main-${process.pid}.mjs`);
}

/**
 * Spawns the worker (node itself, not `npx`, so SIGKILL reaches the worker and not a wrapper)
 * from the sources compiled by {@link compileWorkerMain}, and resolves once the Temporal server
 * lists it as a poller of its workflow and IAM task queues, identified by the SDK's default
 * identity `<pid>@<hostname>`. `startMs` does not count the one-off compilation.
 */
export async function startWorkerProcess(options: WorkerProcessOptions): Promise<WorkerProcess> {
  const main = options.script ?? (await compileWorkerMain());
  const startedAt = Date.now();
  const namespace = options.namespace ?? 'default';
  const child = spawn(process.execPath, [main], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      TEMPORAL_ADDRESS: options.temporalAddress,
      TEMPORAL_NAMESPACE: namespace,
      TEMPORAL_TASK_QUEUE: options.taskQueue,
      REDIS_URL: options.redisUrl,
      METRICS_PORT: '0',
      LOG_LEVEL: 'INFO',
      WORKFLOW_BUNDLE_PATH: options.workflowBundlePath,
      // The failed-login budget has tests of its own (login-budget*.test.ts); elsewhere a file's
      // wrong secrets must not hold back the new clients of its own emulator for a minute.
      LOGIN_BUDGET_MAX_REJECTIONS: '100',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const kill9 = async () => {
    await stopChild(child, { signal: 'SIGKILL' });
  };

  const identity = `${child.pid}@${hostname()}`;
  const connection = await Connection.connect({ address: options.temporalAddress });
  try {
    const deadline = startedAt + (options.readyTimeoutMs ?? 60_000);
    for (;;) {
      if (hasExited(child)) throw new Error(`Worker process exited during start (${exitDescription(child)}):\n${output}`);
      const polling = await Promise.all([
        isPolling(connection, namespace, options.taskQueue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, identity),
        isPolling(connection, namespace, iamTaskQueueFor(options.taskQueue), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, identity),
      ]);
      if (polling.every(Boolean)) break;
      if (Date.now() > deadline) {
        await kill9();
        throw new Error(`Worker process did not poll ${options.taskQueue} within ${options.readyTimeoutMs ?? 60_000} ms:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  } finally {
    await connection.close();
  }

  return {
    pid: child.pid!,
    startMs: Date.now() - startedAt,
    output: () => output,
    kill9,
    stop: () => stopChild(child, { graceMs: WORKER_STOP_GRACE_MS }),
    hasExited: () => hasExited(child),
  };
}

async function isPolling(
  connection: Connection,
  namespace: string,
  name: string,
  taskQueueType: proto.temporal.api.enums.v1.TaskQueueType,
  identity: string,
): Promise<boolean> {
  try {
    const { pollers } = await connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name }, taskQueueType });
    return pollers.some((poller) => poller.identity === identity);
  } catch {
    // The server may be restarting; the caller's deadline decides.
    return false;
  }
}
