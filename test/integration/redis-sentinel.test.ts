/**
 * Redis with Sentinel, failed over twice under a running worker process and a consumer
 * (`TokenReader`), both on `redis+sentinel://`: first `SENTINEL FAILOVER`, then a crash (kill -9)
 * of the master after it took writes its replica never received, as asynchronous replication
 * allows. Neither is restarted. Tokens written after each failover are read; the tokens the crash
 * lost are written again by the worker (worker/lost-token-check.ts) before the ones consumers last
 * read expire; generations never go backwards.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { generationsKey, tokenKey } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { createRedisClient } from '../../shared/redis-connection.js';
import { TokenReader } from 'token-lifecycle';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { startRedisSentinel, type RedisSentinel } from '../support/redis-sentinel.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const SECRET = 'sentinel-secret-do-not-log';
/** Long enough that no renewal is due during the test: every new token is one the test caused. */
const LIFETIME_SECONDS = 120;
const FIRST = Array.from({ length: 8 }, (_, i) => `sentinel-${i}`);
/** Registered while the replica is cut off: their first tokens exist only on the master that crashes. */
const LATE = ['sentinel-late-0', 'sentinel-late-1'];
/** Refreshed while the replica is cut off: the replica keeps their previous generation. */
const REFRESHED_IN_WINDOW = FIRST.slice(1, 5);
const taskQueue = `sentinel-${randomUUID()}`;

let iam: IamEmulator;
let sentinel: RedisSentinel;
let worker: WorkerProcess;
let connection: Connection;
let admin: TokenAdmin;
let consumerRedis: ReturnType<typeof createRedisClient>;
let reader: TokenReader;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: LIFETIME_SECONDS,
    clients: [...FIRST, ...LATE].map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  sentinel = await startRedisSentinel();
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue,
    redisUrl: sentinel.url,
    workflowBundlePath: inject('workflowBundlePath'),
    env: { SENTINEL_SECRET: SECRET },
  });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  admin = new TokenAdmin(new Client({ connection }), { taskQueue });
  consumerRedis = createRedisClient(sentinel.url, { maxRetriesPerRequest: 1 });
  // Failures reach the reader's callers; without a listener ioredis prints each reconnection attempt.
  consumerRedis.on('error', () => undefined);
  reader = new TokenReader({ redis: consumerRedis, cache: true });
});

afterAll(async () => {
  if (connection) {
    const client = new Client({ connection });
    for (const clientId of [...FIRST, ...LATE])
      await client.workflow
        .getHandle(workflowIdFor(clientId))
        .terminate('test finished')
        .catch(() => undefined);
    await connection.close();
  }
  await worker?.kill9();
  await reader?.close();
  consumerRedis?.disconnect();
  await sentinel?.stop();
  await iam?.close();
});

