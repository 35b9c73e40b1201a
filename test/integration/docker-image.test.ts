/**
 * The worker image, built and run: a Docker engine of the test's own with host networking only
 * (test/support/docker-engine.ts), the base image the Dockerfile names built from Debian
 * (dev/docker/base-image.sh: no registry is reachable), `docker build --network host` of the
 * project's Dockerfile, and `docker run --network host` against the run's Temporal dev server, a
 * redis-server and the IAM emulator, all on 127.0.0.1. Skipped, saying why, where no engine starts.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { tokenKey } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { findFreePort } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { startDockerEngine, type DockerEngine } from '../support/docker-engine.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const SECRET = 'docker-secret-do-not-log';
const CLIENT_ID = 'docker-image';
/** The grace period of docker-compose.yml (`stop_grace_period`) and of docs/deployment.md. */
const STOP_GRACE_SECONDS = 30;
const suffix = randomUUID().slice(0, 8);
const image = `token-lifecycle-worker:test-${suffix}`;
const container = `token-lifecycle-worker-test-${suffix}`;
const taskQueue = `docker-${suffix}`;

let engine: DockerEngine | undefined;
let unavailable = '';
let iam: IamEmulator;
let redisServer: RedisServer;
let connection: Connection;
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  const started = await startDockerEngine();
  if ('unavailable' in started) {
    unavailable = started.unavailable;
    console.warn(`[docker] no Docker engine can start here, the image test is skipped: ${unavailable}`);
    return;
  }
  engine = started;
  let startedAt = Date.now();
  const { stdout } = await execFileAsync('bash', [join(ROOT, 'dev', 'docker', 'base-image.sh')], { env: engine.env, timeout: 1_200_000 });
  figures.baseImage = { tag: stdout.trim(), builtMs: Date.now() - startedAt };
  startedAt = Date.now();
  await engine.docker(['build', '--network', 'host', '--tag', image, ROOT], { timeoutMs: 1_500_000 });
  figures.imageBuildMs = Date.now() - startedAt;
  const bytes = Number(await engine.docker(['image', 'inspect', '--format', '{{.Size}}', image]));
  figures.imageSizeMB = Math.round(bytes / 1e6);

  iam = await startIamEmulator({ tokenLifetimeSeconds: 300, clients: [{ clientId: CLIENT_ID, clientSecret: SECRET }] });
  redisServer = await startRedisServer();
  connection = await Connection.connect({ address: inject('temporalAddress') });
}, 2_400_000);

afterAll(async () => {
  if (engine !== undefined) await engine.docker(['rm', '--force', container]).catch(() => undefined);
  if (connection !== undefined) {
    await new Client({ connection }).workflow
      .getHandle(workflowIdFor(CLIENT_ID))
      .terminate('test finished')
      .catch(() => undefined);
    await connection.close();
  }
  await redisServer?.stop();
  await iam?.close();
  await engine?.stop();
  console.info(`[docker] ${JSON.stringify(figures, null, 2)}`);
}, 120_000);

test("the image runs the worker as a non-root user, turns healthy, stores a registered client's token, and docker stop ends it with exit 0 within the grace period", async (ctx) => {
  if (engine === undefined) return ctx.skip(`no Docker engine can start here: ${unavailable}`);
  const { docker, env } = engine;
  const metricsPort = await findFreePort();
  const runAt = Date.now();
  await docker([
    'run',
    '--detach',
    '--name',
    container,
    '--network',
    'host',
    '--env',
    `TEMPORAL_ADDRESS=${inject('temporalAddress')}`,
    '--env',
    `TEMPORAL_TASK_QUEUE=${taskQueue}`,
    '--env',
    `REDIS_URL=${redisServer.url}`,
    '--env',
    `METRICS_PORT=${metricsPort}`,
    '--env',
    `DOCKER_TEST_SECRET=${SECRET}`,
    image,
  ]);

  // The image's HEALTHCHECK as built (30 s interval): healthy once the worker polls.
  await eventually(
    async () => ((await docker(['inspect', '--format', '{{.State.Health.Status}}', container])) === 'healthy' ? true : undefined),
    240_000,
    `${container} healthy`,
  );
  figures.healthyAfterMs = Date.now() - runAt;
  expect(await docker(['inspect', '--format', '{{.Config.User}}', container])).toBe('node');
  // The worker is PID 1 of the container: its real and effective user IDs.
  expect(await docker(['exec', container, 'awk', '/^Uid:/ { print $2, $3 }', '/proc/1/status'])).toBe('1000 1000');

  const admin = new TokenAdmin(new Client({ connection }), { taskQueue });
  await admin.register({
    clientId: CLIENT_ID,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_basic',
    secretRef: 'env:DOCKER_TEST_SECRET',
  });
  const redis = new Redis(redisServer.url);
  let accessToken: string;
  try {
    accessToken = await eventually(
      () => redis.hget(tokenKey('oauth:', CLIENT_ID), 'access_token').then((t) => t ?? undefined),
      60_000,
      'the token in Redis',
    );
  } finally {
    redis.disconnect();
  }
  expect(iam.requestsFor(CLIENT_ID).map((r) => r.outcome)).toEqual(['issued']);

  const stopAt = Date.now();
  await docker(['stop', '--time', String(STOP_GRACE_SECONDS), container], { timeoutMs: (STOP_GRACE_SECONDS + 60) * 1000 });
  figures.stopMs = Date.now() - stopAt;
  const state = JSON.parse(await docker(['inspect', '--format', '{{json .State}}', container])) as {
    ExitCode: number;
    OOMKilled: boolean;
    Status: string;
  };
  // 0, not 137: the worker shut down by itself on SIGTERM, before the grace period sent SIGKILL.
  expect(state).toMatchObject({ Status: 'exited', ExitCode: 0, OOMKilled: false });

  // The worker logs to stderr, which `docker logs` passes on as its own stderr.
  const { stdout, stderr } = await execFileAsync('docker', ['logs', container], { env, maxBuffer: 64 * 1024 * 1024 });
  const logs = stdout + stderr;
  const lines = logs.split('\n').filter((line) => line !== '');
  // LOG_FORMAT=json, the image's default: one JSON object per line.
  const messages = lines.map((line) => (JSON.parse(line) as { message: string }).message);
  expect(messages).toContain('Worker started');
  expect(logs).not.toContain(SECRET);
  expect(logs).not.toContain(accessToken);
}, 600_000);
