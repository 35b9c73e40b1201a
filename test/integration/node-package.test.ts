/**
 * The consumer library as a service gets it: `npm pack` of consumers/node, installed into a scratch
 * project outside the repository with its dependencies from the npm registry, and a script there
 * against a real stack (Temporal dev server, redis-server, the worker, the IAM emulator's resource
 * API). The scratch project sees nothing of the repository: not its node_modules, not its sources.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { RESOURCE_PATH, startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { storedToken } from '../support/failure-scenarios.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECRET = 'node-package-secret';
const CLIENT_ID = 'packed-service';

/** What a service writes: read the token, call the API through fetchWithBearerAuth, print what happened. */
const SERVICE_SCRIPT = `
import { createRedisClient, fetchWithBearerAuth, TokenReader } from 'token-lifecycle';

const redis = createRedisClient(process.env.REDIS_URL);
const reader = new TokenReader({ redis, cache: true });
try {
  const token = await reader.getToken(process.env.CLIENT_ID);
  const api = fetchWithBearerAuth({ reader, clientId: process.env.CLIENT_ID, refreshTimeoutMs: 30_000 });
  const response = await api(process.env.API_URL);
  const after = await reader.getToken(process.env.CLIENT_ID);
  console.log(JSON.stringify({
    before: { generation: token.generation, fingerprint: token.fingerprint },
    status: response.status,
    body: await response.json(),
    after: { generation: after.generation, fingerprint: after.fingerprint },
  }));
} finally {
  await reader.close();
  redis.disconnect();
}
`;

/** The same imports, type-checked against the package's declarations. */
const TYPED_SCRIPT = `
import { fetchWithBearerAuth, TokenReader, type CurrentToken } from 'token-lifecycle';
import { withBearerAuth, type BearerAuthOptions } from 'token-lifecycle/got';
import { Redis } from 'ioredis';

const reader = new TokenReader({ redis: new Redis(), cache: true });
const token: Promise<CurrentToken> = reader.getToken('orders-service');
const api: (input: string) => Promise<Response> = fetchWithBearerAuth({ reader, clientId: 'orders-service' });
const options: BearerAuthOptions = { reader, clientId: 'orders-service' };
export { api, options, token, withBearerAuth };
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command` in `cwd` without the npm_* variables of the run that started the tests; never rejects. */
function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: { ...inherited, ...env }, timeout: 300_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });
}

let scratch: string;
let iam: IamEmulator;
let stack: TokenStack;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'token-lifecycle-scratch-'));
  // The dist `npm test` built (pretest): without --ignore-scripts, prepack would build it again,
  // removing it under the test files that run beside this one.
  const packed = await run(
    'npm',
    ['pack', '--workspace', 'token-lifecycle', '--ignore-scripts', '--pack-destination', scratch, '--json'],
    ROOT,
  );
  expect(packed, 'npm pack').toMatchObject({ code: 0 });
  const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
  await writeFile(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch-service', private: true, type: 'module' }));
  // One install from the registry, as a service's would be.
  const installed = await run('npm', ['install', '--no-audit', '--no-fund', join(scratch, filename)], scratch);
  expect(installed, 'npm install of the packed library').toMatchObject({ code: 0 });
  await writeFile(join(scratch, 'service.mjs'), SERVICE_SCRIPT);
  await writeFile(join(scratch, 'typed.ts'), TYPED_SCRIPT);

  iam = await startIamEmulator({ tokenLifetimeSeconds: 300, clients: [{ clientId: CLIENT_ID, clientSecret: SECRET }] });
  stack = await startTokenStack({ env: { PACKED_SECRET: SECRET } });
}, 300_000);

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

test('the installed package is publishable, brings ioredis and no Temporal SDK', async () => {
  const manifest = JSON.parse(await readFile(join(scratch, 'node_modules/token-lifecycle/package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  expect(manifest.private).toBeUndefined();
  expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
  expect(Object.keys(manifest.dependencies as object)).toEqual(['ioredis']);
  expect(manifest.peerDependenciesMeta).toEqual({ got: { optional: true }, '@opentelemetry/api': { optional: true } });

  const files = (await readdir(join(scratch, 'node_modules'), { recursive: true })).map(String);
  expect(files.filter((file) => file.includes('@temporalio'))).toEqual([]);
  // The optional peers are not installed unasked: the script below runs without OpenTelemetry.
  expect(files.filter((file) => file === 'got')).toEqual([]);
  expect(files.filter((file) => file.includes('@opentelemetry'))).toEqual([]);
  expect((await readdir(join(scratch, 'node_modules/token-lifecycle'), { recursive: true })).map(String).sort()).toEqual(
    expect.arrayContaining(['README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/got.d.ts', 'dist/contract.d.ts']),
  );
});

test('its type declarations check in a TypeScript project', async () => {
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const typeRoots = join(ROOT, 'node_modules/@types');
  const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2023'];
  const checked = await run(
    process.execPath,
    [tsc, ...args, '--typeRoots', typeRoots, '--types', 'node', '--skipLibCheck', 'typed.ts'],
    scratch,
  );
  expect(checked).toMatchObject({ code: 0, stdout: '' });
});

test('a script of the scratch project (without OpenTelemetry) reads the token, and recovers from a revoked one after exactly one refresh', async () => {
  await stack.admin.register({
    clientId: CLIENT_ID,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:PACKED_SECRET',
    policy: { minForcedRefreshIntervalMs: 0 },
  });
  const first = await eventually(() => storedToken(stack.redis, CLIENT_ID), 30_000, 'the first token');
  iam.revoke(first.access_token!);
  const revokedAt = Date.now();

  const result = await run(process.execPath, ['service.mjs'], scratch, {
    REDIS_URL: stack.redisServer.url,
    CLIENT_ID,
    API_URL: `${iam.url}${RESOURCE_PATH}`,
  });

  expect(result, result.stderr).toMatchObject({ code: 0 });
  const report = JSON.parse(result.stdout) as { before: { generation: number; fingerprint: string }; status: number; body: unknown };
  expect(report).toMatchObject({
    before: { generation: 1, fingerprint: first.fingerprint },
    status: 200,
    body: { ok: true, clientId: CLIENT_ID },
    after: { generation: 2 },
  });
  const outcomes = iam.resourceRequests
    .filter((entry) => entry.clientId === CLIENT_ID && entry.at >= revokedAt)
    .map((entry) => entry.outcome);
  expect(outcomes).toEqual(['invalid_token', 'ok']);
  expect(iam.requestsFor(CLIENT_ID).filter((entry) => entry.outcome === 'issued')).toHaveLength(2);
  const history = await stack.client.workflow.getHandle(workflowIdFor(CLIENT_ID)).fetchHistory();
  const signals = (history.events ?? []).filter((event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'forceRefresh');
  expect(signals).toHaveLength(1);
});
