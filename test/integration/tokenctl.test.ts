/**
 * tokenctl as operators and scripts run it: a separate process (`npx tsx client/cli/tokenctl.ts`)
 * configured only by its environment, against the real Temporal dev server, a real redis-server
 * and the IAM emulator. Each call costs a process start-up, so independent calls run together.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { NotRegisteredError } from '../../client/admin.js';
import { findFreePorts } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import type { TokenStatus } from '../../workflows/messages.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLIENT = 'cli-orders';
const SECRET = 'cli-secret';

let iam: IamEmulator;
let stack: TokenStack;

beforeAll(async () => {
  iam = await startIamEmulator({ tokenLifetimeSeconds: 300, clients: [{ clientId: CLIENT, clientSecret: SECRET }] });
  stack = await startTokenStack({ env: { S: SECRET } });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
});

interface Run {
  /** The exit code, or -1 when the process was killed (e.g. by the timeout). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs tokenctl with the stack's settings in its environment (overridden by `env`); never rejects. */
function tokenctl(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const settings = {
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TASK_QUEUE: stack.taskQueue,
    REDIS_URL: stack.redisServer.url,
    TOKEN_KEY_PREFIX: 'oauth:',
  };
  return new Promise((resolve) => {
    execFile('npx', ['tsx', 'client/cli/tokenctl.ts', ...args], { cwd: ROOT, env: { ...process.env, ...settings, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('usage', () => {
  test('--help exits 0 and describes every command, on the program and on a command', async () => {
    const [program, register] = await Promise.all([tokenctl(['--help']), tokenctl(['register', '--help'])]);
    expect(program).toMatchObject({ code: 0, stderr: '' });
    for (const command of ['register', 'refresh', 'status', 'list', 'resume', 'remove', 'token']) {
      expect(program.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
    expect(program.stdout).not.toMatch(/^ {2}apply /m);
    expect(register).toMatchObject({ code: 0, stderr: '' });
    expect(register.stdout).toContain('--token-url <url>');
  });

  test('wrong usage exits 2 and says what was wrong', async () => {
    const url = 'http://127.0.0.1:1/token';
    const [unknownCommand, missingOption, badChoice] = await Promise.all([
      tokenctl(['frobnicate']),
      tokenctl(['register', CLIENT, '--secret', 'env:S']),
      tokenctl(['register', CLIENT, '--token-url', url, '--secret', 'env:S', '--auth', 'digest']),
    ]);
    expect(unknownCommand).toMatchObject({ code: 2, stdout: '' });
    expect(unknownCommand.stderr).toContain("error: unknown command 'frobnicate'");
    expect(missingOption).toMatchObject({ code: 2, stdout: '' });
    expect(missingOption.stderr).toContain("error: required option '--token-url <url>' not specified");
    expect(badChoice).toMatchObject({ code: 2, stdout: '' });
    expect(badChoice.stderr).toContain("argument 'digest' is invalid. Allowed choices are basic, post.");
  });
});

describe('failures', () => {
  test('an invalid registration exits 1, names every wrong option, never echoes the secret, and registers nothing', async () => {
    const run = await tokenctl(['register', 'bad-client', '--token-url', 'not-a-url', '--secret', 'plain-secret']);

    expect(run).toMatchObject({ code: 1, stdout: '' });
    expect(run.stderr).toContain('error: invalid registration, nothing was registered:\n');
    expect(run.stderr).toContain('  - --token-url: must be an http(s) URL\n');
    expect(run.stderr).toContain('  - --secret: must be env:NAME or file:/absolute/path');
    expect(run.stderr).not.toContain('plain-secret');
    await expect(stack.admin.status('bad-client')).rejects.toThrow(NotRegisteredError);
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
    expect(redis.stderr).toMatch(new RegExp(`^error: cannot connect to Redis at redis://127\\.0\\.0\\.1:${redisPort} \\(connect ECONNREFUSED .*set REDIS_URL`));
  });
});

test("a client's life from the command line: register, status, token, list, refresh --wait, remove --purge", async () => {
  const registered = await tokenctl([
    'register', CLIENT, '--token-url', iam.tokenUrl(), '--secret', 'env:S', '--auth', 'post',
    '--policy', '{"minForcedRefreshIntervalMs":0}',
  ]);
  expect(registered).toMatchObject({ code: 0, stderr: '' });
  expect(registered.stdout).toMatch(new RegExp(`^Registered ${CLIENT}: [^\\n]*client_secret_post[^\\n]*\\n$`));

  const status = await eventually(async () => {
    const run = await tokenctl(['status', CLIENT, '--json']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const parsed = JSON.parse(run.stdout) as TokenStatus;
    return parsed.state === 'active' ? parsed : undefined;
  }, 20_000, `${CLIENT} active`);
  expect(status).toMatchObject({ clientId: CLIENT, generation: 1, consecutiveFailures: 0, lastError: null });

  const stored = await stack.store.read(CLIENT);
  expect(stored?.generation).toBe(1);
  const [token, tokenJson, readable] = await Promise.all([tokenctl(['token', CLIENT]), tokenctl(['token', CLIENT, '--json']), tokenctl(['status', CLIENT])]);
  expect(token).toEqual({ code: 0, stdout: `${stored!.accessToken}\n`, stderr: '' });
  expect(JSON.parse(tokenJson.stdout)).toEqual(stored);
  expect(readable.stdout).toMatch(/^state +active$/m);
  expect(readable.stdout).toMatch(new RegExp(`^fingerprint +${stored!.fingerprint}$`, 'm'));
  expect(readable.stdout).toMatch(/^expires +in \d+s \(/m);

  // Visibility (what list reads) is eventually consistent.
  const listed = await eventually(async () => {
    const run = await tokenctl(['list', '--json']);
    const rows = JSON.parse(run.stdout) as { clientId: string; state: string }[];
    return rows.some((row) => row.clientId === CLIENT && row.state === 'active') ? rows : undefined;
  }, 10_000, `${CLIENT} listed as active`);
  expect(listed).toEqual([expect.objectContaining({ clientId: CLIENT, state: 'active', failures: 0, tokenEndpointHost: new URL(iam.url).host })]);
  const table = await tokenctl(['list']);
  expect(table.stdout.split('\n')[0]).toMatch(/^CLIENT +STATE +EXPIRES +NEXT REFRESH +FAILURES +ENDPOINT$/);
  expect(table.stdout.split('\n')[1]).toMatch(new RegExp(`^${CLIENT} +active +in \\d+s +in \\d+s +0 +${new URL(iam.url).host}$`));

  const refreshed = await tokenctl(['refresh', CLIENT, '--wait', '--reason', 'tokenctl test']);
  const renewed = await stack.store.read(CLIENT);
  expect(renewed?.generation).toBe(2);
  expect(refreshed).toMatchObject({ code: 0, stderr: '' });
  expect(refreshed.stdout).toMatch(new RegExp(`^Refreshed ${CLIENT}: generation 2, fingerprint ${renewed!.fingerprint}, expires in \\d+s \\(`));

  const removed = await tokenctl(['remove', CLIENT, '--purge']);
  expect(removed).toEqual({ code: 0, stdout: `Removed ${CLIENT} (token deleted from Redis).\n`, stderr: '' });
  const gone = await tokenctl(['token', CLIENT]);
  expect(gone).toEqual({
    code: 1,
    stdout: '',
    stderr: `error: no token for ${CLIENT} in Redis: is it registered and active? try tokenctl status ${CLIENT}\n`,
  });
});