const register = (clientId: string) =>
  admin.register({ clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:SENTINEL_SECRET' });

/** What the current master holds for `clientId`: generation and expiry, or null. */
async function onMaster(clientId: string): Promise<{ generation: number; expiresAt: number } | null> {
  const master = new Redis(await sentinel.masterPort(), '127.0.0.1', { maxRetriesPerRequest: 1 });
  try {
    const [generation, expiresAt] = await master.hmget(tokenKey('oauth:', clientId), 'generation', 'expires_at');
    return generation === null || expiresAt === null ? null : { generation: Number(generation), expiresAt: Number(expiresAt) };
  } finally {
    master.disconnect();
  }
}

/** Until the consumer reads a token of `clientId` newer than `generation`. */
const readerSeesAbove = (clientId: string, generation: number) =>
  eventually(
    async () => {
      const token = await reader.getToken(clientId).catch(() => undefined);
      return token !== undefined && token.generation > generation ? token : undefined;
    },
    60_000,
    `the consumer to read ${clientId} above generation ${generation}`,
  );

test('the worker and a TokenReader on redis+sentinel:// survive a SENTINEL FAILOVER and a master crash that lost writes, without a restart', async () => {
  const figures: Record<string, unknown> = {};
  for (const clientId of FIRST) await register(clientId);
  for (const clientId of FIRST) await readerSeesAbove(clientId, 0);

  // 1. A planned failover: nothing is lost, and a token written afterwards reaches the consumer.
  const planned = await sentinel.failover();
  figures.plannedFailover = planned;
  for (const clientId of FIRST) expect(await onMaster(clientId)).toMatchObject({ generation: 1 });
  await admin.refresh(FIRST[0]!, { reason: 'after the planned failover' });
  const afterPlanned = await timed(() => readerSeesAbove(FIRST[0]!, 1));
  figures.tokenReadAfterPlannedFailoverMs = afterPlanned.ms;

  // 2. A crash that loses writes: the replica is cut off while the master takes new tokens.
  const known = new Map<string, { generation: number; expiresAt: number }>();
  const crash = await sentinel.loseWritesInFailover(async () => {
    for (const clientId of LATE) await register(clientId);
    for (const clientId of REFRESHED_IN_WINDOW) await admin.refresh(clientId, { reason: 'while the replica is cut off' });
    for (const clientId of [...LATE, ...REFRESHED_IN_WINDOW]) {
      const expected = clientId.startsWith('sentinel-late') ? 1 : 2;
      // What the workflow knows, and what a consumer reading the master now would hold.
      const held = await eventually(
        async () => {
          const now = await onMaster(clientId);
          return now !== null && now.generation >= expected ? now : undefined;
        },
        60_000,
        `${clientId} at generation ${expected} on the master`,
      );
      known.set(clientId, held);
    }
  });
  const promotedAt = Date.now();
  figures.crashFailover = crash;

  // The promoted replica really lacks them. (The worker may have written some again already: it
  // checks a second after it reconnects, and a forced refresh waits for the minimum interval,
  // 10 s after the lost request, so at least the last ones are still missing here.)
  const lost: string[] = [];
  for (const [clientId, held] of known) {
    const now = await onMaster(clientId);
    if (now === null || now.generation < held.generation) lost.push(clientId);
  }
  figures.lostInCrash = lost;
  expect(lost.length).toBeGreaterThan(0);

  // Written again by the worker, with a generation above the lost one, before the token a
  // consumer may still hold (the lost one) expires.
  const rewritten: Record<string, number> = {};
  for (const [clientId, held] of known) {
    const back = await eventually(
      async () => {
        const now = await onMaster(clientId);
        return now !== null && now.generation > held.generation ? now : undefined;
      },
      120_000,
      `${clientId} written again above generation ${held.generation}`,
    );
    rewritten[clientId] = Date.now() - promotedAt;
    expect(Date.now()).toBeLessThan(held.expiresAt);
    expect(back.generation).toBe(held.generation + 1);
    await readerSeesAbove(clientId, held.generation);
  }
  figures.rewrittenAfterPromotionMs = rewritten;

  // Tokens written after the crash reach the consumer; the untouched ones were never lost.
  const untouched = FIRST.filter((id) => !REFRESHED_IN_WINDOW.includes(id));
  await admin.refresh(untouched.at(-1)!, { reason: 'after the crash' });
  await readerSeesAbove(untouched.at(-1)!, 1);

  // Generations: the workflows number on from what they hold, and the record is rebuilt.
  const master = new Redis(await sentinel.masterPort(), '127.0.0.1');
  try {
    for (const clientId of [...FIRST, ...LATE]) {
      const status = await admin.status(clientId);
      expect(status).toMatchObject({ state: 'active' });
      const stored = Number(await master.hget(tokenKey('oauth:', clientId), 'generation'));
      expect(stored).toBe(status.generation);
      expect(Number(await master.zscore(generationsKey('oauth:'), clientId))).toBeGreaterThanOrEqual(stored);
    }
  } finally {
    master.disconnect();
  }
  expect(worker.hasExited()).toBe(false);
  expect(worker.output()).toContain('Tokens lost by Redis');
  expect(worker.output()).not.toContain(SECRET);
  figures.requestsPerClient = Object.fromEntries([...FIRST, ...LATE].map((id) => [id, iam.requestsFor(id).length]));
  console.info(`[sentinel] ${JSON.stringify(figures, null, 2)}`);
}, 300_000);

async function timed<T>(action: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  const value = await action();
  return { value, ms: Date.now() - start };
}
