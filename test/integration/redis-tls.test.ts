/**
 * Redis over TLS (docs/design.md, "Redis over TLS"): a `redis-server` that speaks only TLS
 * (`--port 0 --tls-port …`), wants a client certificate (`tls-auth-clients yes`) and a password,
 * with a private CA made for this file. The worker process, `tokenctl` and the consumer library
 * connect with `rediss://` and the `REDIS_TLS_*` references; a wrong CA and a missing client
 * certificate fail with messages that name `REDIS_URL` and the setting to fix, and never the password.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { TokenReader } from 'token-lifecycle';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import type { RedisClient } from '../../shared/redis-connection.js';
import { createRedisClientFromEnvironment, describeRedisConnectionError } from '../../shared/redis-tls.js';
import { readRedisSettings } from '../../shared/redis-settings.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { createTestPki, type IssuedCertificate, type TestPki } from '../support/test-pki.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLIENT = 'tls-orders';
const SECRET = 'tls-client-secret-do-not-log';
const PASSWORD = 'tls-redis-password-do-not-log';
const taskQueue = `redis-tls-${randomUUID()}`;

let pki: TestPki;
let otherPki: TestPki;
let consumerCertificate: IssuedCertificate;
let redisServer: RedisServer;
let iam: IamEmulator;
let worker: WorkerProcess;
let connection: Connection;
let admin: TokenAdmin;
let redisUrl: string;
const consumers: RedisClient[] = [];

beforeAll(async () => {
  [pki, otherPki] = await Promise.all([createTestPki(), createTestPki('Some Other CA')]);
  const [serverCertificate, workerCertificate] = await Promise.all([pki.serverCertificate(), pki.clientCertificate('token-worker')]);
  consumerCertificate = await pki.clientCertificate('orders-service');
  redisServer = await startRedisServer({
    password: PASSWORD,
    tls: {
      certPath: serverCertificate.certPath,
      keyPath: serverCertificate.keyPath,
      caPath: pki.ca.certPath,
      clientCertPath: workerCertificate.certPath,
      clientKeyPath: workerCertificate.keyPath,
    },
  });
  redisUrl = redisServer.url.replace('rediss://', `rediss://:${PASSWORD}@`);
  iam = await startIamEmulator({ tokenLifetimeSeconds: 300, clients: [{ clientId: CLIENT, clientSecret: SECRET }] });
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue,
    redisUrl,
    workflowBundlePath: inject('workflowBundlePath'),
    env: {
      TLS_CLIENT_SECRET: SECRET,
      // Both reference forms: a mounted file, and PEM in a variable.
      REDIS_TLS_CA: `file:${pki.ca.certPath}`,
      REDIS_TLS_CERT: `file:${workerCertificate.certPath}`,
      REDIS_TLS_KEY: 'env:WORKER_REDIS_TLS_KEY',
      WORKER_REDIS_TLS_KEY: workerCertificate.key,
    },
  });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  admin = new TokenAdmin(new Client({ connection }), { taskQueue });
});

afterAll(async () => {
  await connection
    ?.withDeadline(Date.now() + 10_000, () =>
      new Client({ connection }).workflow.getHandle(workflowIdFor(CLIENT)).terminate('test finished'),
    )
    .catch(() => undefined);
  await connection?.close();
  await worker?.kill9();
  for (const redis of consumers) redis.disconnect();
  await redisServer?.stop();
  await iam?.close();
  await Promise.all([pki?.remove(), otherPki?.remove()]);
});

/** The consumer's environment: the same variables the worker reads, with the consumer's own certificate. */
function consumerEnv(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return {
    REDIS_URL: redisUrl,
    REDIS_TLS_CA: `file:${pki.ca.certPath}`,
    REDIS_TLS_CERT: `file:${consumerCertificate.certPath}`,
    REDIS_TLS_KEY: `file:${consumerCertificate.keyPath}`,
    ...overrides,
  };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `tokenctl <args>` as a separate process with `env` only (besides PATH and HOME); never rejects. */
function tokenctl(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/tokenctl.ts', ...args],
      { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });
}

