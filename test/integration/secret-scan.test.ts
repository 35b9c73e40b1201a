/**
 * The secret scan (docs/design.md, "No secret in Temporal"): after a run with several clients
 * (client_secret_basic, client_secret_post, private_key_jwt with a key and with an assertion the
 * platform minted), failures (a wrong secret, a 503 and
 * a 429 from the IAM) and forced refreshes (an operator's, and a consumer's through the Redis
 * stream), no client secret, private key, minted assertion, Redis password or issued access token appears in any
 * Temporal history, memo, search attribute or workflow metadata, in the `status` query, in the
 * worker's log (both formats), on `/metrics`, in `tokenctl --json` or in any span the workers
 * exported to Jaeger (docs/design.md, "Traces"); only `tokenctl token` prints a token, which is its
 * purpose.
 *
 * Two worker processes, one per log format, each with its own task queue and clients, share one
 * password-protected redis-server and two IAM emulators (the faults' own, so its 429 opens only
 * its endpoint's breaker: docs/design.md, "The IAM is never hammered").
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { requestRefresh } from 'token-lifecycle';
import { findFreePorts } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { createRedisClient, type RedisClient } from '../../shared/redis-connection.js';
import { workflowIdFor, type TokenStatus } from '../../workflows/messages.js';
import { historiesText, needlesOf } from '../support/history-secrets.js';
import { startJaeger, type JaegerServer } from '../support/jaeger.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const ROOT = join(import.meta.dirname, '..', '..');
const RUN = randomUUID().slice(0, 8);
const FORMATS = ['json', 'pretty'] as const;
type LogFormat = (typeof FORMATS)[number];

/** Each secret random, so a match can only be a leak. */
const BASIC_SECRET = `basic-secret-${randomUUID()}`;
const POST_SECRET = `post-secret-${randomUUID()}`;
const FAULT_SECRET = `fault-secret-${randomUUID()}`;
const RIGHT_SECRET = `right-secret-${randomUUID()}`;
const WRONG_SECRET = `wrong-secret-${randomUUID()}`;
const REDIS_PASSWORD = `redis-password-${randomUUID()}`;
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const PRIVATE_KEY_PEM = key.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;

/** The clients of one worker: one per authentication method, one with a wrong secret, one that meets IAM faults. */
function clientsOf(format: LogFormat) {
  const id = (name: string) => `scan-${format}-${name}-${RUN}`;
  return { basic: id('basic'), post: id('post'), jwt: id('jwt'), minted: id('minted'), wrong: id('wrong'), fault: id('fault') };
}
const allClientIds = (format: LogFormat) => Object.values(clientsOf(format));

interface Deployment {
  format: LogFormat;
  taskQueue: string;
  metricsPort: number;
  worker: WorkerProcess;
  admin: TokenAdmin;
}

