/**
 * The real stack for the Go and Python consumer libraries' tests (`make test-consumers`): a
 * Temporal dev server, a `redis-server`, the IAM emulator with its resource API, and the worker
 * as a separate process (worker/main.ts, as in production), all on free loopback ports, plus a
 * control API (see consumer-stack-control.ts) through which the tests register clients, revoke
 * tokens and read what the emulator and the workflows saw.
 *
 * Everything the tests need reaches them through environment variables ({@link ConsumerStack.env}).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { aclPasswordHash, aclSetUserArguments, consumerAclRules } from '../../cli/redis-acl.js';
import { DEFAULT_KEY_PREFIX } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { ADMIN_PATH, RESOURCE_PATH, startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { startTemporalDevServer, type TemporalDevServer } from '../../dev/temporal-dev-server.js';
import { bundleOptions } from '../../worker/workflow-bundle.js';
import { startControlServer, type ControlServer } from './consumer-stack-control.js';
import { startRedisServer, type RedisServer } from './redis-server.js';
import { startWorkerProcess, type WorkerProcess } from './worker-process.js';
import { terminateRunning } from './terminate-running.js';

/** The variables a consumer test reads; each is set by {@link startConsumerStack}. */
export interface ConsumerStackEnv {
  /** `redis://127.0.0.1:<port>`: the Redis the worker writes to. */
  TOKEN_STACK_REDIS_URL: string;
  /**
   * The same Redis as a consumer user made by `tokenctl grant … --clients <the stack's clients>
   * --refresh`: it reads the tokens of the clients `POST /clients` hands out, and no other key.
   */
  TOKEN_STACK_CONSUMER_REDIS_URL: string;
  /** `TOKEN_KEY_PREFIX` of the worker. */
  TOKEN_STACK_PREFIX: string;
  /** The emulator's resource API: 200 to an active token, 401 `invalid_token` to a revoked or expired one. */
  TOKEN_STACK_RESOURCE_URL: string;
  /** A route of the resource API that needs scope `admin`: 403 `insufficient_scope` to the stack's clients. */
  TOKEN_STACK_ADMIN_RESOURCE_URL: string;
  /** The control API (consumer-stack-control.ts). */
  TOKEN_STACK_CONTROL_URL: string;
  [name: string]: string;
}

export interface ConsumerStack {
  readonly env: ConsumerStackEnv;
  /** What the worker process wrote, for a failing test's report. */
  workerOutput(): string;
  /** Stops everything it started, in reverse order; never throws. Idempotent. */
  stop(): Promise<void>;
}

/** Clients the emulator knows; the control API hands them out one per registration. */
const CLIENT_POOL_SIZE = 60;
const SECRET = `consumer-stack-${randomUUID()}`;
/** The consumer user of {@link ConsumerStackEnv.TOKEN_STACK_CONSUMER_REDIS_URL}. */
const CONSUMER_USER = 'stack-consumer';
const CONSUMER_PASSWORD = `consumer-${randomUUID()}`;
/** Long enough that no scheduled renewal happens during a test: every new token is a forced one. */
const TOKEN_LIFETIME_SECONDS = 300;

export async function startConsumerStack(): Promise<ConsumerStack> {
  const stops: Array<() => Promise<void> | void> = [];
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      for (const stopOne of stops.reverse()) await Promise.resolve(stopOne()).catch(() => undefined);
    })());

  try {
    const dir = await mkdtemp(join(tmpdir(), 'consumer-stack-'));
    stops.push(() => rm(dir, { recursive: true, force: true }));
    const workflowBundlePath = join(dir, 'workflow-bundle.js');
    const [temporal, redisServer, iam] = await Promise.all([
      startTemporalDevServer({ uiPort: false, logFile: join(dir, 'temporal.log') }).then(
        remember(stops, (server: TemporalDevServer) => server.stop()),
      ),
      startRedisServer().then(remember(stops, (server: RedisServer) => server.stop())),
      startIamEmulator({
        tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
        clients: Array.from({ length: CLIENT_POOL_SIZE }, (_, index) => ({ clientId: `consumer-${index + 1}`, clientSecret: SECRET })),
      }).then(remember(stops, (emulator: IamEmulator) => emulator.close())),
      bundleWorkflowCode({ ...bundleOptions(), logger: silentLogger }).then((bundle) => writeFile(workflowBundlePath, bundle.code)),
    ]);

    const taskQueue = `consumers-${randomUUID()}`;
    const worker: WorkerProcess = await startWorkerProcess({
      temporalAddress: temporal.address,
      taskQueue,
      redisUrl: redisServer.url,
      workflowBundlePath,
      env: { CONSUMER_STACK_SECRET: SECRET, LOG_LEVEL: 'WARN' },
      // A first start on a busy two-core machine, beside a compiling Go toolchain.
      readyTimeoutMs: 120_000,
    });
    stops.push(() => worker.kill9());

    const connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection });
    stops.push(async () => {
      await terminateRunning(client, taskQueue, 'consumer tests finished');
      await connection.close();
    });
    const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    stops.push(() => redis.disconnect());
    const clientPool = Array.from({ length: CLIENT_POOL_SIZE }, (_, index) => `consumer-${index + 1}`);
    // The rules `tokenctl grant` applies (cli/redis-acl.ts), for the libraries' tests as a granted user.
    const rules = consumerAclRules({ clientIds: clientPool, refresh: true, prefix: DEFAULT_KEY_PREFIX });
    await redis.call('ACL', 'SETUSER', ...aclSetUserArguments(CONSUMER_USER, aclPasswordHash(CONSUMER_PASSWORD), rules));

    const control: ControlServer = await startControlServer({
      iam,
      client,
      admin: new TokenAdmin(client, { taskQueue }),
      redis,
      prefix: DEFAULT_KEY_PREFIX,
      clientPool,
      secretRef: 'env:CONSUMER_STACK_SECRET',
    });
    stops.push(() => control.close());

    return {
      env: {
        TOKEN_STACK_REDIS_URL: redisServer.url,
        TOKEN_STACK_CONSUMER_REDIS_URL: redisServer.url.replace('redis://', `redis://${CONSUMER_USER}:${CONSUMER_PASSWORD}@`),
        TOKEN_STACK_PREFIX: DEFAULT_KEY_PREFIX,
        TOKEN_STACK_RESOURCE_URL: `${iam.url}${RESOURCE_PATH}`,
        TOKEN_STACK_ADMIN_RESOURCE_URL: `${iam.url}${ADMIN_PATH}`,
        TOKEN_STACK_CONTROL_URL: control.url,
      },
      workerOutput: () => worker.output(),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Registers how to stop what a start resolved with, as soon as it has (so a failed sibling start still stops it). */
function remember<T>(stops: Array<() => Promise<void> | void>, stopIt: (started: T) => Promise<void> | void): (started: T) => T {
  return (started) => {
    stops.push(() => stopIt(started));
    return started;
  };
}

const ignore = () => undefined;
const silentLogger = { log: ignore, trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };
