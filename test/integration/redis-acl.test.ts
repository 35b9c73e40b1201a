/**
 * Redis ACL users made by `tokenctl grant` (docs/design.md, "Redis access control"): the real
 * worker process connected as its least-privilege user runs the token lifecycle, and consumers
 * using the Node consumer library read only the tokens they were granted. The Redis server's
 * default user is switched off, so every connection is one of these users or the test's admin.
 * `ACL LOG` records every refused command: the worker's user must have none.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { RedisUnavailableError, RefreshRequestError } from 'token-lifecycle';
import { TokenReader } from 'token-lifecycle';
import { findFreePort } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { tokenKey } from '../../shared/redis-layout.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { storedToken, tokenWithGenerationAbove } from '../support/failure-scenarios.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { terminateRunning } from '../support/terminate-running.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LIFETIME_SECONDS = 3;
const SECRET = 'acl-client-secret';
/** The users' passwords, as the environment tokenctl reads its `--password env:…` references from. */
const PASSWORDS = { ADMIN_PW: 'admin-pw-1', WORKER_PW: 'worker-pw-2', READER_PW: 'reader-pw-3', REFRESHER_PW: 'refresher-pw-4' };
const CLIENTS = { a: 'acl-a', b: 'acl-b', forced: 'acl-forced', rejected: 'acl-rejected', purged: 'acl-purged' };

let iam: IamEmulator;
let redisServer: RedisServer;
let admin: Redis;
let worker: WorkerProcess;
let metricsPort: number;
let connection: Connection;
let tokenAdmin: TokenAdmin;
let dir: string;
const taskQueue = `test-acl-${Date.now()}`;
const closers: (() => Promise<unknown> | void)[] = [];