let dir: string;
let keyPath: string;
let jwkD: string;
/** The assertions the platform minted for each format's `minted` client (signed with the same key). */
const mintedAssertions: Partial<Record<LogFormat, string>> = {};
const mintedPath = (format: LogFormat) => join(dir, `${format}-minted.jwt`);
let iam: IamEmulator;
/** The fault client's IAM, on a bad day: its 429 opens its endpoint's breaker, which the other clients' endpoint does not share. */
let faultyIam: IamEmulator;
let redisServer: RedisServer;
let redisUrl: string;
let redis: RedisClient;
let connection: Connection;
let temporal: Client;
/** Where both workers send their spans (they trace: OTEL_EXPORTER_OTLP_ENDPOINT). */
let jaeger: JaegerServer;
const deployments: Deployment[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'secret-scan-'));
  keyPath = join(dir, 'jwt-client.pem');
  await writeFile(keyPath, PRIVATE_KEY_PEM, { mode: 0o600 });
  const publicJwk = await exportJWK(key.publicKey);
  // The kid the worker sends: the key's JWK thumbprint (RFC 7638).
  publicJwk.kid = await calculateJwkThumbprint(publicJwk);
  jwkD = (await exportJWK(key.privateKey)).d!;

  iam = await startIamEmulator({
    tokenLifetimeSeconds: 300,
    clients: FORMATS.flatMap((format) => {
      const clients = clientsOf(format);
      return [
        { clientId: clients.basic, clientSecret: BASIC_SECRET, authMethod: 'client_secret_basic' as const },
        { clientId: clients.post, clientSecret: POST_SECRET, authMethod: 'client_secret_post' as const },
        { clientId: clients.jwt, authMethod: 'private_key_jwt' as const, jwks: { keys: [publicJwk] } },
        { clientId: clients.minted, authMethod: 'private_key_jwt' as const, jwks: { keys: [publicJwk] } },
        { clientId: clients.wrong, clientSecret: RIGHT_SECRET },
      ];
    }),
  });
  faultyIam = await startIamEmulator({
    tokenLifetimeSeconds: 300,
    clients: FORMATS.map((format) => ({ clientId: clientsOf(format).fault, clientSecret: FAULT_SECRET })),
  });
  for (const format of FORMATS) {
    const clientId = clientsOf(format).minted;
    // As a platform mints it (a projected service-account token): iss = sub = the client here, as the IAM wants.
    mintedAssertions[format] = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: publicJwk.kid })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(iam.tokenUrl())
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(key.privateKey);
    await writeFile(mintedPath(format), mintedAssertions[format], { mode: 0o600 });
  }
  redisServer = await startRedisServer({ password: REDIS_PASSWORD });
  jaeger = await startJaeger();
  redisUrl = redisServer.url.replace('redis://', `redis://:${REDIS_PASSWORD}@`);
  redis = createRedisClient(redisUrl);
  connection = await Connection.connect({ address: inject('temporalAddress') });
  temporal = new Client({ connection });

  const ports = await findFreePorts(FORMATS.length);
  for (const [index, format] of FORMATS.entries()) {
    const taskQueue = `secret-scan-${format}-${RUN}`;
    const worker = await startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue,
      redisUrl,
      workflowBundlePath: inject('tracedWorkflowBundlePath'),
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint,
        OTEL_SERVICE_NAME: `token-lifecycle-worker-${format}`,
        LOG_FORMAT: format,
        LOG_LEVEL: 'DEBUG',
        METRICS_PORT: String(ports[index]),
        BASIC_SECRET,
        POST_SECRET,
        FAULT_SECRET,
        WRONG_SECRET,
      },
    });
    deployments.push({ format, taskQueue, metricsPort: ports[index]!, worker, admin: new TokenAdmin(temporal, { taskQueue }) });
  }
}, 180_000);

