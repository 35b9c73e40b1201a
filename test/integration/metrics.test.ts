/**
 * `/metrics` of the real worker process (`worker/main.ts`, as `npm start` runs it) during a run
 * against the IAM emulator: the project's metrics and Temporal's worker metrics, with values that
 * match what happened (requests in the emulator's log, the expiry in Redis).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { inject } from 'vitest';
import { refreshRequestsStream, tokenKey, tokenUpdatedChannel } from '../../shared/redis-layout.js';
import { TokenStore } from '../../shared/token-store.js';
import { TokenAdmin } from '../../client/admin.js';
import { findFreePort } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { PROJECT_METRIC_NAMES, TEMPORAL_WORKER_METRIC_NAMES } from '../../worker/metrics.js';
import { startTokenExpiryGauge } from '../../worker/token-expiry-gauge.js';
import type { MetricMeter } from '@temporalio/common';
import { metricsDocsDifferences } from '../support/metrics-docs.js';
import { eventually } from '../support/token-stack.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { terminateRunning } from '../support/terminate-running.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LIFETIME_SECONDS = 4;
const GOOD_SECRET = 'metrics-good-secret';
const WRONG_SECRET = 'metrics-wrong-secret';

let iam: IamEmulator;
let redisServer: RedisServer;
let redis: Redis;
let worker: ChildProcess;
let workerOutput = '';
let metricsUrl: string;
let connection: Connection;
let admin: TokenAdmin;
const taskQueue = `test-metrics-${randomUUID()}`;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: LIFETIME_SECONDS,
    clients: [
      { clientId: 'metrics-good', clientSecret: GOOD_SECRET },
      { clientId: 'metrics-rejected', clientSecret: 'the-right-one' },
    ],
  });
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  const metricsPort = await findFreePort();
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  worker = spawn(process.execPath, ['--import', 'tsx', join(root, 'worker', 'main.ts')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: taskQueue,
      REDIS_URL: redisServer.url,
      METRICS_PORT: String(metricsPort),
      WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath'),
      LOG_LEVEL: 'WARN',
      // Two workflows run here, both cached by default: no cache shows that the setting reaches
      // the worker (and runs every workflow task by replaying its history).
      MAX_CACHED_WORKFLOWS: '0',
      GOOD_SECRET,
      WRONG_SECRET,
    },
  });
  for (const stream of [worker.stdout!, worker.stderr!]) stream.on('data', (chunk: Buffer) => (workerOutput += chunk.toString()));
  await eventually(
    () =>
      worker.exitCode !== null
        ? failStartup()
        : scrape().then(
            (text) => text,
            () => undefined,
          ),
    60_000,
    'the worker to serve /metrics',
  );

  connection = await Connection.connect({ address: inject('temporalAddress') });
  admin = new TokenAdmin(new Client({ connection }), { taskQueue });
});

afterAll(async () => {
  if (connection !== undefined) {
    const client = new Client({ connection });
    await terminateRunning(client, taskQueue, 'test finished');
    await connection.close();
  }
  if (worker !== undefined && worker.exitCode === null) {
    const exited = once(worker, 'exit');
    worker.kill('SIGTERM');
    await exited;
  }
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
});

function failStartup(): never {
  throw new Error(`The worker exited (${worker.exitCode}) before serving /metrics:\n${workerOutput}`);
}

async function scrape(): Promise<string> {
  const response = await fetch(metricsUrl);
  if (!response.ok) throw new Error(`GET ${metricsUrl}: ${response.status}`);
  return response.text();
}

/** One sample of the Prometheus text format: `name{label="value",…} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`, or undefined. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

describe('the worker process on /metrics', () => {
  test('serves the project’s token metrics and Temporal’s worker metrics with values that match the run', async () => {
    const tokenUrl = iam.tokenUrl();
    await admin.register({ clientId: 'metrics-good', tokenUrl, authMethod: 'client_secret_basic', secretRef: 'env:GOOD_SECRET' });
    await admin.register({ clientId: 'metrics-rejected', tokenUrl, authMethod: 'client_secret_post', secretRef: 'env:WRONG_SECRET' });

    // Wait for one renewal of the good client, so the counter has moved past its first value.
    const samples = await eventually(
      async () => {
        const scraped = parseSamples(await scrape());
        const issued = valueOf(scraped, 'token_requests_total', { client_id: 'metrics-good', outcome: 'issued' }) ?? 0;
        const rejected = valueOf(scraped, 'token_requests_total', { client_id: 'metrics-rejected', outcome: 'credentials_rejected' }) ?? 0;
        return issued >= 2 && rejected >= 1 ? scraped : undefined;
      },
      20_000,
      'two issued and one rejected token request on /metrics',
    );

    // Requests: exactly what the emulator logged, by client and outcome.
    const issuedAtIam = iam.requestsFor('metrics-good').filter((entry) => entry.outcome === 'issued').length;
    const issuedOnMetrics = valueOf(samples, 'token_requests_total', { client_id: 'metrics-good', outcome: 'issued' })!;
    expect(issuedOnMetrics).toBeGreaterThanOrEqual(2);
    expect(issuedOnMetrics).toBeLessThanOrEqual(issuedAtIam);
    expect(issuedAtIam - issuedOnMetrics).toBeLessThanOrEqual(1); // at most one request still in flight
    expect(valueOf(samples, 'token_requests_total', { client_id: 'metrics-rejected', outcome: 'credentials_rejected' })).toBe(1);
    expect(iam.requestsFor('metrics-rejected')).toHaveLength(1);

    // Latency: one observation per finished request, each well under the request timeout.
    const latencyCount = valueOf(samples, 'token_endpoint_latency_seconds_count', { outcome: 'issued' })!;
    const latencySum = valueOf(samples, 'token_endpoint_latency_seconds_sum', { outcome: 'issued' })!;
    expect(latencyCount).toBe(issuedOnMetrics);
    expect(latencySum).toBeGreaterThan(0);
    expect(latencySum / latencyCount).toBeLessThan(2);
    expect(valueOf(samples, 'token_endpoint_latency_seconds_bucket', { outcome: 'issued', le: '+Inf' })).toBe(latencyCount);
    expect(valueOf(samples, 'token_endpoint_latency_seconds_count', { outcome: 'credentials_rejected' })).toBe(1);

    // Seconds until expiry: within the lifetime, and what Redis says (the gauge is set every
    // second, and on each announcement: it may lag a renewal by a moment, so read it while the
    // stored expiry stays the same).
    const { secondsOnMetrics, secondsInRedis } = await eventually(
      async () => {
        const before = await redis.hget(tokenKey('oauth:', 'metrics-good'), 'expires_at');
        const scrapedAt = Date.now();
        const onMetrics = valueOf(parseSamples(await scrape()), 'token_seconds_until_expiry', { client_id: 'metrics-good' });
        const after = await redis.hget(tokenKey('oauth:', 'metrics-good'), 'expires_at');
        if (before === null || before !== after || onMetrics === undefined) return undefined;
        const inRedis = (Number(after) - scrapedAt) / 1000;
        return Math.abs(onMetrics - inRedis) < 1.5 ? { secondsOnMetrics: onMetrics, secondsInRedis: inRedis } : undefined;
      },
      20_000,
      'token_seconds_until_expiry to match the stored expiry',
    );
    expect(secondsOnMetrics).toBeGreaterThan(0);
    expect(secondsOnMetrics).toBeLessThanOrEqual(LIFETIME_SECONDS);
    expect(secondsInRedis).toBeLessThanOrEqual(LIFETIME_SECONDS);
    expect(valueOf(samples, 'token_seconds_until_expiry', { client_id: 'metrics-rejected' })).toBeUndefined();

    // Temporal's own worker metrics, for both task queues of this worker.
    for (const queue of [taskQueue, `${taskQueue}-iam`]) {
      expect(
        valueOf(samples, 'temporal_worker_task_slots_available', { task_queue: queue, worker_type: 'ActivityWorker' }),
      ).toBeGreaterThan(0);
    }
    // Token requests run on the IAM queue; the workflow queue's only activity purges on remove.
    expect(valueOf(samples, 'temporal_activity_schedule_to_start_latency_count', { task_queue: `${taskQueue}-iam` })).toBeGreaterThan(0);
    expect(
      valueOf(samples, 'temporal_worker_task_slots_available', { task_queue: taskQueue, worker_type: 'WorkflowWorker' }),
    ).toBeGreaterThan(0);
    expect(valueOf(samples, 'temporal_workflow_task_schedule_to_start_latency_count', { task_queue: taskQueue })).toBeGreaterThan(0);
    // MAX_CACHED_WORKFLOWS=0: neither workflow stays in memory between its tasks (one is held while
    // a task of it runs). With the SDK's default both would stay, and this would never be 0.
    await eventually(
      async () =>
        (valueOf(parseSamples(await scrape()), 'temporal_sticky_cache_size', { task_queue: taskQueue }) ?? 0) === 0 ? true : undefined,
      5_000,
      'an empty workflow cache between tasks',
    );
  });

  test('token_client_state says which state each running client is in, and token_renewal_overdue_seconds follows refresh_at', async () => {
    // The client-state gauge lists the workflows every 30 s: the first listing may predate them.
    const samples = await eventually(
      async () => {
        const scraped = parseSamples(await scrape());
        const good = valueOf(scraped, 'token_client_state', { client_id: 'metrics-good', state: 'active' });
        const rejected = valueOf(scraped, 'token_client_state', { client_id: 'metrics-rejected', state: 'credentials_rejected' });
        return good === 1 && rejected === 1 ? scraped : undefined;
      },
      45_000,
      'both clients in token_client_state',
    );
    // One series at 1 per client; the states it was in before stay at 0.
    for (const clientId of ['metrics-good', 'metrics-rejected']) {
      const own = samples.filter((sample) => sample.name === 'token_client_state' && sample.labels.client_id === clientId);
      expect(own.filter((sample) => sample.value === 1)).toHaveLength(1);
      expect(own.every((sample) => sample.value === 0 || sample.value === 1)).toBe(true);
    }
    expect(valueOf(samples, 'token_client_state', { client_id: 'metrics-good', state: 'acquiring' }) ?? 0).toBe(0);

    // Seconds past the renewal point: what Redis's refresh_at says, read while the stored token
    // stays the same (0 before it; a 4 s token is renewed within a moment of it).
    const { onMetrics, inRedis, untilExpiry } = await eventually(
      async () => {
        const key = tokenKey('oauth:', 'metrics-good');
        const [refreshAt, expiresAt] = await redis.hmget(key, 'refresh_at', 'expires_at');
        const scrapedAt = Date.now();
        const scraped = parseSamples(await scrape());
        const [after] = await redis.hmget(key, 'refresh_at');
        const value = valueOf(scraped, 'token_renewal_overdue_seconds', { client_id: 'metrics-good' });
        if (!refreshAt || refreshAt !== after || value === undefined) return undefined;
        const seconds = Math.max(0, (scrapedAt - Number(refreshAt)) / 1000);
        return Math.abs(value - seconds) < 1.5
          ? { onMetrics: value, inRedis: seconds, untilExpiry: (Number(expiresAt) - scrapedAt) / 1000 }
          : undefined;
      },
      20_000,
      'token_renewal_overdue_seconds to match the stored refresh_at',
    );
    expect(untilExpiry).toBeGreaterThan(0);
    expect(inRedis).toBeLessThan(LIFETIME_SECONDS);
    expect(onMetrics).toBeGreaterThanOrEqual(0);
    expect(valueOf(samples, 'token_renewal_overdue_seconds', { client_id: 'metrics-rejected' })).toBeUndefined();
  });

  test('every token_* metric on /metrics is one the project lists, the Temporal metrics the dashboard uses exist, and no secret or token appears', async () => {
    const text = await scrape();
    const names = new Set(parseSamples(text).map((sample) => sample.name));
    // The Temporal metrics the Grafana dashboard charts exist under exactly these names.
    for (const gauge of TEMPORAL_WORKER_METRIC_NAMES.gauges) expect(names).toContain(gauge);
    for (const histogram of TEMPORAL_WORKER_METRIC_NAMES.histograms) expect(names).toContain(`${histogram}_bucket`);

    const listed = new Set<string>([...PROJECT_METRIC_NAMES.counters, ...PROJECT_METRIC_NAMES.gauges]);
    for (const histogram of PROJECT_METRIC_NAMES.histograms)
      for (const suffix of ['_bucket', '_sum', '_count']) listed.add(histogram + suffix);
    const exported = new Set(
      parseSamples(text)
        .map((sample) => sample.name)
        .filter((name) => name.startsWith('token_')),
    );
    expect([...exported].filter((name) => !listed.has(name))).toEqual([]);
    expect(exported).toContain('token_requests_total');
    expect(exported).toContain('token_seconds_until_expiry');

    const accessToken = await redis.hget(tokenKey('oauth:', 'metrics-good'), 'access_token');
    expect(accessToken).toBeTruthy();
    for (const secret of [GOOD_SECRET, WRONG_SECRET, accessToken!]) expect(text).not.toContain(secret);
  });

  test('a request never sent is not counted, and every series is what docs/deployment.md says', async () => {
    // Its secret's variable is unset in the worker: every attempt fails before anything is sent.
    await admin.register({
      clientId: 'metrics-no-secret',
      tokenUrl: iam.tokenUrl(),
      authMethod: 'client_secret_basic',
      secretRef: 'env:UNSET',
    });
    await eventually(
      async () => {
        const status = await admin.status('metrics-no-secret');
        return status.backoffReason === 'secret_unavailable' && status.consecutiveFailures >= 2 ? true : undefined;
      },
      30_000,
      'metrics-no-secret backing off after two attempts',
    );
    // An operator's refresh is scheduled; a refresh request without its origin proof is refused.
    // The request follows the refresh, so its client has a token to check a proof against (a 4 s
    // token may lapse on a busy machine: the request would be refused as no_token instead).
    await admin.refresh('metrics-good', { wait: true, reason: 'metrics test' });
    await redis.xadd(refreshRequestsStream('oauth:'), '*', 'clientId', 'metrics-good', 'reason', 'metrics test');
    const text = await eventually(
      async () => {
        const scraped = await scrape();
        return valueOf(parseSamples(scraped), 'token_refresh_requests_refused_total', { reason: 'missing_proof' }) === 1
          ? scraped
          : undefined;
      },
      30_000,
      'the refused refresh request counted',
    );

    const samples = parseSamples(text);
    expect(iam.requestsFor('metrics-no-secret')).toEqual([]);
    expect(
      samples.filter((sample) => sample.labels.client_id === 'metrics-no-secret' || sample.labels.outcome === 'secret_unavailable'),
    ).toEqual([]);
    expect(valueOf(samples, 'token_forced_refreshes_total', { client_id: 'metrics-good', decision: 'scheduled' })).toBeGreaterThanOrEqual(
      1,
    );
    expect(
      metricsDocsDifferences(text, [
        'token_requests_total',
        'token_endpoint_latency_seconds',
        'token_seconds_until_expiry',
        'token_renewal_overdue_seconds',
        'token_client_state',
        'token_breaker_open',
        'token_forced_refreshes_total',
        'token_rejected_logins_total',
        'token_refresh_requests_refused_total',
        'temporal_worker_task_slots_available',
        'temporal_activity_schedule_to_start_latency',
        'temporal_workflow_task_schedule_to_start_latency',
        'temporal_num_pollers',
      ]),
    ).toEqual([]);
  });

  test('/metrics listens on 127.0.0.1 only by default', async () => {
    await expect(fetch(metricsUrl.replace('127.0.0.1', '127.0.0.2'))).rejects.toThrow();
  });

  test('the gauge counts down between renewals and a renewal raises it again', async () => {
    const readings: number[] = [];
    const until = Date.now() + LIFETIME_SECONDS * 1000;
    while (Date.now() < until) {
      readings.push(valueOf(parseSamples(await scrape()), 'token_seconds_until_expiry', { client_id: 'metrics-good' })!);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const drops = readings.slice(1).filter((value, i) => value < readings[i]!).length;
    const rises = readings.slice(1).filter((value, i) => value > readings[i]! + 1).length;
    expect(drops).toBeGreaterThanOrEqual(2);
    expect(rises).toBeGreaterThanOrEqual(1); // renewed at ~0.85 × 4 s, i.e. ~0.6 s before expiry
    expect(Math.min(...readings)).toBeGreaterThan(0);
  });
});

describe('the token expiry gauge in a worker that starts after the tokens were written', () => {
  /** A meter that records the gauge's last value per client; the real one has no read API. */
  function recordingMeter(values: Map<string, number>): MetricMeter {
    const gauge = { set: (value: number, tags: Record<string, string> = {}) => values.set(tags.client_id!, value) };
    return { createGauge: () => gauge } as unknown as MetricMeter;
  }

  test('learns existing tokens by scanning, follows token-updated, and ignores an older generation', async () => {
    // A `?` in the prefix is a glob wildcard to SCAN's MATCH unless escaped.
    const prefix = 'gauge?test:';
    const store = new TokenStore(redis, { prefix });
    const token = (clientId: string, generation: number, expiresAt: number) => ({
      clientId,
      generation,
      expiresAt,
      accessToken: `tok-${generation}`,
      tokenType: 'Bearer',
      scope: '',
      obtainedAt: Date.now(),
      fingerprint: '0123456789abcdef',
    });
    const base = Date.now();
    await store.write(token('scanned', 3, base + 30_000));
    await new TokenStore(redis, { prefix: 'gaugeXtest:' }).write(token('intruder', 1, base + 30_000)); // matches an unescaped glob
    await new TokenStore(redis).write(token('not-ours', 1, base + 30_000)); // default prefix

    const values = new Map<string, number>();
    const gauge = await startTokenExpiryGauge({ redis, prefix, meter: recordingMeter(values) });
    try {
      expect(gauge.knownExpiries()).toEqual(new Map([['scanned', base + 30_000]]));
      expect(values.get('scanned')).toBeGreaterThan(20);
      expect(values.get('scanned')).toBeLessThanOrEqual(30);

      await store.write(token('scanned', 4, base + 50_000));
      await eventually(
        () => (gauge.knownExpiries().get('scanned') === base + 50_000 ? true : undefined),
        30_000,
        'the newer expiry from token-updated',
      );
      expect(values.get('scanned')).toBeGreaterThan(40);

      // A late announcement of an older generation must not roll the expiry back.
      await redis.publish(
        tokenUpdatedChannel(prefix),
        JSON.stringify({ clientId: 'scanned', generation: 3, fingerprint: 'x', expiresAt: base + 1_000 }),
      );
      await redis.publish(
        tokenUpdatedChannel(prefix),
        JSON.stringify({ clientId: 'fresh', generation: 1, fingerprint: 'y', expiresAt: base + 10_000 }),
      );
      await eventually(() => (gauge.knownExpiries().has('fresh') ? true : undefined), 30_000, 'the new client from token-updated');
      expect(gauge.knownExpiries().get('scanned')).toBe(base + 50_000);
    } finally {
      gauge.stop();
    }
  });
  test('a token-updated message sets the gauge of its client only; a rescan and the periodic update set every client', async () => {
    const prefix = 'gauge-one:';
    const sets: Array<{ clientId: string; value: number }> = [];
    const meter = {
      createGauge: () => ({ set: (value: number, tags: Record<string, string> = {}) => sets.push({ clientId: tags.client_id!, value }) }),
    } as unknown as MetricMeter;
    const base = Date.now();
    // Stored without an announcement (as if written while the gauge was not listening): only a scan finds them.
    for (const clientId of ['a', 'b', 'c']) {
      await redis.hset(tokenKey(prefix, clientId), { client_id: clientId, expires_at: String(base + 100_000), generation: '1' });
    }
    // The timers stay out of the way: every set below comes from a message, a rescan or an explicit update.
    const gauge = await startTokenExpiryGauge({ redis, prefix, meter, updateIntervalMs: 3_600_000, resyncIntervalMs: 3_600_000 });
    try {
      expect(new Set(sets.map((set) => set.clientId))).toEqual(new Set(['a', 'b', 'c']));
      sets.length = 0;

      await redis.publish(
        tokenUpdatedChannel(prefix),
        JSON.stringify({ clientId: 'b', generation: 2, fingerprint: 'x', expiresAt: base + 200_000 }),
      );
      await eventually(() => (sets.length > 0 ? true : undefined), 30_000, 'the gauge of the renewed client');
      expect(sets).toHaveLength(1);
      expect(sets[0]!.clientId).toBe('b');
      expect(sets[0]!.value).toBeGreaterThan(190);
      expect(sets[0]!.value).toBeLessThanOrEqual(200);

      // A late announcement of an older generation sets the gauge from the newer expiry already known.
      sets.length = 0;
      await redis.publish(
        tokenUpdatedChannel(prefix),
        JSON.stringify({ clientId: 'b', generation: 1, fingerprint: 'y', expiresAt: base + 1_000 }),
      );
      await eventually(() => (sets.length > 0 ? true : undefined), 30_000, 'the late announcement handled');
      expect(sets.every((set) => set.clientId === 'b' && set.value > 190)).toBe(true);

      // A change only the keys show is learned by the rescan; the update then sets every client.
      await redis.hset(tokenKey(prefix, 'c'), { expires_at: String(base + 300_000), generation: '5' });
      await gauge.resync();
      sets.length = 0;
      gauge.update();
      const latest = new Map(sets.map((set) => [set.clientId, set.value]));
      expect([...latest.keys()].sort()).toEqual(['a', 'b', 'c']);
      expect(latest.get('a')).toBeLessThanOrEqual(100);
      expect(latest.get('b')).toBeGreaterThan(190);
      expect(latest.get('c')).toBeGreaterThan(290);
    } finally {
      gauge.stop();
    }
  });
  test('starts while Redis is down, then learns the stored token and newer ones promptly once Redis is up', async () => {
    const port = await findFreePort();
    const url = `redis://127.0.0.1:${port}`;
    // As the worker makes its client: commands fail after two reconnection attempts.
    const workerRedis = new Redis(url, { maxRetriesPerRequest: 2 });
    workerRedis.on('error', () => undefined); // the worker's own watcher reports it (worker/main.ts)
    const errors: Error[] = [];
    const values = new Map<string, number>();
    const gauge = await startTokenExpiryGauge({
      redis: workerRedis,
      prefix: 'late:',
      meter: recordingMeter(values),
      onError: (error) => errors.push(error),
    });
    let server: RedisServer | undefined;
    let writer: Redis | undefined;
    try {
      expect(gauge.knownExpiries().size).toBe(0);
      expect(errors.map((error) => error.message).join('\n')).toMatch(/ECONNREFUSED|max retries/);

      server = await startRedisServer({ port });
      writer = new Redis(url);
      const store = new TokenStore(writer, { prefix: 'late:' });
      const token = (generation: number, expiresAt: number) => ({
        clientId: 'late',
        generation,
        expiresAt,
        accessToken: `tok-${generation}`,
        tokenType: 'Bearer',
        scope: '',
        obtainedAt: Date.now(),
        fingerprint: '0123456789abcdef',
      });
      const base = Date.now();
      await store.write(token(1, base + 30_000));
      // Learned by the scan that follows the reconnection, not a minute later.
      await eventually(
        () => (gauge.knownExpiries().get('late') === base + 30_000 ? true : undefined),
        30_000,
        'the token written while the gauge was reconnecting',
      );
      // The subscription that failed at start is retried, and a scan follows it: a newer token is
      // learned in seconds, not at the next minute's scan.
      await store.write(token(2, base + 60_000));
      await eventually(
        () => (gauge.knownExpiries().get('late') === base + 60_000 ? true : undefined),
        30_000,
        'the newer token from token-updated',
      );
    } finally {
      gauge.stop();
      workerRedis.disconnect();
      writer?.disconnect();
      await server?.stop();
    }
  });
});
