/**
 * worker/running-clients.ts with the client-state gauge, as two workers of a fleet sharing one
 * Redis, listing the real Temporal dev server's visibility: exactly one of them lists; the other
 * shows 0 for every series it has shown; when the holder stops, or its lease passes to another,
 * the listing moves; while Redis is down nobody lists, and that is logged once.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { noopMetricMeter, type MetricGauge, type MetricMeter } from '@temporalio/common';
import { DefaultLogger, type LogEntry } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { listingLeaseKey } from '../../shared/redis-layout.js';
import { createClientStateGauge } from '../../worker/client-state-gauge.js';
import { startRunningClients, visibilityLister, type RunningClients } from '../../worker/running-clients.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { TokenClientId, TokenState } from '../../workflows/search-attributes.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { terminateRunning } from '../support/terminate-running.js';
import { eventually } from '../support/token-stack.js';

const PREFIX = 'oauth:';
const INTERVAL_MS = 200;
/** Far more than an interval: a listing slowed by a busy machine must not hand the lease over. */
const LEASE_TTL_MS = 10_000;
/** Running workflows of the task queue, by client ID: their `TokenState`. */
const STATES = new Map([
  ['listing-active', 'active'],
  ['listing-parked', 'credentials_rejected'],
  ['listing-backing-off', 'backing_off'],
]);
const taskQueue = `running-clients-${randomUUID()}`;

let redisServer: RedisServer;
let connection: Connection;
let client: Client;
const connections: Redis[] = [];
const started: RunningClients[] = [];

/** A Redis connection of its own, as each worker has; errors while Redis is down are expected. */
function redisConnection(): Redis {
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 2 });
  redis.on('error', () => undefined);
  connections.push(redis);
  return redis;
}

beforeAll(async () => {
  redisServer = await startRedisServer();
  connection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection });
  // Workflows no worker polls for stay running with the search attributes they started with.
  for (const [clientId, state] of STATES) {
    await client.workflow.start('tokenLifecycle', {
      taskQueue,
      workflowId: `${workflowIdFor(clientId)}-${taskQueue}`,
      typedSearchAttributes: [
        { key: TokenClientId, value: clientId },
        { key: TokenState, value: state },
      ],
    });
  }
  await eventually(
    async () => ((await visibilityLister(client, taskQueue)()).size === STATES.size ? true : undefined),
    30_000,
    'the workflows in visibility',
  );
});

afterAll(async () => {
  for (const running of started) await running.stop();
  for (const redis of connections) redis.disconnect();
  if (connection) {
    await terminateRunning(client, taskQueue, 'test finished');
    await connection.close();
  }
  await redisServer?.stop();
});

/** One worker's listing, its gauge's series (`client_id/state` → value), its listings and its log. */
interface Instance {
  running: RunningClients;
  series: Map<string, number>;
  listings(): number;
  log: LogEntry[];
}

function startInstance(): Instance {
  const series = new Map<string, number>();
  const log: LogEntry[] = [];
  let listings = 0;
  const list = visibilityLister(client, taskQueue);
  const running = startRunningClients({
    list: () => {
      listings++;
      return list();
    },
    redis: redisConnection(),
    prefix: PREFIX,
    taskQueue,
    intervalMs: INTERVAL_MS,
    leaseTtlMs: LEASE_TTL_MS,
    logger: new DefaultLogger('DEBUG', (entry) => log.push(entry)),
  });
  running.subscribe(createClientStateGauge(recordingMeter(series)));
  started.push(running);
  return { running, series, listings: () => listings, log };
}

/** A meter whose gauge keeps the last value of each series. */
function recordingMeter(series: Map<string, number>): MetricMeter {
  return {
    createCounter: (...args) => noopMetricMeter.createCounter(...args),
    createHistogram: (...args) => noopMetricMeter.createHistogram(...args),
    createGauge(name, valueType = 'int') {
      const gauge: MetricGauge = {
        name,
        valueType,
        kind: 'gauge',
        set: (value, tags = {}) => void series.set(`${String(tags.client_id)}/${String(tags.state)}`, value),
        withTags: () => gauge,
      };
      return gauge;
    },
    withTags() {
      return this;
    },
  };
}

/** What every running client's series say when they show the listing: 1 for its state. */
const showsListing = (instance: Instance) => [...STATES].every(([clientId, state]) => instance.series.get(`${clientId}/${state}`) === 1);
const showsNothing = (instance: Instance) => [...instance.series.values()].every((value) => value === 0);
const listingsMoreThan = (instance: Instance, count: number) => () => (instance.listings() > count ? true : undefined);

test('of two workers sharing a Redis exactly one lists; the other shows 0; the listing moves when the holder stops or loses the lease', async () => {
  const [first, second] = [startInstance(), startInstance()];
  const holder = await eventually(
    () => [first, second].find((instance) => showsListing(instance)),
    30_000,
    'one worker showing the listing',
  );
  const other = holder === first ? second : first;
  // Several listings by the holder; none by the other.
  const listed = holder.listings();
  await eventually(listingsMoreThan(holder, listed + 3), 30_000, 'more listings by the holder');
  expect(other.listings()).toBe(0);
  expect(holder.running.isListing()).toBe(true);
  expect(other.running.isListing()).toBe(false);
  expect(showsNothing(other)).toBe(true);
  expect(await other.running.list()).toBeNull();
  expect(other.listings()).toBe(0);
  expect([...((await holder.running.list()) ?? [])]).toEqual(expect.arrayContaining([...STATES]));

  // The holder stops (a graceful shutdown): it releases the lease, the other lists.
  await holder.running.stop();
  const stoppedAt = holder.listings();
  await eventually(() => (showsListing(other) ? true : undefined), 30_000, 'the other worker showing the listing');
  expect(other.running.isListing()).toBe(true);
  expect(holder.listings()).toBe(stoppedAt);

  // Its lease taken by a worker that then dies (a stalled holder whose lease expired): it shows 0,
  // lists no more, and takes the lease back once that one expires.
  const redis = redisConnection();
  const key = listingLeaseKey(PREFIX, taskQueue);
  await redis.set(key, 'a-worker-that-dies', 'PX', 5_000);
  await eventually(() => (showsNothing(other) ? true : undefined), 30_000, 'the former holder showing 0');
  const lostAt = other.listings();
  expect(await other.running.list()).toBeNull();
  expect(other.listings()).toBe(lostAt);
  await eventually(() => (showsListing(other) ? true : undefined), 30_000, 'the lease taken back after it expired');
  expect(other.listings()).toBeGreaterThan(lostAt);
  expect(await redis.get(key)).not.toBe('a-worker-that-dies');
  await other.running.stop();
  // Released on stop: nobody holds it.
  expect(await redis.exists(key)).toBe(0);
}, 120_000);

test('while Redis is down nobody lists and the worker says so once; it lists again once Redis is back', async () => {
  const instance = startInstance();
  await eventually(() => (showsListing(instance) ? true : undefined), 30_000, 'the listing shown');
  const noListing = () =>
    instance.log.filter((entry) => entry.level === 'WARN' && entry.message.startsWith('No listing of the running workflows'));

  await redisServer.kill9();
  await eventually(() => (showsNothing(instance) ? true : undefined), 30_000, 'the series at 0 while Redis is down');
  const downAt = instance.listings();
  // Many intervals pass: not one listing, and the warning once.
  await new Promise((resolve) => setTimeout(resolve, 20 * INTERVAL_MS));
  expect(instance.listings()).toBe(downAt);
  expect(instance.running.isListing()).toBe(false);
  expect(noListing()).toHaveLength(1);

  await redisServer.restart({ empty: true });
  await eventually(() => (showsListing(instance) ? true : undefined), 60_000, 'the listing shown again');
  expect(instance.listings()).toBeGreaterThan(downAt);
  expect(noListing()).toHaveLength(1);
}, 120_000);