afterAll(async () => {
  for (const { format } of deployments) {
    for (const clientId of allClientIds(format)) {
      await connection
        ?.withDeadline(Date.now() + 10_000, () => temporal.workflow.getHandle(workflowIdFor(clientId)).terminate('test finished'))
        .catch(() => undefined);
    }
  }
  await connection?.close();
  for (const { worker } of deployments) await worker.kill9();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
  await faultyIam?.close();
  await jaeger?.destroy();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Everything that must never leave the worker: secrets, the key (whole, its PEM lines, its JWK `d`), the Redis password, every token issued. */
function secrets(): string[] {
  const tokens = [...iam.issuedTokens, ...faultyIam.issuedTokens].map((token) => token.accessToken);
  return [
    BASIC_SECRET,
    POST_SECRET,
    FAULT_SECRET,
    RIGHT_SECRET,
    WRONG_SECRET,
    REDIS_PASSWORD,
    PRIVATE_KEY_PEM,
    jwkD,
    ...Object.values(mintedAssertions),
    ...tokens,
  ];
}

/** Fails naming `where` and the first characters of the secret when any secret (or part of a PEM key) is in `text`. */
function expectNoSecretsIn(text: string, where: string): void {
  for (const secret of secrets()) {
    for (const needle of needlesOf(secret)) expect(text.includes(needle), `${where} holds a secret (${secret.slice(0, 6)}…)`).toBe(false);
  }
}

/** JSON with every byte field as UTF-8 and as base64, as {@link historiesText} writes histories. */
function textOf(value: unknown): string {
  return JSON.stringify(value, (_key, field: unknown) => {
    if (field instanceof Uint8Array) return `${Buffer.from(field).toString('utf8')} ${Buffer.from(field).toString('base64')}`;
    return typeof field === 'bigint' ? field.toString() : field;
  });
}

async function statusWhere(admin: TokenAdmin, clientId: string, what: string, predicate: (status: TokenStatus) => boolean) {
  return eventually(
    async () => {
      const status = await admin.status(clientId).catch(() => undefined);
      return status !== undefined && predicate(status) ? status : undefined;
    },
    90_000,
    `${clientId}: ${what}`,
  );
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `tokenctl <args>` as operators run it, configured by its environment only; never rejects. */
function tokenctl(taskQueue: string, args: string[]): Promise<Run> {
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TASK_QUEUE: taskQueue,
    REDIS_URL: redisUrl,
  };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/tokenctl.ts', ...args],
      { cwd: ROOT, env, timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });
}

test('a run with several clients, failures and forced refreshes reaches the expected states', { timeout: 300_000 }, async () => {
  await Promise.all(
    deployments.map(async ({ format, admin }) => {
      const clients = clientsOf(format);
      const tokenUrl = iam.tokenUrl();
      // Forced refreshes may follow each other closely here; the interval has tests of its own.
      const policy = { minForcedRefreshIntervalMs: 500 };
      faultyIam.inject({ kind: 'status', status: 503 }, { times: 1, clientId: clients.fault });
      faultyIam.inject({ kind: 'rate_limit', retryAfter: 1 }, { times: 1, clientId: clients.fault });
      await admin.register({ clientId: clients.basic, tokenUrl, authMethod: 'client_secret_basic', secretRef: 'env:BASIC_SECRET', policy });
      await admin.register({ clientId: clients.post, tokenUrl, authMethod: 'client_secret_post', secretRef: 'env:POST_SECRET', policy });
      await admin.register({ clientId: clients.jwt, tokenUrl, authMethod: 'private_key_jwt', keyRef: `file:${keyPath}`, policy });
      await admin.register({
        clientId: clients.minted,
        tokenUrl,
        authMethod: 'private_key_jwt',
        assertionRef: `file:${mintedPath(format)}`,
        policy,
      });
      await admin.register({ clientId: clients.wrong, tokenUrl, authMethod: 'client_secret_basic', secretRef: 'env:WRONG_SECRET', policy });
      await admin.register({
        clientId: clients.fault,
        tokenUrl: faultyIam.tokenUrl(),
        authMethod: 'client_secret_post',
        secretRef: 'env:FAULT_SECRET',
        policy,
      });

      const active = (clientId: string, generation: number) =>
        statusWhere(admin, clientId, `active at generation ${generation}`, (s) => s.state === 'active' && s.generation >= generation);
      await Promise.all([clients.basic, clients.post, clients.jwt, clients.minted, clients.fault].map((clientId) => active(clientId, 1)));
      await statusWhere(admin, clients.wrong, 'credentials_rejected', (s) => s.state === 'credentials_rejected');

      // An operator's refresh (waiting for it, and not), and a consumer's through the Redis stream, with its origin proof.
      await admin.refresh(clients.basic, { reason: 'secret-scan: operator', wait: true });
      await admin.refresh(clients.jwt, { reason: 'secret-scan: operator' });
      await requestRefresh({ redis, prefix: 'oauth:' }, clients.post, { reason: 'secret-scan: consumer' });
      await Promise.all([active(clients.basic, 2), active(clients.jwt, 2), active(clients.post, 2)]);
    }),
  );

  for (const format of FORMATS) {
    const clients = clientsOf(format);
    expect(faultyIam.requestsFor(clients.fault).map((entry) => entry.outcome)).toEqual(['fault:status', 'fault:rate_limit', 'issued']);
    expect(iam.requestsFor(clients.wrong).map((entry) => entry.outcome)).not.toContain('issued');
    expect(iam.requestsFor(clients.jwt).map((entry) => entry.authMethod)).toContain('private_key_jwt');
    expect(iam.requestsFor(clients.minted).map((entry) => entry.outcome)).toEqual(['issued']);
  }
  // Two formats × (basic, post, jwt: two tokens each; minted, fault: one).
  expect(iam.issuedTokens.length + faultyIam.issuedTokens.length).toBeGreaterThanOrEqual(16);
});

describe('no secret, key or token appears', () => {
  test('in any Temporal history of the clients', async () => {
    for (const { format } of deployments) {
      for (const clientId of allClientIds(format)) {
        const text = await historiesText(temporal, workflowIdFor(clientId));
        expect(text).toContain(clientId);
        expectNoSecretsIn(text, `the history of ${clientId}`);
      }
    }
  });

  test("in any workflow's description (memo, search attributes), metadata or status query", async () => {
    for (const { format, admin } of deployments) {
      for (const clientId of allClientIds(format)) {
        const handle = temporal.workflow.getHandle(workflowIdFor(clientId));
        const description = await handle.describe();
        expect(Object.keys(description.searchAttributes).length, `${clientId}'s search attributes`).toBeGreaterThan(0);
        expectNoSecretsIn(textOf(description), `the description of ${clientId}`);
        const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
        expect(metadata.currentDetails).toContain(clientId);
        expectNoSecretsIn(textOf(metadata), `the metadata of ${clientId}`);
        expectNoSecretsIn(textOf(await admin.status(clientId)), `the status of ${clientId}`);
      }
    }
  });

  test('in the worker log, in the JSON and the pretty format', () => {
    for (const { format, worker } of deployments) {
      const output = worker.output();
      for (const clientId of allClientIds(format)) expect(output, `the ${format} log names ${clientId}`).toContain(clientId);
      const jsonLines = output.split('\n').filter((line) => line.startsWith('{"time":'));
      if (format === 'json') expect(jsonLines.length).toBeGreaterThan(10);
      else expect(jsonLines).toEqual([]);
      expectNoSecretsIn(output, `the ${format} worker log`);
    }
  });

  test('in any span the workers exported: every attribute, event and status message', async () => {
    for (const { format, worker } of deployments) {
      const service = `token-lifecycle-worker-${format}`;
      // The worker batches its spans (every 5 s by default); the IAM requests of the run must be there.
      const spans = await eventually(
        async () => {
          const found = await jaeger.spansOf(service, 10_000).catch(() => []);
          return found.filter((span) => span.name === 'token request').length >= 6 ? found : undefined;
        },
        60_000,
        `the spans of the ${format} worker in Jaeger`,
      );
      expect(spans.some((span) => span.tags['token_lifecycle.outcome'] === 'credentials_rejected')).toBe(true);
      expect(spans.some((span) => span.name === 'token write')).toBe(true);
      const text = JSON.stringify(spans.map((span) => ({ name: span.name, tags: span.tags, logs: span.logs })));
      expectNoSecretsIn(text, `a span of the ${format} worker`);
      expect(worker.output(), `the ${format} worker says it traces`).toContain(service);
    }
  });

  test('on /metrics', async () => {
    for (const { format, metricsPort } of deployments) {
      const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(response.status).toBe(200);
      const text = await response.text();
      expect(text).toContain('token_requests_total');
      expect(text).toContain(clientsOf(format).basic);
      expectNoSecretsIn(text, `/metrics of the ${format} worker`);
    }
  });

  test('in tokenctl --json output, while tokenctl token prints the token, its one purpose', { timeout: 240_000 }, async () => {
    for (const { format, taskQueue } of deployments) {
      const clients = clientsOf(format);
      // Each call is a process start-up: the listing commands, and the status of a healthy and a rejected client.
      const [list, statusOfAll, ...statusOfOne] = await Promise.all([
        tokenctl(taskQueue, ['list', '--json']),
        tokenctl(taskQueue, ['status', '--json']),
        tokenctl(taskQueue, ['status', clients.jwt, '--json']),
        tokenctl(taskQueue, ['status', clients.wrong, '--json']),
      ]);
      for (const run of [list, statusOfAll, ...statusOfOne]) {
        expect(run).toMatchObject({ code: 0, stderr: '' });
        expectNoSecretsIn(run.stdout, `tokenctl --json (${format})`);
      }
      for (const clientId of allClientIds(format)) {
        expect(list.stdout).toContain(clientId);
        expect(statusOfAll.stdout).toContain(clientId);
      }
      expect(statusOfOne.map((run) => (JSON.parse(run.stdout) as TokenStatus).state)).toEqual(['active', 'credentials_rejected']);

      const token = await tokenctl(taskQueue, ['token', clients.basic]);
      expect(token).toMatchObject({ code: 0, stderr: '' });
      const current = iam.issuedTokens.filter((issued) => issued.clientId === clients.basic).at(-1)?.accessToken;
      expect(token.stdout.trim()).toBe(current);
      // The scan finds what it looks for: here it must.
      expect(() => expectNoSecretsIn(token.stdout, 'tokenctl token')).toThrow(/tokenctl token holds a secret/);
    }
  });
});
