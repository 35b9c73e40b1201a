/**
 * tokenctl as operators and scripts run it: a separate process (`node --import tsx cli/tokenctl.ts`)
 * configured only by its environment, against the real Temporal dev server, a real redis-server
 * and the IAM emulator. Each call costs a process start-up, so independent calls run together.
 */
import { execFile } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { NotRegisteredError, type ApplyResult, type PatchRetirement } from '../../client/admin.js';
import { findFreePorts } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor, type TokenStatus } from '../../workflows/messages.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLIENT = 'cli-orders';
const SECRET = 'cli-secret';
/** Clients of the `apply` tests, each with its own secret in the worker's environment. */
const APPLIED = ['apply-a', 'apply-b', 'apply-c'] as const;
const appliedSecret = (clientId: string) => `${clientId}-secret`;
const appliedSecretEnv = (clientId: string) => clientId.toUpperCase().replace('-', '_');
/** Clients of the many-clients `apply` test (more than `apply` handles at once), sharing one secret. */
const BULK = Array.from({ length: 60 }, (_, i) => `bulk-${String(i).padStart(2, '0')}`);
const BULK_SECRET = 'bulk-secret';

let iam: IamEmulator;
let stack: TokenStack;
let dir: string;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: 300,
    clients: [
      { clientId: CLIENT, clientSecret: SECRET },
      ...APPLIED.map((clientId) => ({ clientId, clientSecret: appliedSecret(clientId), scopes: ['orders.read', 'orders.write'] })),
      ...BULK.map((clientId) => ({ clientId, clientSecret: BULK_SECRET, scopes: ['orders.read'] })),
    ],
  });
  stack = await startTokenStack({
    env: { S: SECRET, BULK_SECRET, ...Object.fromEntries(APPLIED.map((id) => [appliedSecretEnv(id), appliedSecret(id)])) },
  });
  dir = await mkdtemp(join(tmpdir(), 'tokenctl-apply-'));
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

