/**
 * Everything one integration test file needs around the shared Temporal dev server: its own
 * `redis-server`, workers on a task queue of its own (so files do not see each other's
 * workflows), an admin API and a Redis client. `stop()` terminates the file's workflows.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import { LoginProofKey } from '../../activities/login-budget.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { TokenStore } from '../../shared/token-store.js';
import { TokenAdmin } from '../../client/admin.js';
import { createTokenWorkers, type TokenWorkers, type TokenWorkersOptions } from '../../worker/token-workers.js';
import { startRedisServer, type RedisServer } from './redis-server.js';
import { terminateRunning } from './terminate-running.js';

export interface TokenStack {
  admin: TokenAdmin;
  client: Client;
  redis: Redis;
  store: TokenStore;
  redisServer: RedisServer;
  taskQueue: string;
  /** Stops the workers (e.g. to simulate a crash) and starts new ones on the same queue. */
  restartWorkers(): Promise<void>;
  stopWorkers(): Promise<void>;
  startWorkers(): Promise<void>;
  stop(): Promise<void>;
}

export interface TokenStackOptions {
  /** The worker's environment, where secret references are resolved. */
  env?: Record<string, string>;
  /** @default 40 */
  iamMaxRps?: number;
  /** Another Temporal server (e.g. one with lowered limits). @default the shared dev server */
  temporalAddress?: string;
  /** Settings of the refresh-requests stream reader (e.g. a short `claimMinIdleMs`). @default {} */
  refreshRequests?: TokenWorkersOptions['refreshRequests'];
  /** The failed-login budget. @default { maxRejections: 100 } */
  loginBudget?: TokenWorkersOptions['loginBudget'];
  /** `LOGIN_PROOF_KEY`, for a file that runs a worker process beside these workers. @default a random key per start */
  loginProofKey?: string;
}

let runtimeInstalled = false;

export async function startTokenStack(options: TokenStackOptions = {}): Promise<TokenStack> {
  if (!runtimeInstalled) {
    // Worker state changes at INFO would drown the test report.
    Runtime.install({ logger: new DefaultLogger('WARN') });
    runtimeInstalled = true;
  }
  const address = options.temporalAddress ?? inject('temporalAddress');
  const redisServer = await startRedisServer();
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  const workerRedis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  const store = new TokenStore(redis);
  const taskQueue = `test-${randomUUID()}`;
  const workerConnection = await NativeConnection.connect({ address });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const admin = new TokenAdmin(client, { taskQueue });

  let workers: TokenWorkers | null = null;
  let running: Promise<void> | null = null;
  const startWorkers = async () => {
    workers = await createTokenWorkers({
      connection: workerConnection,
      namespace: 'default',
      taskQueue,
      store: new TokenStore(workerRedis),
      iamMaxRps: options.iamMaxRps ?? 40,
      workflowBundle: { codePath: inject('workflowBundlePath') },
      env: options.env ?? {},
      // The failed-login budget has tests of its own (login-budget*.test.ts); elsewhere a file's
      // wrong secrets must not hold back the new clients of its own emulator for a minute.
      loginBudget: options.loginBudget ?? { maxRejections: 100 },
      ...(options.refreshRequests !== undefined && { refreshRequests: options.refreshRequests }),
      ...(options.loginProofKey !== undefined && { loginProofKey: new LoginProofKey(options.loginProofKey) }),
    });
    running = workers.run();
  };
  const stopWorkers = async () => {
    workers?.shutdown();
    await running;
    workers = null;
    running = null;
  };
  await startWorkers();

  return {
    admin,
    client,
    redis,
    store,
    redisServer,
    taskQueue,
    startWorkers,
    stopWorkers,
    async restartWorkers() {
      await stopWorkers();
      await startWorkers();
    },
    async stop() {
      await terminateRunning(client, taskQueue, 'test finished');
      await stopWorkers();
      await connection.close();
      await workerConnection.close();
      redis.disconnect();
      workerRedis.disconnect();
      await redisServer.stop();
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The client's token hash in the stack's Redis once its generation is above `generation`. */
export async function tokenAfterGeneration(
  stack: TokenStack,
  clientId: string,
  generation: number,
  timeoutMs = 60_000,
): Promise<Record<string, string>> {
  return eventually(
    async () => {
      const hash = await stack.redis.hgetall(tokenKey('oauth:', clientId));
      return Number(hash.generation ?? 0) > generation ? hash : undefined;
    },
    timeoutMs,
    `${clientId} generation > ${generation}`,
  );
}
