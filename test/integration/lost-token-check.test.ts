/**
 * worker/lost-token-check.ts in the worker process: after a reconnection to Redis, a token key that
 * is missing, or that holds an older token than its workflow knows, is written again through a new
 * token request; a key that is as the workflow left it costs no token request. A worker's first
 * connection asks no workflow whose token is young (a fleet's start costs no query per client).
 * Of two workers, only the one holding the listing lease checks (worker/running-clients.ts); a
 * worker that stops releases it.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { generationsKey, listingLeaseKey, tokenKey } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { findFreePorts } from '../../dev/free-port.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const SECRET = 'lost-token-secret';
const MISSING = 'lost-missing';
const BEHIND = 'lost-behind';
const INTACT = 'lost-intact';
const CLIENT_IDS = [MISSING, BEHIND, INTACT];
const taskQueue = `lost-token-${randomUUID()}`;

let iam: IamEmulator;
let redisServer: RedisServer;
let redis: Redis;
/** Registers the clients, then stops: it held the listing lease and releases it. */
let worker: WorkerProcess;
/** Started once every token is stored: it takes the lease, and its first connection finds young tokens only. */
let laterWorker: WorkerProcess | undefined;
/** Started after `laterWorker`, in `worker`'s place: it does not hold the lease, so it checks nothing. */
let restartedWorker: WorkerProcess | undefined;
let connection: Connection;
let admin: TokenAdmin;
/** `METRICS_PORT` of `worker` and of `laterWorker`. */
let metricsPorts: number[];

beforeAll(async () => {
  iam = await startIamEmulator({ tokenLifetimeSeconds: 300, clients: CLIENT_IDS.map((clientId) => ({ clientId, clientSecret: SECRET })) });
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  metricsPorts = await findFreePorts(2);
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue,
    redisUrl: redisServer.url,
    workflowBundlePath: inject('workflowBundlePath'),
    env: { LOST_SECRET: SECRET, METRICS_PORT: String(metricsPorts[0]) },
  });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  admin = new TokenAdmin(new Client({ connection }), { taskQueue });
});

afterAll(async () => {
  if (connection) {
    for (const clientId of CLIENT_IDS)
      await new Client({ connection }).workflow
        .getHandle(workflowIdFor(clientId))
        .terminate('test finished')
        .catch(() => undefined);
    await connection.close();
  }
  await worker?.kill9();
  await laterWorker?.kill9();
  await restartedWorker?.kill9();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
});

/** A `Lost-token check done` line's counts. */
interface CheckLine {
  trigger: string;
  checked: number;
  queried: number;
  missing: number;
  behind: number;
}

/** The worker's `Lost-token check done` lines (LOG_FORMAT=json, LOG_LEVEL=DEBUG). */
function checksOf(workerProcess: WorkerProcess): CheckLine[] {
  return workerProcess
    .output()
    .split('\n')
    .filter((line) => line.includes('"Lost-token check done"'))
    .map((line) => JSON.parse(line) as CheckLine);
}

/** The worker's `Lost-token check skipped` lines' triggers: the checks it left to the lease holder. */
function skippedChecksOf(workerProcess: WorkerProcess): string[] {
  return workerProcess
    .output()
    .split('\n')
    .filter((line) => line.includes('"Lost-token check skipped'))
    .map((line) => (JSON.parse(line) as { trigger: string }).trigger);
}

/** `token_lost_tokens_rewritten_total{reason}` added up over the running workers' `/metrics`. */
async function rewrittenOnMetrics(reason: 'missing' | 'behind'): Promise<number> {
  let total = 0;
  for (const port of metricsPorts) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const sample = new RegExp(`^token_lost_tokens_rewritten_total\\{[^}]*reason="${reason}"[^}]*\\} (\\S+)$`, 'm').exec(text);
    total += sample === null ? 0 : Number(sample[1]);
  }
  return total;
}

const generationOf = async (clientId: string) => Number(await redis.hget(tokenKey('oauth:', clientId), 'generation'));
const activeAt = (clientId: string, generation: number) =>
  eventually(
    async () => {
      const status = await admin.status(clientId);
      return status.state === 'active' && status.generation === generation ? status : undefined;
    },
    60_000,
    `${clientId} active at generation ${generation}`,
  );

test('after a reconnection the lease holder writes again a token Redis lost or holds an older one of, and leaves an intact one alone; the other worker checks nothing', async () => {
  for (const clientId of CLIENT_IDS) {
    await admin.register({ clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:LOST_SECRET' });
  }
  for (const clientId of CLIENT_IDS) await activeAt(clientId, 1);
  // The only worker held the listing lease; stopping, it releases it.
  expect(await worker.stop()).toBe('code 0');
  expect(await redis.exists(listingLeaseKey('oauth:', taskQueue))).toBe(0);
  // A worker that starts now takes the lease, checks the keys on its first connection, and
  // queries none of these young tokens' workflows.
  const startDebugWorker = (metricsPort: number) =>
    startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue,
      redisUrl: redisServer.url,
      workflowBundlePath: inject('workflowBundlePath'),
      env: { LOST_SECRET: SECRET, LOG_LEVEL: 'DEBUG', LOG_FORMAT: 'json', METRICS_PORT: String(metricsPort) },
    });
  laterWorker = await startDebugWorker(metricsPorts[1]!);
  const firstCheck = await eventually(
    () => checksOf(laterWorker!).find((c) => c.trigger === 'Redis connection ready'),
    60_000,
    'the first check',
  );
  expect(firstCheck).toMatchObject({ checked: CLIENT_IDS.length, queried: 0, missing: 0, behind: 0 });
  // A second worker now finds the lease held: it leaves its first check to the holder.
  restartedWorker = await startDebugWorker(metricsPorts[0]!);
  await eventually(
    () => (skippedChecksOf(restartedWorker!).includes('Redis connection ready') ? true : undefined),
    60_000,
    'the second worker’s first check left to the holder',
  );
  // BEHIND gets a second token; Redis will be set back to the first, as a failover to a replica
  // that missed the second write would.
  const first = await redis.hgetall(tokenKey('oauth:', BEHIND));
  await admin.refresh(BEHIND, { wait: true, reason: 'a second token, to be lost' });
  await activeAt(BEHIND, 2);
  const beforeLoss = iam.issuedTokens.length;
  await redis
    .multi()
    .del(tokenKey('oauth:', MISSING), tokenKey('oauth:', BEHIND), generationsKey('oauth:'))
    .hset(tokenKey('oauth:', BEHIND), first)
    .pexpireat(tokenKey('oauth:', BEHIND), Number(first.expires_at))
    .exec();
  // The workers' connections drop and come back, as after a failover.
  await redis.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');

  await eventually(async () => ((await generationOf(MISSING)) === 2 ? true : undefined), 60_000, `${MISSING} written again`);
  await eventually(
    async () => ((await generationOf(BEHIND)) === 3 ? true : undefined),
    60_000,
    `${BEHIND} written again above the workflow's generation`,
  );
  // The check ran; the intact one was not refreshed, and nothing else was requested.
  expect(await generationOf(INTACT)).toBe(1);
  expect(iam.issuedTokens.length - beforeLoss).toBe(2);
  expect(iam.requestsFor(INTACT)).toHaveLength(1);
  expect(Number(await redis.zscore(generationsKey('oauth:'), BEHIND))).toBe(3);
  const log = laterWorker.output();
  expect(log).toContain('Tokens lost by Redis');
  expect(log).not.toContain(SECRET);
  const recheck = await eventually(
    () => checksOf(laterWorker!).find((c) => c.trigger === 'Redis reconnected'),
    60_000,
    'the holder’s check after its reconnection',
  );
  // It asked every workflow whose key it found.
  expect(recheck).toMatchObject({ checked: CLIENT_IDS.length, queried: CLIENT_IDS.length - recheck.missing });
  // The other worker reconnected too, and left the check to the holder: it checked nothing at all.
  await eventually(
    () => (skippedChecksOf(restartedWorker!).includes('Redis reconnected') ? true : undefined),
    60_000,
    'the second worker’s check after its reconnection left to the holder',
  );
  expect(checksOf(restartedWorker)).toEqual([]);
  expect(restartedWorker.output()).not.toContain('Tokens lost by Redis');
  expect(restartedWorker.output()).not.toContain(SECRET);
  // Counted for the alert TokenLostTokensRewritten: one signal per lost token, at most two (a
  // periodic check may have found the missing key before the reconnection's check; a second
  // signal coalesces in the workflow).
  for (const reason of ['missing', 'behind'] as const) {
    const rewritten = await rewrittenOnMetrics(reason);
    expect(rewritten, reason).toBeGreaterThanOrEqual(1);
    expect(rewritten, reason).toBeLessThanOrEqual(2);
  }
}, 240_000);
