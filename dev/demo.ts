/**
 * `make demo`: the whole stack on this machine, for a first look.
 * - the Temporal dev server with its Web UI (state kept in .cache/demo/temporal.db),
 * - Redis (the one on 127.0.0.1:6379 if it answers, else a redis-server started here), under a
 *   key prefix of the demo's own,
 * - the IAM emulator with the demo clients, the worker (its log in .cache/demo/worker.log), and
 *   the demo registrations,
 * then it prints where to look, one line per client rejected on purpose, and what to try. Ctrl-C
 * stops everything it started and removes its keys from a Redis it did not start. The DEMO_*
 * variables below move its ports and state folder (test/dev/demo.test.ts runs it beside a running
 * demo and runs what it prints).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { AlreadyRegisteredError, TokenAdmin } from '../client/admin.js';
import { parseEnvironment } from '../shared/settings.js';
import type { ClientRegistration } from '../workflows/registration.js';
import { exitDescription, stopChild } from './child-process.js';
import { portAnswers } from './free-port.js';
import { loadEmulatorConfig } from './iam-emulator/config.js';
import { startIamEmulator } from './iam-emulator/emulator.js';
import { WORKER_STOP_GRACE_MS } from '../worker/token-workers.js';
import { startTemporalDevServer } from './temporal-dev-server.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const port = z.coerce.number().int().min(1).max(65_535);
/** Where the demo listens; the defaults are the usual local ports, the variables move them. */
const demoSettingsSchema = z.object({
  DEMO_TEMPORAL_PORT: port.default(7233),
  DEMO_UI_PORT: port.default(8233),
  /** A Redis that answers here is used; otherwise the demo starts redis-server on it. */
  DEMO_REDIS_PORT: port.default(6379),
  /** @default the port in demo-clients.yaml (8180) */
  DEMO_IAM_PORT: port.optional(),
  METRICS_PORT: port.default(9464),
  /** The dev server's database and log: a restarted demo finds its workflows again. */
  DEMO_STATE_DIR: z
    .string()
    .min(1)
    .default(join(root, '.cache', 'demo')),
});

/**
 * Secrets the demo worker resolves (env:NAME). SHIPPING_SECRET is wrong on purpose. The login
 * proof key is fixed, so a restarted demo's worker still knows the credentials the IAM accepted.
 */
const WORKER_SECRETS = {
  ORDERS_SECRET: 'demo-orders-secret',
  BILLING_SECRET: 'demo billing+secret:100%',
  REPORTING_SECRET: 'demo-reporting-secret',
  LEGACY_SECRET: 'demo-legacy-secret',
  SHIPPING_SECRET: 'demo-shipping-secret',
  DEMO_LOGIN_PROOF_KEY: 'demo-login-proof-key, not a secret',
};

/** Every Redis name the demo's worker writes starts with it: Ctrl-C removes them all, and nothing else. */
const KEY_PREFIX = 'token-demo:';

/** The clients the IAM emulator rejects, and why (dev/iam-emulator/demo-clients.yaml). */
const REJECTED_ON_PURPOSE: Record<string, string> = {
  'legacy-batch': 'service accounts are off at the IAM',
  'shipping-service': 'the worker holds the secret from before a rotation',
};

/**
 * What to stop at the end, in reverse order. A child gets SIGKILL if it has not exited
 * `WORKER_STOP_GRACE_MS` after SIGTERM: Ctrl-C must end the demo whatever state a child is in.
 */
const started: Array<() => Promise<unknown> | void> = [];

/**
 * Ctrl-C (or SIGTERM) at any moment, start-up included. The listeners stay: Ctrl-C reaches make,
 * npm and tsx too, and tsx passes it on, so a second SIGINT may follow the first. It must not end
 * this process before what it started is stopped.
 */
const interrupted = new Promise<void>((resolve) => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => resolve());
});

class Interrupted extends Error {}

/** A start-up step, given up for Ctrl-C. What it starts after that is killed when this process exits. */
async function unlessInterrupted<T>(step: Promise<T>): Promise<T> {
  const result = await Promise.race([step.then((value) => ({ value })), interrupted.then(() => null)]);
  if (result === null) throw new Interrupted();
  return result.value;
}

async function main(): Promise<void> {
  const {
    DEMO_TEMPORAL_PORT: TEMPORAL_PORT,
    DEMO_UI_PORT: UI_PORT,
    DEMO_REDIS_PORT: REDIS_PORT,
    DEMO_IAM_PORT,
    METRICS_PORT,
    DEMO_STATE_DIR: stateDir,
  } = parseEnvironment(demoSettingsSchema, process.env);
  mkdirSync(stateDir, { recursive: true });
  const temporalAddress = `127.0.0.1:${TEMPORAL_PORT}`;
  if (await portAnswers(TEMPORAL_PORT)) {
    throw new Error(`Port ${TEMPORAL_PORT} is taken: stop what runs there, or set DEMO_TEMPORAL_PORT and DEMO_UI_PORT`);
  }
  console.log('Starting the Temporal dev server…');
  const temporal = await unlessInterrupted(
    startTemporalDevServer({
      port: TEMPORAL_PORT,
      uiPort: UI_PORT,
      dbFilename: join(stateDir, 'temporal.db'),
      logFile: join(stateDir, 'temporal.log'),
      // Ctrl-C reaches the whole foreground group at once: the worker must still find its server
      // and its Redis while it shuts down, so those two are stopped by this process, after it.
      ownProcessGroup: true,
    }),
  );
  started.push(() => temporal.stop());

  const redisStarted = !(await portAnswers(REDIS_PORT));
  if (redisStarted) {
    console.log(`Starting redis-server on 127.0.0.1:${REDIS_PORT}…`);
    const redis = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
      detached: true, // as the Temporal server above
    });
    const missing = new Promise<never>((_, reject) =>
      redis.once('error', (err) =>
        reject(
          new Error(
            `No Redis answers on 127.0.0.1:${REDIS_PORT} and redis-server cannot be started (${err.message}): install it (Debian: sudo apt-get install redis-server), or set DEMO_REDIS_PORT to a Redis's port`,
          ),
        ),
      ),
    );
    process.once('exit', () => redis.kill('SIGKILL'));
    started.push(() => stopChild(redis, { graceMs: WORKER_STOP_GRACE_MS }));
    await unlessInterrupted(Promise.race([waitFor(() => portAnswers(REDIS_PORT), 'redis-server'), missing]));
  } else {
    // Stopped before this Redis is left (the steps stop in reverse): nothing writes after it.
    started.push(() => removeDemoKeys(REDIS_PORT));
  }

  const config = await loadEmulatorConfig(join(root, 'dev', 'iam-emulator', 'demo-clients.yaml'));
  const iamPort = DEMO_IAM_PORT ?? config.port;
  const iam = await startIamEmulator({ ...config, port: iamPort }).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    throw new Error(`Port ${iamPort} is taken: stop what runs there, or set DEMO_IAM_PORT`);
  });
  started.push(() => iam.close());

  // The worker's log goes to a file: the rejected clients' warnings are expected, and the terminal
  // keeps what a person needs (where to look, what to try).
  const workerLog = join(stateDir, 'worker.log');
  console.log(`Starting the worker (its log: ${shown(workerLog)})…`);
  const log = createWriteStream(workerLog, { flags: 'a' });
  await once(log, 'open');
  const worker = spawn(process.execPath, [join(root, 'dist', 'worker', 'main.js')], {
    stdio: ['ignore', log, log],
    env: {
      ...process.env,
      ...WORKER_SECRETS,
      TEMPORAL_ADDRESS: temporalAddress,
      REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}`,
      TOKEN_KEY_PREFIX: KEY_PREFIX,
      METRICS_PORT: String(METRICS_PORT),
      LOGIN_PROOF_KEY: 'env:DEMO_LOGIN_PROOF_KEY',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'INFO',
    },
  });
  started.push(() => stopChild(worker, { graceMs: WORKER_STOP_GRACE_MS }));

  const connection = await unlessInterrupted(Connection.connect({ address: temporalAddress }));
  started.push(() => connection.close());
  const admin = new TokenAdmin(new Client({ connection }));
  const tokenUrl = iam.tokenUrl();
  const registrations: ClientRegistration[] = [
    {
      clientId: 'orders-service',
      tokenUrl,
      authMethod: 'client_secret_basic',
      secretRef: 'env:ORDERS_SECRET',
      scope: 'orders:read orders:write',
    },
    { clientId: 'billing-service', tokenUrl, authMethod: 'client_secret_basic', secretRef: 'env:BILLING_SECRET', scope: 'billing' },
    {
      clientId: 'reporting-service',
      tokenUrl: iam.legacyTokenUrl(),
      authMethod: 'client_secret_post',
      secretRef: 'env:REPORTING_SECRET',
      scope: 'reports:read',
    },
    { clientId: 'legacy-batch', tokenUrl, authMethod: 'client_secret_post', secretRef: 'env:LEGACY_SECRET' },
    { clientId: 'shipping-service', tokenUrl, authMethod: 'client_secret_basic', secretRef: 'env:SHIPPING_SECRET' },
  ];
  /** Registers a client; a demo restarted on its saved state repoints it and reports true. */
  const registerOrRepoint = async (registration: ClientRegistration): Promise<boolean> => {
    try {
      await admin.register(registration);
      return false;
    } catch (err) {
      if (!(err instanceof AlreadyRegisteredError)) throw err;
      await admin.reconfigure(registration.clientId, { tokenUrl: registration.tokenUrl });
      return true;
    }
  };
  // The good clients first, each until its first token: the two wrong ones then spend the IAM
  // host's failed-login budget, and the good ones' renewals, proven, never wait for it
  // (docs/design.md, "The failed-login budget").
  const [good, wrong] = [registrations.slice(0, 3), registrations.slice(3)];
  await unlessInterrupted(
    Promise.all(
      good.map(async (registration) => {
        // A restarted demo's tokens were removed when it stopped: a new one now, not at the renewal.
        if (await registerOrRepoint(registration)) await admin.refresh(registration.clientId, { wait: true, reason: 'demo restarted' });
        else await firstToken(admin, registration.clientId);
      }),
    ),
  );
  await unlessInterrupted(Promise.all(wrong.map(registerOrRepoint)));
  const rejections = await unlessInterrupted(Promise.all(wrong.map(({ clientId }) => rejection(admin, clientId))));

  const ui = `${temporal.uiUrl}/namespaces/default/workflows`;
  const byState = (state: string) => `${ui}?query=${encodeURIComponent(`TokenState="${state}"`)}`;
  const apiUrl = `${iam.url}/api/resource`;
  console.log(`
The token lifecycle demo is running.

  Temporal UI        ${ui}
    parked           ${byState('credentials_rejected')}
    backing off      ${byState('backing_off')}
  IAM emulator       ${tokenUrl}
  worker metrics     http://127.0.0.1:${METRICS_PORT}/metrics
  worker log         ${shown(workerLog)}

Rejected on purpose:
${rejections.map((line) => `  ${line}`).join('\n')}

Try, in another terminal in this folder (bin/tokenctl is the built CLI without npx's start-up):
  export TEMPORAL_ADDRESS=${temporalAddress} REDIS_URL=redis://127.0.0.1:${REDIS_PORT} TOKEN_KEY_PREFIX=${KEY_PREFIX} API_URL=${apiUrl}
  bin/tokenctl list
  bin/tokenctl token orders-service
  bin/tokenctl status shipping-service
  bin/tokenctl refresh orders-service --wait
  curl -s -H "Authorization: Bearer $(bin/tokenctl token orders-service)" $API_URL
  npx tsx consumers/node/examples/got-with-token.ts
  curl -s http://127.0.0.1:${METRICS_PORT}/metrics | grep '^token_'

Ctrl-C stops everything the demo started${redisStarted ? '' : ` and removes its keys (${KEY_PREFIX}*) from the Redis on port ${REDIS_PORT}`}.`);

  const ended = await Promise.race([interrupted.then(() => 'signal' as const), once(worker, 'exit').then(() => 'worker' as const)]);
  if (ended === 'worker') {
    console.error(`\nThe worker exited (${exitDescription(worker)}): see ${shown(workerLog)}.`);
    process.exitCode = 1;
  }
}

/** A path as a person would type it here: relative inside this folder, absolute outside. */
function shown(path: string): string {
  const fromHere = relative(process.cwd(), path);
  return fromHere.startsWith('..') ? path : fromHere;
}

/** Removes every key the demo's worker wrote (its prefix only) from a Redis the demo did not start. */
async function removeDemoKeys(port: number): Promise<void> {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let removed = 0;
    for await (const keys of redis.scanStream({ match: `${KEY_PREFIX}*`, count: 1000 }) as AsyncIterable<string[]>) {
      if (keys.length > 0) removed += await redis.del(...keys);
    }
    console.log(`Removed the demo's ${removed} keys (${KEY_PREFIX}*) from the Redis on port ${port}.`);
  } catch (err) {
    console.error(`The demo's keys (${KEY_PREFIX}*) could not be removed from the Redis on port ${port}: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

async function shutdown(): Promise<void> {
  if (started.length === 0) return;
  console.log('\nStopping the demo…');
  for (const stopOne of started.reverse()) await Promise.resolve(stopOne()).catch(() => undefined);
  console.log('Stopped.');
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

main()
  .catch((err: unknown) => {
    if (err instanceof Interrupted) return;
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await shutdown();
    // Now, not when the event loop empties: a step given up for Ctrl-C may still be waiting.
    process.exit();
  });

/**
 * Waits (a minute at most) until a client rejected on purpose is parked, and says so in one line:
 * the worker's warnings about it are in its log.
 */
async function rejection(admin: TokenAdmin, clientId: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await admin.status(clientId).catch(() => null);
    const why = REJECTED_ON_PURPOSE[clientId] ?? 'rejected';
    if (status?.state === 'credentials_rejected')
      return `${clientId.padEnd(18)} credentials_rejected (${why}): ${status.lastError?.message ?? ''}`;
    if (Date.now() > deadline)
      return `${clientId.padEnd(18)} ${status?.state ?? 'not started'} after a minute, not yet rejected: see tokenctl status ${clientId}`;
    await delay(250);
  }
}

/** Waits (a minute at most) until the client has a token, so what follows sees it proven. */
async function firstToken(admin: TokenAdmin, clientId: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  const generation = () =>
    admin.status(clientId).then(
      (status) => status.generation,
      () => 0,
    );
  while (Date.now() < deadline && (await generation()) === 0) await delay(250);
}