interface Run {
  /** The exit code, or -1 when the process was killed (e.g. by the timeout). */
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs tokenctl with the stack's settings in its environment (overridden by `env`); never rejects.
 * `nodeOptions` go to Node.js before the script.
 */
function tokenctl(args: string[], env: Record<string, string> = {}, nodeOptions: string[] = []): Promise<Run> {
  const settings = {
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TASK_QUEUE: stack.taskQueue,
    REDIS_URL: stack.redisServer.url,
    TOKEN_KEY_PREFIX: 'oauth:',
  };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...nodeOptions, '--import', 'tsx', 'cli/tokenctl.ts', ...args],
      { cwd: ROOT, env: { ...process.env, ...settings, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const COMMANDS = [
  'register',
  'reconfigure',
  'apply',
  'refresh',
  'status',
  'list',
  'patches',
  'resume',
  'remove',
  'token',
  'jwks',
  'grant',
  'revoke',
] as const;

describe('usage', () => {
  test('--help exits 0 and describes every command, on the program and on each command', async () => {
    const [program, ...commands] = await Promise.all([tokenctl(['--help']), ...COMMANDS.map((command) => tokenctl([command, '--help']))]);
    expect(program).toMatchObject({ code: 0, stderr: '' });
    for (const command of COMMANDS) expect(program.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    commands.forEach((run, index) => {
      expect(run, COMMANDS[index]).toMatchObject({ code: 0, stderr: '' });
      expect(run.stdout).toMatch(new RegExp(`^Usage: tokenctl ${COMMANDS[index]} `));
    });
    for (const flag of [
      '--token-url <url>',
      '--issuer <url>',
      '--auth <method>',
      '--key <ref>',
      '--cert <ref>',
      '--ca <ref>',
      '--proxy <url>',
      '--assertion-audience <url>',
      '--grant <grant>',
      '--assertion-subject <sub>',
    ]) {
      expect(commands[COMMANDS.indexOf('register')]!.stdout).toContain(flag);
    }
    // apply's help documents the file format, secrets as references included.
    expect(commands[COMMANDS.indexOf('apply')]!.stdout).toMatch(
      /defaults:\n[\s\S]*clients:\n\s+- clientId: orders-api\n\s+secretRef: env:ORDERS_API_SECRET/,
    );
  });

  test('wrong usage exits 2 and says what was wrong', async () => {
    const url = 'http://127.0.0.1:1/token';
    const [unknownCommand, missingEndpoint, missingSecret, badChoice] = await Promise.all([
      tokenctl(['frobnicate']),
      tokenctl(['register', CLIENT, '--secret', 'env:S']),
      tokenctl(['register', CLIENT, '--token-url', url]),
      tokenctl(['register', CLIENT, '--token-url', url, '--secret', 'env:S', '--auth', 'digest']),
    ]);
    expect(unknownCommand).toMatchObject({ code: 2, stdout: '' });
    expect(unknownCommand.stderr).toContain("error: unknown command 'frobnicate'");
    // One of two options is required: the registration's rule, so it is listed with the others,
    // and it is wrong usage all the same, as a missing --secret is.
    expect(missingEndpoint).toMatchObject({ code: 2, stdout: '' });
    expect(missingEndpoint.stderr).toContain('  - --token-url: is required, or --issuer instead (one of the two)\n');
    expect(missingSecret).toMatchObject({ code: 2, stdout: '' });
    expect(missingSecret.stderr).toContain('  - --secret: client_secret_basic needs a client secret reference\n');
    expect(badChoice).toMatchObject({ code: 2, stdout: '' });
    expect(badChoice.stderr).toContain(
      "argument 'digest' is invalid. Allowed choices are client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, self_signed_tls_client_auth (or basic, post for short).",
    );

    const [applyWithoutFile, unknownOption, badState] = await Promise.all([
      tokenctl(['apply']),
      tokenctl(['apply', 'clients.yaml', '--purne']),
      tokenctl(['list', '--state', 'sleeping']),
    ]);
    expect(applyWithoutFile).toMatchObject({ code: 2, stdout: '' });
    expect(applyWithoutFile.stderr).toContain("error: missing required argument 'file'");
    expect(unknownOption).toMatchObject({ code: 2, stdout: '' });
    expect(unknownOption.stderr).toContain("error: unknown option '--purne'\n(Did you mean one of --prune, --purge?)");
    expect(badState).toMatchObject({ code: 2, stdout: '' });
    expect(badState.stderr).toContain('Allowed choices are acquiring, active, backing_off, credentials_rejected, stopped.');
  });

  test('bin/tokenctl runs the built CLI from any directory, without npx (`npm test` builds it)', async () => {
    const { stdout } = await promisify(execFile)(join(ROOT, 'bin', 'tokenctl'), ['list', '--help'], { cwd: tmpdir() });
    expect(stdout).toMatch(/^Usage: tokenctl list /);
  });

  test('--help and token load only what they need: token no Temporal client and no schema library, --help not even Redis', async () => {
    const packagesLoaded = async (args: string[]): Promise<Set<string>> => {
      const file = join(dir, `modules-${args.join('-')}.txt`);
      // A module hook that appends the URL of every module loaded to `file`.
      const hook = `import { registerHooks } from 'node:module'; import { appendFileSync } from 'node:fs';
        registerHooks({ load(url, context, next) { appendFileSync(${JSON.stringify(file)}, url + '\\n'); return next(url, context); } });`;
      const run = await tokenctl(args, {}, ['--import', `data:text/javascript,${encodeURIComponent(hook)}`]);
      expect(run.code, run.stderr).not.toBe(-1);
      const urls = (await readFile(file, 'utf8')).split('\n');
      return new Set(urls.map((url) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1]).filter((name) => name !== undefined));
    };
    const [help, token] = await Promise.all([packagesLoaded(['--help']), packagesLoaded(['token', CLIENT])]);

    expect(token).toContain('ioredis');
    for (const loaded of [help, token]) {
      expect([...loaded].filter((name) => name === 'zod' || name.startsWith('@temporalio/'))).toEqual([]);
    }
    expect(help).not.toContain('ioredis');
  });
});

describe('failures', () => {
  test('an invalid registration exits 2 (wrong usage), names every wrong option, never echoes the secret, and registers nothing', async () => {
    const run = await tokenctl(['register', 'bad-client', '--token-url', 'not-a-url', '--secret', 'plain-secret']);

    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('error: invalid registration, nothing was registered:\n');
    expect(run.stderr).toContain('  - --token-url: must be an http(s) URL\n');
    expect(run.stderr).toContain('  - --secret: must be env:NAME or file:/absolute/path');
    expect(run.stderr).not.toContain('plain-secret');
    await expect(stack.admin.status('bad-client')).rejects.toThrow(NotRegisteredError);
  });

  test('every mistake of a method and its references is named by its flag', async () => {
    const run = await tokenctl([
      'register',
      'bad-client',
      '--issuer',
      'http://127.0.0.1:1/realms/x',
      '--token-url',
      'http://127.0.0.1:1/token',
      '--auth',
      'private_key_jwt',
      '--secret',
      'env:S',
      '--signing-alg',
      'HS256',
      '--proxy',
      'http://user:hunter2@proxy:3128',
    ]);

    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(
      run.stderr
        .split('\n')
        .filter((line) => line.startsWith('  - '))
        .sort(),
    ).toEqual(
      [
        '  - --issuer: give --token-url or --issuer, not both',
        '  - --key: private_key_jwt needs a key reference',
        '  - --proxy: must not contain credentials: give an authenticated proxy to the worker as HTTPS_PROXY',
        '  - --secret: private_key_jwt does not use a client secret reference: remove it',
        '  - --signing-alg: private_key_jwt signs with RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA',
      ].sort(),
    );
    expect(run.stderr).not.toContain('hunter2');
  });

  test("the jwt-bearer grant's mistakes are named by their flags", async () => {
    const run = await tokenctl([
      'register',
      'bad-grant',
      '--token-url',
      'http://127.0.0.1:1/token',
      '--grant',
      'jwt-bearer',
      '--auth',
      'tls_client_auth',
      '--cert',
      'file:/c',
      '--key',
      'file:/k',
      '--assertion',
      'file:/a',
      '--assertion-subject',
      'svc',
    ]);

    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr.split('\n').filter((line) => line.startsWith('  - '))).toEqual([
      '  - --auth: the jwt-bearer grant authenticates the client with client_secret_basic, client_secret_post, private_key_jwt',
      '  - --assertion-subject: --assertion names an assertion the platform signed: remove it',
    ]);
    expect(await tokenctl(['register', 'bad-grant', '--token-url', 'http://127.0.0.1:1/token', '--grant', 'password'])).toMatchObject({
      code: 2,
    });
  });

  test('status of an unknown client exits 1 naming it', async () => {
    const run = await tokenctl(['status', 'nope']);

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toMatch(/^error: Client 'nope' is not registered .*tokenctl register nope/);
  });

  test('unreachable Temporal and Redis exit 1 naming the address and the variable that sets it', async () => {
    const [temporalPort, redisPort] = await findFreePorts(2);
    const [temporal, redis] = await Promise.all([
      tokenctl(['status', CLIENT], { TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}` }),
      tokenctl(['token', CLIENT], { REDIS_URL: `redis://127.0.0.1:${redisPort}` }),
    ]);

    expect(temporal).toMatchObject({ code: 1, stdout: '' });
    expect(temporal.stderr).toMatch(new RegExp(`^error: cannot reach Temporal at 127\\.0\\.0\\.1:${temporalPort} .*set TEMPORAL_ADDRESS`));
    expect(redis).toMatchObject({ code: 1, stdout: '' });
    expect(redis.stderr).toMatch(
      new RegExp(`^error: cannot connect to Redis at redis://127\\.0\\.0\\.1:${redisPort} \\(connect ECONNREFUSED .*set REDIS_URL`),
    );
  });

  test('an unreadable TLS file exits 1 naming the variable, not as an unreachable Temporal', async () => {
    const run = await tokenctl(['list'], { TEMPORAL_TLS_CA_PATH: '/nonexistent/ca.pem' });

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toBe(
      'error: Invalid settings:\n  - TEMPORAL_TLS_CA_PATH: cannot read /nonexistent/ca.pem (ENOENT)\nFix these environment variables and try again.\n',
    );
  });
});

test("a client's life from the command line: register, status, token, list, refresh --wait, remove --purge", async () => {
  const registered = await tokenctl([
    'register',
    CLIENT,
    '--token-url',
    iam.tokenUrl(),
    '--secret',
    'env:S',
    '--auth',
    'post',
    '--policy',
    '{"minForcedRefreshIntervalMs":0}',
  ]);
  expect(registered).toMatchObject({ code: 0, stderr: '' });
  expect(registered.stdout).toMatch(new RegExp(`^Registered ${CLIENT}: [^\\n]*client_secret_post[^\\n]*\\n$`));

  const status = await eventually(
    async () => {
      const run = await tokenctl(['status', CLIENT, '--json']);
      expect(run).toMatchObject({ code: 0, stderr: '' });
      const parsed = JSON.parse(run.stdout) as TokenStatus;
      return parsed.state === 'active' ? parsed : undefined;
    },
    20_000,
    `${CLIENT} active`,
  );
  expect(status).toMatchObject({ clientId: CLIENT, generation: 1, consecutiveFailures: 0, lastError: null });

  const stored = await stack.store.read(CLIENT);
  expect(stored?.generation).toBe(1);
  const [token, tokenJson, readable] = await Promise.all([
    tokenctl(['token', CLIENT]),
    tokenctl(['token', CLIENT, '--json']),
    tokenctl(['status', CLIENT]),
  ]);
  expect(token).toEqual({ code: 0, stdout: `${stored!.accessToken}\n`, stderr: '' });
  expect(JSON.parse(tokenJson.stdout)).toEqual(stored);
  expect(readable.stdout).toMatch(/^state +active$/m);
  expect(readable.stdout).toMatch(new RegExp(`^fingerprint +${stored!.fingerprint}$`, 'm'));
  expect(readable.stdout).toMatch(/^expires +in \d+s \(/m);

  // Visibility (what list reads) is eventually consistent.
  const listed = await eventually(
    async () => {
      const run = await tokenctl(['list', '--json']);
      const rows = JSON.parse(run.stdout) as { clientId: string; state: string }[];
      return rows.some((row) => row.clientId === CLIENT && row.state === 'active') ? rows : undefined;
    },
    30_000,
    `${CLIENT} listed as active`,
  );
  // An active client's expiry and renewal point come from its token hash in Redis, where the
  // worker wrote them with the token: the very instants `status` reads from the workflow.
  expect(listed).toEqual([
    expect.objectContaining({
      clientId: CLIENT,
      state: 'active',
      expiresAt: status.expiresAt,
      nextRefreshAt: status.nextRefreshAt,
      failures: 0,
      tokenEndpointHost: new URL(iam.url).host,
    }),
  ]);
  const table = await tokenctl(['list']);
  expect(table.stdout.split('\n')[0]).toMatch(/^CLIENT +STATE +EXPIRES +NEXT REFRESH +FAILURES +ENDPOINT$/);
  expect(table.stdout.split('\n')[1]).toMatch(new RegExp(`^${CLIENT} +active +in \\d+s +in \\d+s +0 +${new URL(iam.url).host}$`));

  // Its run took every patch as it started (docs/design.md, "Retiring a patch").
  const [patches, patchesJson] = await Promise.all([tokenctl(['patches']), tokenctl(['patches', '--json'])]);
  expect(patches).toMatchObject({ code: 0, stderr: '' });
  expect(patches.stdout).toMatch(/^lean-cycles: no running workflow of \d+ began before it; it can be retired \(wf.deprecatePatch\)$/m);
  expect(patches.stdout).toMatch(/^active-without-times: no running workflow of \d+ began before it/m);
  expect(patches.stdout).toMatch(/^local-renewals: no running workflow of \d+ began before it/m);
  const rows = JSON.parse(patchesJson.stdout) as PatchRetirement[];
  expect(rows.map(({ patch, predating }) => ({ patch, predating }))).toEqual([
    { patch: 'lean-cycles', predating: 0 },
    { patch: 'active-without-times', predating: 0 },
    { patch: 'local-renewals', predating: 0 },
  ]);

  const refreshed = await tokenctl(['refresh', CLIENT, '--wait', '--reason', 'tokenctl test']);
  const renewed = await stack.store.read(CLIENT);
  expect(renewed?.generation).toBe(2);
  expect(refreshed).toMatchObject({ code: 0, stderr: '' });
  expect(refreshed.stdout).toMatch(
    new RegExp(`^Refreshed ${CLIENT}: generation 2, fingerprint ${renewed!.fingerprint}, expires in \\d+s \\(`),
  );

  const removed = await tokenctl(['remove', CLIENT, '--purge']);
  expect(removed).toEqual({ code: 0, stdout: `Removed ${CLIENT} (token deleted from Redis).\n`, stderr: '' });
  const gone = await tokenctl(['token', CLIENT]);
  expect(gone).toEqual({
    code: 1,
    stdout: '',
    stderr: `error: no token for ${CLIENT} in Redis: is it registered and active? try tokenctl status ${CLIENT}\n`,
  });
});

describe('apply', () => {
  /** Writes a clients file into the test's directory and returns its path. */
  async function clientsFile(name: string, yaml: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, yaml);
    return path;
  }

  /** A valid file for the APPLIED clients; `scopeOfB` lets a test change one entry. */
  const goodFile = (options: { scopeOfB: string; without?: string }) =>
    [
      'defaults:',
      `  tokenUrl: ${iam.tokenUrl()}`,
      '  authMethod: client_secret_post',
      '  policy: { minForcedRefreshIntervalMs: 0 }',
      'clients:',
      ...APPLIED.filter((id) => id !== options.without).flatMap((id) => [
        `  - clientId: ${id}`,
        `    secretRef: env:${appliedSecretEnv(id)}`,
        ...(id === 'apply-b' ? [`    scope: ${options.scopeOfB}`] : []),
      ]),
      '',
    ].join('\n');

  test('a file with mistakes lists every one with its path, never echoes a secret, and changes nothing', async () => {
    const path = await clientsFile(
      'mistakes.yaml',
      [
        'defaults:',
        '  authMethod: digest',
        'clients:',
        `  - clientId: apply-a`, // valid: still not registered, because the file as a whole is not
        `    tokenUrl: ${iam.tokenUrl()}`,
        '    secretRef: env:APPLY_A',
        '  - clientId: apply-b',
        '    tokenUrl: ftp://iam.example.com/token',
        '    clientSecret: hunter2-literal',
        '  - clientId: apply-a',
        `    tokenUrl: ${iam.tokenUrl()}`,
        '    secretRef: plain-secret-value',
        '    policy: { refreshFraction: 1.5 }',
        '',
      ].join('\n'),
    );
    const run = await tokenctl(['apply', path]);

    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      [
        `error: ${path} is invalid, nothing was changed:`,
        '  - defaults.authMethod: must be one of client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, self_signed_tls_client_auth',
        '  - clients[1].clientSecret: secrets and keys never go in this file (Temporal shows registrations to every operator); use secretRef or keyRef: env:NAME or file:/absolute/path',
        '  - clients[1].tokenUrl: must be an http(s) URL',
        '  - clients[2].secretRef: must be env:NAME or file:/absolute/path (the secret, key or certificate itself never goes here)',
        '  - clients[2].policy: policy.refreshFraction must be between 0 and 1 (exclusive)',
        '  - clients[2].clientId: "apply-a" is already listed at clients[0] (one entry per client ID)',
        'Fix these and run it again; see tokenctl apply --help for the format.',
        '',
      ].join('\n'),
    );
    expect(run.stderr).not.toContain('hunter2');
    expect(run.stderr).not.toContain('plain-secret-value');
    // Nothing was started, not even the valid entry.
    for (const clientId of ['apply-a', 'apply-b']) {
      await expect(stack.client.workflow.getHandle(workflowIdFor(clientId)).describe()).rejects.toThrow(/not found/i);
    }
    expect(iam.requestsFor('apply-a')).toEqual([]);
  });

  test('a good file starts every client; the same file again changes nothing; a changed entry is reconfigured, --prune stops the removed one and --purge deletes its token', async () => {
    const first = await clientsFile('clients.yaml', goodFile({ scopeOfB: 'orders.read' }));
    const created = await tokenctl(['apply', first]);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toBe(
      [
        'created  apply-a',
        'created  apply-b',
        'created  apply-c',
        `Applied ${first}: 3 created, 0 updated, 0 unchanged, 0 removed.`,
        '3 new or changed clients have credentials the IAM has not accepted yet: the worker tries them one at a time per IAM host ' +
          'and holds them back once the host has had LOGIN_BUDGET_MAX_REJECTIONS rejected logins in its window. ' +
          'Rejected ones park: tokenctl list --state credentials_rejected',
        '',
      ].join('\n'),
    );
    for (const clientId of APPLIED) {
      await eventually(
        async () => ((await stack.admin.status(clientId)).state === 'active' ? true : undefined),
        20_000,
        `${clientId} active`,
      );
      expect(iam.requestsFor(clientId).map((r) => [r.outcome, r.authMethod])).toEqual([['issued', 'client_secret_post']]);
    }
    expect(iam.requestsFor('apply-b')[0]!.params).toMatchObject({ scope: 'orders.read' });

    // Idempotent: nothing is signalled, so no client asks for a new token.
    const again = await tokenctl(['apply', first]);
    expect(again).toEqual({
      code: 0,
      stdout: `unchanged  apply-a\nunchanged  apply-b\nunchanged  apply-c\nApplied ${first}: 0 created, 0 updated, 3 unchanged, 0 removed.\n`,
      stderr: '',
    });

    // Visibility (what --prune reads) is eventually consistent: wait until it lists all three.
    await eventually(
      async () => ((await stack.admin.list()).filter((row) => APPLIED.includes(row.clientId as never)).length === 3 ? true : undefined),
      30_000,
      'three listed',
    );

    // apply-b gets another scope; apply-c leaves the file. A dry run first: it only tells.
    const second = await clientsFile('clients-v2.yaml', goodFile({ scopeOfB: 'orders.read orders.write', without: 'apply-c' }));
    const dryRun = await tokenctl(['apply', second, '--prune', '--dry-run']);
    expect(dryRun.stdout).toBe(
      [
        'would update  apply-b (scope)',
        'unchanged     apply-a',
        'would remove  apply-c',
        `Dry run of ${second}: 0 created, 1 updated, 1 unchanged, 1 removed.`,
        '',
      ].join('\n'),
    );
    expect((await stack.admin.registration('apply-b'))?.scope).toBe('orders.read');

    const applied = await tokenctl(['apply', second, '--prune', '--json']);
    expect(applied).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(applied.stdout) as ApplyResult).toEqual({
      created: [],
      updated: [{ clientId: 'apply-b', fields: ['scope'] }],
      unchanged: ['apply-a'],
      removed: ['apply-c'],
      failed: [],
      // A scope change leaves the credentials proven.
      unproven: [],
    });

    // The reconfigured client asked for a token with its new scope, at once; the others did not.
    const requestsOfB = await eventually(
      () => (iam.requestsFor('apply-b').length === 2 ? iam.requestsFor('apply-b') : undefined),
      30_000,
      'apply-b reconfigured',
    );
    expect(requestsOfB[1]).toMatchObject({ outcome: 'issued', params: { scope: 'orders.read orders.write' } });
    expect(await stack.admin.registration('apply-b')).toMatchObject({
      clientId: 'apply-b',
      scope: 'orders.read orders.write',
      secretRef: 'env:APPLY_B',
    });
    expect(iam.requestsFor('apply-a')).toHaveLength(1);
    // The pruned workflow ended; its token stays in Redis until it expires (no --purge).
    expect((await stack.client.workflow.getHandle(workflowIdFor('apply-c')).describe()).status.name).toBe('COMPLETED');
    expect(await stack.store.read('apply-c')).not.toBeNull();

    // Clearing a field: apply-b without a scope.
    const third = await clientsFile('clients-v3.yaml', goodFile({ scopeOfB: "''", without: 'apply-c' }).replace("    scope: ''\n", ''));
    const cleared = await tokenctl(['apply', third, '--json']);
    expect((JSON.parse(cleared.stdout) as ApplyResult).updated).toEqual([{ clientId: 'apply-b', fields: ['scope'] }]);
    const requestsAfterClear = await eventually(
      () => (iam.requestsFor('apply-b').length === 3 ? iam.requestsFor('apply-b') : undefined),
      30_000,
      'apply-b cleared',
    );
    expect(requestsAfterClear[2]!.params).not.toHaveProperty('scope');
    expect((await tokenctl(['apply', third, '--json'])).stdout).toContain('"unchanged": [\n    "apply-a",\n    "apply-b"\n  ]');

    // --purge without --prune is a usage error; with it, the pruned client's token goes too.
    const fourth = await clientsFile(
      'clients-v4.yaml',
      goodFile({ scopeOfB: "''", without: 'apply-c' }).replace(/ {2}- clientId: apply-b\n( {4}.*\n)*/, ''),
    );
    const purgeAlone = await tokenctl(['apply', fourth, '--purge']);
    expect(purgeAlone).toMatchObject({ code: 2, stdout: '' });
    expect(purgeAlone.stderr).toContain("error: option '--purge' needs '--prune'");
    await eventually(
      async () => ((await stack.admin.list()).some((row) => row.clientId === 'apply-b') ? true : undefined),
      30_000,
      'apply-b listed',
    );
    const purged = await tokenctl(['apply', fourth, '--prune', '--purge', '--json']);
    expect(JSON.parse(purged.stdout) as ApplyResult).toMatchObject({ removed: ['apply-b'], failed: [] });
    expect(await stack.store.read('apply-b')).toBeNull();
    expect(await stack.store.read('apply-a')).not.toBeNull();
  });
});

describe("methods checked against the issuer's discovery document", () => {
  let limited: IamEmulator;
  let keyPath: string;

  beforeAll(async () => {
    // An IAM that offers the secret methods only.
    limited = await startIamEmulator({ clients: [], authMethodsSupported: ['client_secret_basic', 'client_secret_post'] });
    keyPath = join(dir, 'cli-key.pem');
    await writeFile(keyPath, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  });
  afterAll(async () => {
    await limited?.close();
  });

  test('register refuses a method the issuer does not list, naming the ones it lists, and registers nothing', async () => {
    const issuer = `${limited.url}/realms/demo`;
    const run = await tokenctl([
      'register',
      'cli-unsupported',
      '--issuer',
      issuer,
      '--auth',
      'private_key_jwt',
      '--key',
      `file:${keyPath}`,
    ]);

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toBe(
      `error: the IAM refuses these auth methods, nothing was changed:\n  - --auth: ${issuer} does not support private_key_jwt (its token_endpoint_auth_methods_supported: client_secret_basic, client_secret_post)\n`,
    );
    await expect(stack.admin.status('cli-unsupported')).rejects.toThrow(NotRegisteredError);
  });

  test('apply refuses the same before it changes anything', async () => {
    const issuer = `${limited.url}/realms/demo`;
    const file = join(dir, 'unsupported.yaml');
    await writeFile(
      file,
      `clients:\n  - clientId: cli-unsupported\n    issuer: ${issuer}\n    authMethod: private_key_jwt\n    keyRef: file:${keyPath}\n`,
    );
    const run = await tokenctl(['apply', file]);

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toContain(`  - ${file}: clients[0].authMethod: ${issuer} does not support private_key_jwt`);
    await expect(stack.admin.status('cli-unsupported')).rejects.toThrow(NotRegisteredError);
  });

  test('an issuer this machine cannot reach is named in a warning, and the client is registered (the worker reads the document)', async () => {
    const [port] = await findFreePorts(1);
    const issuer = `http://127.0.0.1:${port}/realms/demo`;
    const run = await tokenctl(['register', 'cli-unreachable', '--issuer', issuer, '--secret', 'env:S']);

    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(
      new RegExp(
        `^warning: Discovery document ${issuer}/\\.well-known/openid-configuration could not be fetched: .*ECONNREFUSED.*the auth method was not checked against ${issuer} from this machine`,
      ),
    );
    expect(run.stdout).toMatch(/^Registered cli-unreachable: tokens from the token endpoint of /);
    await tokenctl(['remove', 'cli-unreachable']);
  });

  test('a listed method registers by issuer, and reconfigure moves the client to a token URL', async () => {
    const issuer = `${iam.url}/realms/demo`;
    const registered = await tokenctl(['register', CLIENT, '--issuer', issuer, '--secret', 'env:S']);
    expect(registered).toMatchObject({ code: 0, stderr: '' });
    // Registered before in this file: its generations go on from the highest Redis recorded.
    const first = await eventually(async () => (await stack.store.read(CLIENT)) ?? undefined, 30_000, `${CLIENT} token`);

    const moved = await tokenctl(['reconfigure', CLIENT, '--token-url', iam.tokenUrl(), '--auth', 'post']);
    expect(moved).toMatchObject({ code: 0, stderr: '' });
    expect(await stack.admin.registration(CLIENT)).toMatchObject({ tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post' });
    expect(await stack.admin.registration(CLIENT)).not.toHaveProperty('issuer');
    await eventually(
      async () => ((await stack.store.read(CLIENT))!.generation > first.generation ? true : undefined),
      30_000,
      `${CLIENT} reconfigured`,
    );
    await tokenctl(['remove', CLIENT, '--purge']);
  });

  test('jwks prints the public JWK Set of a key reference, with the kid the worker sends', async () => {
    const run = await tokenctl(['jwks', `file:${keyPath}`]);

    expect(run).toMatchObject({ code: 0, stderr: '' });
    const { keys } = JSON.parse(run.stdout) as { keys: Array<Record<string, unknown>> };
    const publicJwk = await exportJWK(createPublicKey(await readFile(keyPath, 'utf8')));
    // The worker sends the RFC 7638 thumbprint as kid when neither the key nor the registration names one.
    expect(keys).toEqual([{ ...publicJwk, kid: await calculateJwkThumbprint(publicJwk), use: 'sig', alg: 'ES256' }]);
    expect(keys[0]).not.toHaveProperty('d');
    const twoWithOneKid = await tokenctl(['jwks', `file:${keyPath}`, `file:${keyPath}`, '--key-id', 'k1']);
    expect(twoWithOneKid).toMatchObject({ code: 1, stdout: '', stderr: 'error: --key-id names one key: give one reference with it\n' });
  });

  test('no workflow history of these clients holds the secret, the key or a token', async () => {
    await expectNoSecretsInHistories(stack.client, [CLIENT, 'cli-unreachable'].map(workflowIdFor), [
      SECRET,
      await readFile(keyPath, 'utf8'),
      ...iam.issuedTokens.map((token) => token.accessToken),
    ]);
  });
});

describe('apply of many clients', () => {
  /** The first `count` BULK clients, listed in reverse (not their IDs' order); the `scoped` ones with a scope. */
  const bulkFile = (count: number, scoped: ReadonlySet<string> = new Set()) =>
    [
      'defaults:',
      `  tokenUrl: ${iam.tokenUrl()}`,
      '  authMethod: client_secret_post',
      '  secretRef: env:BULK_SECRET',
      'clients:',
      ...[...BULK.slice(0, count)]
        .reverse()
        .flatMap((id) => [`  - clientId: ${id}`, ...(scoped.has(id) ? ['    scope: orders.read'] : [])]),
      '',
    ].join('\n');

  test('every client is reported once, as created, updated or unchanged, in the file order, with no progress line off a terminal', async () => {
    const first = join(dir, 'bulk-40.yaml');
    await writeFile(first, bulkFile(40));
    const created = await tokenctl(['apply', first, '--json']);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    const firstResult = JSON.parse(created.stdout) as ApplyResult;
    expect(firstResult.created).toEqual([...BULK.slice(0, 40)].reverse());
    expect(firstResult.unproven).toEqual(firstResult.created);
    expect(firstResult).toMatchObject({ updated: [], unchanged: [], removed: [], failed: [] });

    // 20 new, 10 changed, 30 as they were: more than are handled at once, finishing in any order.
    const scoped = new Set(BULK.slice(0, 10));
    const second = join(dir, 'bulk-60.yaml');
    await writeFile(second, bulkFile(60, scoped));
    const applied = await tokenctl(['apply', second]);
    expect(applied).toMatchObject({ code: 0, stderr: '' });
    const inFileOrder = [...BULK].reverse();
    const expectedRows = [
      ...inFileOrder.filter((id) => BULK.indexOf(id) >= 40).map((id) => `created    ${id}`),
      ...inFileOrder.filter((id) => scoped.has(id)).map((id) => `updated    ${id} (scope)`),
      ...inFileOrder.filter((id) => BULK.indexOf(id) < 40 && !scoped.has(id)).map((id) => `unchanged  ${id}`),
    ];
    const lines = applied.stdout.split('\n');
    expect(lines.slice(0, 60)).toEqual(expectedRows);
    expect(lines[60]).toBe(`Applied ${second}: 20 created, 10 updated, 30 unchanged, 0 removed.`);

    // Each was really done: every client has its workflow, and the changed ones their scope.
    await Promise.all(
      BULK.map(async (clientId) => {
        const registration = await stack.admin.registration(clientId);
        expect(registration?.clientId).toBe(clientId);
        expect(registration?.scope).toBe(scoped.has(clientId) ? 'orders.read' : undefined);
      }),
    );
  });
});