test('the lifecycle over TLS: the worker writes the token, and the consumer library and tokenctl read it and its refresh', async () => {
  // No plain-text way in: whatever reaches the token went over TLS.
  const plain = new Redis(redisServer.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  plain.on('error', () => undefined);
  await expect(plain.connect().then(() => plain.ping())).rejects.toThrow();
  plain.disconnect();

  await admin.register({
    clientId: CLIENT,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:TLS_CLIENT_SECRET',
  });
  const redis = await createRedisClientFromEnvironment({ maxRetriesPerRequest: 1 }, consumerEnv());
  consumers.push(redis);
  const reader = new TokenReader({ redis, cache: true });
  try {
    const first = await eventually(() => reader.getToken(CLIENT).catch(() => undefined), 90_000, 'the first token over TLS').catch(
      (error: unknown) => {
        throw new Error(`${String(error)}\nWorker output:\n${worker.output()}`);
      },
    );
    expect(first.generation).toBe(1);
    expect(first.accessToken).toBe(iam.issuedTokens.at(-1)?.accessToken);

    // The refresh reaches the reader through its subscription, a second TLS connection.
    await admin.refresh(CLIENT, { reason: 'redis-tls test' });
    const second = await reader.waitForToken(CLIENT, { newerThan: first.generation, timeoutMs: 60_000 }).catch((error: unknown) => {
      throw new Error(`${String(error)}\nWorker output:\n${worker.output()}`);
    });
    expect(second.generation).toBe(2);
    expect(second.accessToken).toBe(iam.issuedTokens.at(-1)?.accessToken);

    const cli = await tokenctl(['token', CLIENT], consumerEnv());
    expect(cli).toMatchObject({ code: 0, stderr: '' });
    expect(cli.stdout.trim()).toBe(second.accessToken);
  } finally {
    await reader.close();
  }
  expect(worker.output()).not.toContain('Redis unreachable');
  expect(worker.output()).not.toContain(PASSWORD);
}, 180_000);

describe('misconfigured TLS fails clearly, naming REDIS_URL without its password', () => {
  const redactedUrl = () => `rediss://[redacted]@127.0.0.1:${redisServer.port}`;

  test('a wrong CA: the worker logs it, tokenctl exits 1, the consumer library says why', { timeout: 180_000 }, async () => {
    const wrongCa = { REDIS_TLS_CA: `file:${otherPki.ca.certPath}` };
    const misconfigured = await startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue: `${taskQueue}-wrong-ca`,
      redisUrl,
      workflowBundlePath: inject('workflowBundlePath'),
      env: { ...consumerEnv(wrongCa), REDIS_URL: redisUrl },
    });
    try {
      // The warning and its fields (on the lines after it in the pretty format).
      const line = await eventually(
        () => misconfigured.output().match(/Redis unreachable[^]*?set REDIS_TLS_CA[^\n]*/)?.[0],
        60_000,
        'the worker to log that Redis is unreachable, and why',
      );
      expect(line).toContain(`REDIS_URL ${redactedUrl()}`);
      expect(line).toContain('set REDIS_TLS_CA to the CA that signed it');
      expect(misconfigured.output()).not.toContain(PASSWORD);
    } finally {
      await misconfigured.kill9();
    }
    expect(misconfigured.output()).not.toContain(PASSWORD);

    const cli = await tokenctl(['token', CLIENT], consumerEnv(wrongCa));
    expect(cli).toMatchObject({ code: 1, stdout: '' });
    expect(cli.stderr).toMatch(
      /^error: cannot connect to Redis at rediss:\/\/\[redacted\]@127\.0\.0\.1:\d+ \(self-signed certificate in certificate chain\)/,
    );
    expect(cli.stderr).toContain('REDIS_URL is not signed by a CA this process trusts: set REDIS_TLS_CA');
    expect(cli.stderr).not.toContain(PASSWORD);

    const message = await firstConnectionError(consumerEnv(wrongCa));
    expect(message).toMatch(new RegExp(`^REDIS_URL ${escape(redactedUrl())}: .*set REDIS_TLS_CA`));
    expect(message).not.toContain(PASSWORD);
  });

  test('no client certificate for a server that requires one: tokenctl and the consumer library name REDIS_TLS_CERT', async () => {
    const noCertificate = { REDIS_TLS_CERT: undefined, REDIS_TLS_KEY: undefined };
    const cli = await tokenctl(['token', CLIENT], consumerEnv(noCertificate));
    expect(cli).toMatchObject({ code: 1, stdout: '' });
    expect(cli.stderr).toMatch(/^error: cannot connect to Redis at rediss:\/\/\[redacted\]@127\.0\.0\.1:\d+ /);
    expect(cli.stderr).toContain('set REDIS_TLS_CERT and REDIS_TLS_KEY');
    expect(cli.stderr).not.toContain(PASSWORD);

    const message = await firstConnectionError(consumerEnv(noCertificate));
    // Node reports the refusal as a reset or as OpenSSL's alert, whose text spans lines.
    expect(message).toMatch(new RegExp(`^REDIS_URL ${escape(redactedUrl())}: .*set REDIS_TLS_CERT and REDIS_TLS_KEY`, 's'));
    expect(message).not.toContain(PASSWORD);
  });

  test('TLS settings without a TLS URL, or a certificate without its key, stop the process at start', async () => {
    const plainUrl = await tokenctl(['token', CLIENT], consumerEnv({ REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${redisServer.port}` }));
    expect(plainUrl).toMatchObject({ code: 1, stdout: '' });
    expect(plainUrl.stderr).toContain('REDIS_TLS_CA, REDIS_TLS_CERT, REDIS_TLS_KEY need a TLS REDIS_URL');
    expect(plainUrl.stderr).not.toContain(PASSWORD);

    const halfCertificate = await tokenctl(['token', CLIENT], consumerEnv({ REDIS_TLS_KEY: undefined }));
    expect(halfCertificate).toMatchObject({ code: 1, stdout: '' });
    expect(halfCertificate.stderr).toContain('REDIS_TLS_CERT and REDIS_TLS_KEY must be given together');

    const unreadable = await tokenctl(['token', CLIENT], consumerEnv({ REDIS_TLS_CA: 'file:/nonexistent/redis-ca.pem' }));
    expect(unreadable).toMatchObject({ code: 1, stdout: '' });
    expect(unreadable.stderr).toContain('REDIS_TLS_CA: file:/nonexistent/redis-ca.pem could not be read: ENOENT');
  });
});

/** The first connection error of a consumer's client, as {@link describeRedisConnectionError} tells it. */
async function firstConnectionError(env: NodeJS.ProcessEnv): Promise<string> {
  const redis = await createRedisClientFromEnvironment({ lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null }, env);
  consumers.push(redis);
  const failed = new Promise<Error>((resolve) => redis.once('error', resolve));
  await redis.connect().catch(() => undefined);
  return describeRedisConnectionError(await failed, readRedisSettings(env));
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