const urlAs = (user: string, password: string, server = redisServer) => `redis://${user}:${password}@127.0.0.1:${server.port}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs tokenctl as operators do, connected to Redis as the admin user; never rejects. */
function tokenctl(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/tokenctl.ts', ...args],
      { cwd: ROOT, env: { ...process.env, ...PASSWORDS, REDIS_URL: urlAs('admin', PASSWORDS.ADMIN_PW), ...env }, timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });
}

async function tokenctlOk(args: string[]): Promise<string> {
  const run = await tokenctl(args);
  expect(run, `tokenctl ${args.join(' ')}`).toMatchObject({ code: 0, stderr: '' });
  return run.stdout;
}

/** A consumer's reader, connected as `user`. */
function readerAs(
  user: string,
  password: string,
  options: { cache?: boolean; reconnect?: boolean } = {},
): { reader: TokenReader; redis: Redis } {
  const redis = new Redis(urlAs(user, password), {
    maxRetriesPerRequest: 1,
    ...(options.reconnect === false && { maxRetriesPerRequest: 0, retryStrategy: () => null }),
  });
  // Refusals reach the test through the commands; without a listener ioredis would print each.
  redis.on('error', () => undefined);
  const reader = new TokenReader({ redis, ...(options.cache !== undefined && { cache: options.cache }) });
  closers.push(async () => {
    await reader.close();
    redis.disconnect();
  });
  return { reader, redis };
}

/** `redis-cli -e` connected as `user` (what a person types); never rejects. */
function redisCliAs(user: string, password: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      'redis-cli',
      ['-e', '-h', '127.0.0.1', '-p', String(redisServer.port), '--user', user, ...args],
      { env: { ...process.env, REDISCLI_AUTH: password }, timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });
}

/** The `ACL LOG` entries of `user`: each is a command Redis refused it. */
async function refusalsOf(user: string): Promise<string[]> {
  const entries = (await admin.call('ACL', 'LOG', '1000')) as unknown[][];
  return entries
    .map((entry) => {
      const fields = new Map<string, unknown>();
      for (let i = 0; i + 1 < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1]);
      return fields;
    })
    .filter((fields) => fields.get('username') === user)
    .map((fields) => `${String(fields.get('reason'))} ${String(fields.get('object'))}`);
}

/**
 * What `ACL GETUSER` says a user may do, comparable across servers: its commands in a fixed order
 * (Redis lists them in no particular one), and its flags without `sanitize-payload`, which
 * `ACL SETUSER … reset` sets and only concerns `RESTORE`, which neither user may run.
 */
function rightsOf(getUser: unknown): Record<string, unknown> {
  const fields = getUser as unknown[];
  const rights: Record<string, unknown> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) rights[String(fields[i])] = fields[i + 1];
  return {
    ...rights,
    flags: (rights.flags as string[]).filter((flag) => flag !== 'sanitize-payload'),
    commands: String(rights.commands).split(' ').sort(),
  };
}

function registration(clientId: string, overrides: Partial<ClientRegistration> = {}): ClientRegistration {
  return { clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:SECRET', ...overrides };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'redis-acl-'));
  iam = await startIamEmulator({
    tokenLifetimeSeconds: LIFETIME_SECONDS,
    clients: Object.values(CLIENTS).map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  redisServer = await startRedisServer();
  // The admin user exists before the default user is switched off: from here on, nothing connects without a user.
  const bootstrap = new Redis(redisServer.url);
  await bootstrap.call('ACL', 'SETUSER', 'admin', 'on', `>${PASSWORDS.ADMIN_PW}`, '~*', '&*', '+@all');
  await bootstrap.call('ACL', 'SETUSER', 'default', 'off');
  bootstrap.disconnect();
  admin = new Redis(urlAs('admin', PASSWORDS.ADMIN_PW));

  await Promise.all([
    tokenctlOk(['grant', 'token-worker', '--worker', '--password', 'env:WORKER_PW']),
    tokenctlOk(['grant', 'reader', '--clients', CLIENTS.a, '--password', 'env:READER_PW']),
    tokenctlOk(['grant', 'refresher', '--clients', `${CLIENTS.a},${CLIENTS.forced}`, '--refresh', '--password', 'env:REFRESHER_PW']),
  ]);

  metricsPort = await findFreePort();
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue,
    redisUrl: urlAs('token-worker', PASSWORDS.WORKER_PW),
    workflowBundlePath: inject('workflowBundlePath'),
    // The expiry gauge (SCAN and a subscription) runs only with metrics on.
    env: { SECRET, WRONG_SECRET: 'not-the-secret', METRICS_PORT: String(metricsPort), LOGIN_BUDGET_MAX_REJECTIONS: '5' },
  });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  tokenAdmin = new TokenAdmin(new Client({ connection }), { taskQueue });
}, 120_000);

afterAll(async () => {
  for (const close of closers) await close();
  if (connection !== undefined) {
    const client = new Client({ connection });
    await terminateRunning(client, taskQueue, 'test finished');
    await connection.close();
  }
  await worker?.stop();
  admin?.disconnect();
  await redisServer?.stop();
  await iam?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('the worker as its least-privilege user', () => {
  test('stores the first token and renews it', async () => {
    await tokenAdmin.register(registration(CLIENTS.a));
    const first = await tokenWithGenerationAbove(admin, CLIENTS.a, 0, 30_000);
    expect(first.client_id).toBe(CLIENTS.a);
    const second = await tokenWithGenerationAbove(admin, CLIENTS.a, 1, LIFETIME_SECONDS * 1000 + 30_000);
    expect(second.access_token).not.toBe(first.access_token);
  });

  test('replaces a token on a refresh request a consumer added to the stream', async () => {
    await tokenAdmin.register(registration(CLIENTS.forced, { policy: { minForcedRefreshIntervalMs: 0, refreshFraction: 0.9 } }));
    iam.setTokenLifetime(60);
    try {
      const { reader } = readerAs('refresher', PASSWORDS.REFRESHER_PW);
      const first = await reader.waitForToken(CLIENTS.forced, { newerThan: 0, timeoutMs: 30_000 });
      const replacement = await reader.replaceRejectedToken(CLIENTS.forced, first, { reason: 'acl test', timeoutMs: 30_000 });
      expect(replacement?.generation).toBeGreaterThan(first.generation);
      expect(replacement?.fingerprint).not.toBe(first.fingerprint);
    } finally {
      iam.setTokenLifetime(LIFETIME_SECONDS);
    }
  });

  test('parks a client whose credentials are rejected, through the failed-login budget', async () => {
    await tokenAdmin.register(registration(CLIENTS.rejected, { secretRef: 'env:WRONG_SECRET' }));
    const status = await eventually(async () => {
      const s = await tokenAdmin.status(CLIENTS.rejected);
      return s.state === 'credentials_rejected' ? s : undefined;
    });
    expect(status.lastError).toMatchObject({ kind: 'credentials_rejected', status: 401 });
    expect(await storedToken(admin, CLIENTS.rejected)).toBeUndefined();
  });

  test('deletes the token of a client removed with purge', async () => {
    await tokenAdmin.register(registration(CLIENTS.purged));
    await tokenWithGenerationAbove(admin, CLIENTS.purged, 0, 30_000);
    expect((await tokenAdmin.remove(CLIENTS.purged, { purge: true })).state).toBe('stopped');
    expect(await storedToken(admin, CLIENTS.purged)).toBeUndefined();
  });

  test('the expiry gauge, which scans and subscribes, reports the stored tokens', async () => {
    await eventually(async () => {
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((response) => response.text());
      return metrics.includes(`client_id="${CLIENTS.a}"`) ? metrics : undefined;
    });
  });

  test('Redis refused the worker nothing, and the worker logged no refusal', async () => {
    expect(await refusalsOf('token-worker')).toEqual([]);
    expect(worker.output()).not.toMatch(/NOPERM|NOAUTH|WRONGPASS/);
  });
});

describe('a consumer user', () => {
  beforeAll(async () => {
    // A token of `b`, which no consumer of this file was granted.
    await tokenAdmin.register(registration(CLIENTS.b));
    await tokenWithGenerationAbove(admin, CLIENTS.b, 0, 30_000);
    await tokenWithGenerationAbove(admin, CLIENTS.a, 0, 30_000);
  });

  test("reads the granted client's token, waits for its announcements, and gets NOPERM for another's", async () => {
    const { reader } = readerAs('reader', PASSWORDS.READER_PW, { cache: true });
    const token = await reader.getToken(CLIENTS.a);
    expect(token.clientId).toBe(CLIENTS.a);
    // The subscription to token-updated works: the renewal is announced to the waiting reader.
    const next = await reader.waitForToken(CLIENTS.a, { newerThan: token.generation, timeoutMs: LIFETIME_SECONDS * 1000 + 30_000 });
    expect(next.generation).toBeGreaterThan(token.generation);

    const refused = await reader.getToken(CLIENTS.b).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RedisUnavailableError);
    expect((refused as Error).message).toMatch(/NOPERM/);
  });

  test("reads the granted client's token with redis-cli HGET, HMGET and HGETALL, and gets NOPERM for another's", async () => {
    const own = tokenKey('oauth:', CLIENTS.a);
    const { reader } = readerAs('reader', PASSWORDS.READER_PW);
    const token = await reader.getToken(CLIENTS.a);

    const hget = await redisCliAs('reader', PASSWORDS.READER_PW, ['HGET', own, 'client_id']);
    expect(hget).toMatchObject({ code: 0, stdout: `${CLIENTS.a}\n` });
    const hmget = await redisCliAs('reader', PASSWORDS.READER_PW, ['HMGET', own, 'client_id', 'token_type']);
    expect(hmget).toMatchObject({ code: 0, stdout: `${CLIENTS.a}\nBearer\n` });
    const hgetall = await redisCliAs('reader', PASSWORDS.READER_PW, ['HGETALL', own]);
    expect(hgetall.code).toBe(0);
    const fields = hgetall.stdout.trimEnd().split('\n');
    const hash = Object.fromEntries(fields.flatMap((value, index) => (index % 2 === 0 ? [[value, fields[index + 1]]] : [])));
    // The contract's eight fields (the worker may add its own, which consumers ignore).
    expect(Object.keys(hash)).toEqual(
      expect.arrayContaining([
        'access_token',
        'client_id',
        'expires_at',
        'fingerprint',
        'generation',
        'obtained_at',
        'scope',
        'token_type',
      ]),
    );
    // The renewal may have replaced the token between the two reads: the generation tells.
    if (Number(hash.generation) === token.generation) expect(hash.access_token).toBe(token.accessToken);

    const other = tokenKey('oauth:', CLIENTS.b);
    for (const args of [
      ['HGET', other, 'access_token'],
      ['HMGET', other, 'access_token'],
      ['HGETALL', other],
    ]) {
      const refused = await redisCliAs('reader', PASSWORDS.READER_PW, args);
      expect(refused.code, args.join(' ')).not.toBe(0);
      expect(refused.stdout + refused.stderr, args.join(' ')).toMatch(/NOPERM/);
    }
    // Read-only: the user's own key cannot be written, nor any other command run on it.
    for (const args of [
      ['HSET', own, 'access_token', 'forged'],
      ['DEL', own],
      ['HKEYS', own],
      ['TYPE', own],
    ]) {
      const refused = await redisCliAs('reader', PASSWORDS.READER_PW, args);
      expect(refused.stdout + refused.stderr, args.join(' ')).toMatch(/NOPERM/);
    }
  });

  test('without --refresh cannot add a refresh request; with it can', async () => {
    const { reader } = readerAs('reader', PASSWORDS.READER_PW);
    const refused = await reader.requestRefresh(CLIENTS.a).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RefreshRequestError);
    expect((refused as Error).message).toMatch(/NOPERM/);

    const { reader: refresher, redis } = readerAs('refresher', PASSWORDS.REFRESHER_PW);
    expect(await refresher.requestRefresh(CLIENTS.a, { reason: 'acl test' })).toMatchObject({ via: 'redis-stream' });
    // Write-only: it cannot read the stream, so not what other consumers asked for.
    await expect(redis.xrange('oauth:refresh-requests', '-', '+')).rejects.toThrow(/NOPERM/);
  });

  test("an update replaces the user's rights; revoke deletes the user and closes its connections", async () => {
    await tokenctlOk(['grant', 'mover', '--clients', CLIENTS.a, '--password', 'env:READER_PW']);
    const { reader, redis } = readerAs('mover', PASSWORDS.READER_PW, { reconnect: false });
    expect((await reader.getToken(CLIENTS.a)).clientId).toBe(CLIENTS.a);

    expect(await tokenctlOk(['grant', 'mover', '--clients', CLIENTS.b, '--password', 'env:READER_PW'])).toMatch(
      /^updated Redis user mover/,
    );
    expect((await reader.getToken(CLIENTS.b)).clientId).toBe(CLIENTS.b);
    await expect(reader.getToken(CLIENTS.a)).rejects.toThrow(/NOPERM/);

    expect(await tokenctlOk(['revoke', 'mover'])).toMatch(/^deleted Redis user mover/);
    await expect(redis.hmget(tokenKey('oauth:', CLIENTS.b), 'access_token')).rejects.toThrow();
    expect(String(await admin.call('CLIENT', 'LIST'))).not.toMatch(/ user=mover /);
    const again = new Redis(urlAs('mover', PASSWORDS.READER_PW), { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    let refusal: Error | undefined;
    again.on('error', (error: Error) => (refusal = error));
    await expect(again.connect()).rejects.toThrow();
    expect(refusal?.message).toMatch(/WRONGPASS/);
    again.disconnect();
    expect(await tokenctl(['revoke', 'mover'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('no Redis user mover') as string,
    });
  });

  test('tokenctl refuses a password on the command line and never prints one', async () => {
    const typed = await tokenctl(['grant', 'typed', '--clients', CLIENTS.a, '--password', 'hunter2-typed']);
    expect(typed.code).toBe(1);
    expect(typed.stderr).toMatch(/--password takes a reference/);
    expect(typed.stderr + typed.stdout).not.toContain('hunter2-typed');

    // Usage errors (exit 2): a consumer's clients or the worker, one of them.
    for (const args of [[], ['--clients', CLIENTS.a, '--worker'], ['--worker', '--refresh']])
      expect(await tokenctl(['grant', 'usage', ...args, '--password', 'env:READER_PW']), args.join(' ')).toMatchObject({ code: 2 });
    // Rule errors name the bad input.
    expect(await tokenctl(['grant', 'default', '--clients', CLIENTS.a, '--password', 'env:READER_PW'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('user name "default" is reserved') as string,
    });

    const printed = await tokenctlOk(['grant', 'printed', '--clients', CLIENTS.a, '--password', 'env:READER_PW', '--print']);
    expect(printed).not.toContain(PASSWORDS.READER_PW);
    // --print connects to nothing: the user does not exist.
    expect(await admin.call('ACL', 'GETUSER', 'printed')).toBeNull();
  });
});

describe('the --print line in a users.acl file', () => {
  let fileServer: RedisServer;
  let fileAdmin: Redis;

  beforeAll(async () => {
    const lines = await Promise.all([
      tokenctlOk(['grant', 'reader', '--clients', CLIENTS.a, '--password', 'env:READER_PW', '--print']),
      tokenctlOk(['grant', 'globber', '--clients', 'acl-*,acl-[ab]', '--password', 'env:READER_PW', '--print']),
    ]);
    const aclFile = join(dir, 'users.acl');
    await writeFile(aclFile, `user default on nopass ~* &* +@all\n${lines.join('')}`);
    fileServer = await startRedisServer({ extraArgs: ['--aclfile', aclFile] });
    fileAdmin = new Redis(fileServer.url);
    for (const clientId of [CLIENTS.a, CLIENTS.b, 'acl-*', 'acl-[ab]'])
      await fileAdmin.hset(tokenKey('oauth:', clientId), 'access_token', `token of ${clientId}`);
  });

  afterAll(async () => {
    fileAdmin?.disconnect();
    await fileServer?.stop();
  });

  test('gives the user the rights tokenctl grant gives it', async () => {
    expect(rightsOf(await fileAdmin.call('ACL', 'GETUSER', 'reader'))).toEqual(rightsOf(await admin.call('ACL', 'GETUSER', 'reader')));
    const redis = new Redis(urlAs('reader', PASSWORDS.READER_PW, fileServer));
    try {
      expect(await redis.hmget(tokenKey('oauth:', CLIENTS.a), 'access_token')).toEqual([`token of ${CLIENTS.a}`]);
      await expect(redis.hmget(tokenKey('oauth:', CLIENTS.b), 'access_token')).rejects.toThrow(/NOPERM/);
    } finally {
      redis.disconnect();
    }
  });

  test('glob characters in client IDs match those clients only', async () => {
    const redis = new Redis(urlAs('globber', PASSWORDS.READER_PW, fileServer));
    try {
      expect(await redis.hmget(tokenKey('oauth:', 'acl-*'), 'access_token')).toEqual(['token of acl-*']);
      expect(await redis.hmget(tokenKey('oauth:', 'acl-[ab]'), 'access_token')).toEqual(['token of acl-[ab]']);
      for (const clientId of [CLIENTS.a, CLIENTS.b])
        await expect(redis.hmget(tokenKey('oauth:', clientId), 'access_token')).rejects.toThrow(/NOPERM/);
    } finally {
      redis.disconnect();
    }
  });
});
