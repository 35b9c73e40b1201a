/**
 * The build as it ships: `node dist/worker/main.js` (what `npm start` and the Docker image run,
 * from the prebuilt workflow bundle) and the `tokenctl` bin, as separate processes. Sources run
 * through tsx elsewhere in the suite; this catches what only plain Node's ESM loader rejects.
 * `npm test` builds first (`pretest`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { Redis } from 'ioredis';
import { tokenKey } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { hasExited } from '../../dev/child-process.js';
import { findFreePorts } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';

const ROOT = join(import.meta.dirname, '..', '..');
const WORKER = join(ROOT, 'dist', 'worker', 'main.js');
const TOKENCTL = join(ROOT, 'dist', 'cli', 'tokenctl.js');
const SECRET = 'built-worker-secret';

let iam: IamEmulator;
let redisServer: RedisServer;
let redis: Redis;
let connection: Connection;
let worker: ChildProcess;
let output = '';
const taskQueue = `built-${Date.now()}`;
const env = () => ({
  ...process.env,
  TEMPORAL_ADDRESS: inject('temporalAddress'),
  TEMPORAL_TASK_QUEUE: taskQueue,
  REDIS_URL: redisServer.url,
  METRICS_PORT: '0',
  LOG_LEVEL: 'INFO',
  // What the Docker image sets: every line the process writes must be one JSON object.
  LOG_FORMAT: 'json',
});

beforeAll(async () => {
  if (!existsSync(WORKER) || !existsSync(TOKENCTL))
    throw new Error('dist/ is missing: run `npm run build` first (`npm test` and `make test` do)');
  iam = await startIamEmulator({ tokenLifetimeSeconds: 30, clients: [{ clientId: 'built', clientSecret: SECRET }] });
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  connection = await Connection.connect({ address: inject('temporalAddress') });
  worker = spawn(process.execPath, [WORKER], { env: { ...env(), BUILT_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
  worker.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  worker.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
});

afterAll(async () => {
  if (worker?.exitCode === null) worker.kill('SIGKILL');
  // The worker is gone by now: terminate rather than ask the workflow to stop.
  for (const clientId of ['built', 'built-unknown']) {
    await new Client({ connection }).workflow
      .getHandle(workflowIdFor(clientId))
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
});

test('the built worker keeps a token in Redis, tokenctl reads it, logs a rejection once, and SIGTERM stops it cleanly', async () => {
  const admin = new TokenAdmin(new Client({ connection }), { taskQueue });
  await admin.register({ clientId: 'built', tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_basic', secretRef: 'env:BUILT_SECRET' });
  // A client the IAM does not know: rejected, parked, and logged in one line, not twice.
  await admin.register({
    clientId: 'built-unknown',
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_basic',
    secretRef: 'env:BUILT_SECRET',
  });

  const accessToken = await eventually(
    () => redis.hget(tokenKey('oauth:', 'built'), 'access_token').then((t) => t ?? undefined),
    30_000,
    'the token in Redis',
  );
  expect(iam.requestsFor('built').map((r) => r.outcome)).toEqual(['issued']);

  const printed = await new Promise<string>((resolve, reject) =>
    execFile(TOKENCTL, ['token', 'built'], { env: env(), timeout: 30_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  expect(printed.trim()).toBe(accessToken);

  await eventually(
    async () => ((await admin.status('built-unknown')).state === 'credentials_rejected' ? true : undefined),
    30_000,
    'built-unknown parked',
  );
  expect(iam.requestsFor('built-unknown').map((r) => r.outcome)).toEqual(['invalid_client']);
  // The worker's line names the kind; the SDK's own "Activity failed" (with a stack trace) is
  // debug-level for a failure the activity classified (ApplicationFailureCategory.BENIGN).
  const records = () =>
    output
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const failures = records().filter((record) => record.message === 'Token request failed');
  expect(failures).toMatchObject([{ level: 'WARN', clientId: 'built-unknown', kind: 'credentials_rejected' }]);
  expect(records().map((record) => record.message)).not.toContain('Activity failed');

  const exited = once(worker, 'exit');
  worker.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  expect(code).toBe(0);
  const messages = records().map((record) => record.message);
  expect(messages).toContain('Worker started');
  // The IAM worker polls no workflow tasks by design: the SDK's warning about it is debug-level.
  expect(messages).not.toContain('No workflows registered, not polling for workflow tasks');
  expect(output).not.toContain(SECRET);
  expect(output).not.toContain(accessToken);
});

test('the built worker exits 1 with one line saying what to fix when Temporal is unreachable or a setting is wrong', async () => {
  const [closedPort] = await findFreePorts(1);
  const start = (overrides: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [WORKER],
        { env: { ...env(), LOG_FORMAT: 'pretty', ...overrides }, timeout: 60_000 },
        (error, _stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number | null), stderr }),
      );
    });
  const [unreachable, badTls, badSetting] = await Promise.all([
    start({ TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}` }),
    start({ TEMPORAL_TLS_CA_PATH: '/nonexistent/ca.pem' }),
    start({ IAM_MAX_RPS: 'lots' }),
  ]);

  expect(unreachable.code).toBe(1);
  expect(unreachable.stderr).toMatch(
    new RegExp(
      `^cannot reach Temporal at 127\\.0\\.0\\.1:${closedPort} \\(.*Connection refused.*\\): check that it is running, or set TEMPORAL_ADDRESS`,
    ),
  );
  expect(badTls).toEqual({ code: 1, stderr: 'Invalid settings:\n  - TEMPORAL_TLS_CA_PATH: cannot read /nonexistent/ca.pem (ENOENT)\n' });
  expect(badSetting.code).toBe(1);
  expect(badSetting.stderr).toMatch(/^Invalid settings:\n {2}- IAM_MAX_RPS: /);
  // One message, no stack trace.
  for (const run of [unreachable, badTls, badSetting]) expect(run.stderr).not.toMatch(/\n\s+at /);
});

test('the built worker started while Redis is down keeps running, says so once, and says when Redis is back', async () => {
  const [redisPort, metricsPort] = await findFreePorts(2);
  let lines = '';
  const lateWorker = spawn(process.execPath, [WORKER], {
    env: { ...env(), REDIS_URL: `redis://127.0.0.1:${redisPort}`, METRICS_PORT: String(metricsPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  lateWorker.stdout.on('data', (chunk: Buffer) => (lines += chunk.toString()));
  lateWorker.stderr.on('data', (chunk: Buffer) => (lines += chunk.toString()));
  const messages = () =>
    lines
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => (JSON.parse(line) as { message: string }).message);
  let lateRedis: RedisServer | undefined;
  try {
    await eventually(() => (messages().includes('Worker started') ? true : undefined), 30_000, 'the worker started without Redis');
    // Several reconnection attempts later: still one line, and none of ioredis's own.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(lateWorker.exitCode).toBeNull();
    expect(messages().filter((message) => message.startsWith('Redis unreachable'))).toHaveLength(1);
    expect(lines).not.toContain('Unhandled error event');

    lateRedis = await startRedisServer({ port: redisPort });
    await eventually(() => (messages().includes('Redis connection restored') ? true : undefined), 30_000, 'the worker back on Redis');
    const exited = once(lateWorker, 'exit');
    lateWorker.kill('SIGTERM');
    expect((await exited)[0]).toBe(0);
  } finally {
    if (!hasExited(lateWorker)) lateWorker.kill('SIGKILL');
    await lateRedis?.stop();
  }
});
