/**
 * `make demo` as a newcomer meets it, and the README's commands as it prints them: the stack comes
 * up and says where to look, one line per client rejected on purpose (the worker's warnings go to
 * its log file); every command it prints runs as printed (tokenctl, the resource API, the consumer
 * example, the metrics scrape, which must also match docs/deployment.md); the UI's server lists
 * the workflows by `TokenState`; and Ctrl-C stops everything the demo started and removes its keys
 * from the Redis it found, leaving the rest. It runs on free ports (DEMO_* variables), beside a
 * Redis started here, so it does not collide with a demo already running on this machine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { hasExited } from '../../dev/child-process.js';
import { findFreePorts, portAnswers } from '../../dev/free-port.js';
import { metricsDocsDifferences } from '../support/metrics-docs.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';

const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);

let demo: ChildProcess;
let output = '';
let stateDir: string;
let redisServer: RedisServer;
let redis: Redis;
let ports: { temporal: number; ui: number; iam: number; metrics: number };

beforeAll(async () => {
  const [temporal, ui, iam, metrics] = (await findFreePorts(4)) as [number, number, number, number];
  ports = { temporal, ui, iam, metrics };
  stateDir = mkdtempSync(join(tmpdir(), 'demo-test-'));
  // A Redis the demo finds running, as the one on 6379 of a developer's machine, holding a key of
  // someone else's.
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  await redis.set('someone-else:key', 'kept');
  // The README's command, in a process group of its own as in a terminal, so that Ctrl-C can be
  // sent to the whole group (make, npm, tsx, the demo and what it started).
  // The suite has installed and built already; -o keeps make from doing it again under the tests
  // that run beside this one (a fresh clone's CI run would not, a developer's checkout might).
  demo = spawn('make', ['--no-print-directory', '-o', 'node_modules/.install-stamp', '-o', 'dist/.build-stamp', 'demo'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DEMO_TEMPORAL_PORT: String(temporal),
      DEMO_UI_PORT: String(ui),
      DEMO_REDIS_PORT: String(redisServer.port),
      DEMO_IAM_PORT: String(iam),
      METRICS_PORT: String(metrics),
      DEMO_STATE_DIR: stateDir,
    },
  });
  demo.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  demo.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await eventually(
    () => {
      if (hasExited(demo)) throw new Error(`The demo exited during start:\n${output}`);
      return output.includes('\nCtrl-C stops everything') ? true : undefined;
    },
    150_000,
    'the demo up',
  );
});

afterAll(async () => {
  // Whatever is left of the group (make may be gone while the demo is not).
  try {
    if (demo?.pid !== undefined) process.kill(-demo.pid, 'SIGKILL');
  } catch {
    // ESRCH: nothing is left.
  }
  redis?.disconnect();
  await redisServer?.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

/** The lines of the printed block that starts with `heading`, up to the next blank line. */
function block(heading: string): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((line) => line.startsWith(heading));
  expect(start, `"${heading}" in the demo's output`).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((line, index) => index > start && line.trim() === '');
  return lines.slice(start + 1, end).map((line) => line.trim());
}

test('it prints where to look, one line per client rejected on purpose, and nothing of the worker log', () => {
  const ui = `http://127.0.0.1:${ports.ui}/namespaces/default/workflows`;
  expect(output).toContain(`Temporal UI        ${ui}\n`);
  for (const state of ['credentials_rejected', 'backing_off']) {
    expect(output).toContain(`${ui}?query=${encodeURIComponent(`TokenState="${state}"`)}\n`);
  }
  expect(output).toContain(`http://127.0.0.1:${ports.iam}/realms/demo/protocol/openid-connect/token`);
  expect(output).toContain(`worker metrics     http://127.0.0.1:${ports.metrics}/metrics`);
  expect(block('Rejected on purpose:')).toEqual([
    expect.stringMatching(/^legacy-batch +credentials_rejected \(service accounts are off at the IAM\): .*unauthorized_client/),
    expect.stringMatching(/^shipping-service +credentials_rejected \(the worker holds the secret from before a rotation\): /),
  ]);
  // The Redis it found is used, not a new one.
  expect(output).not.toContain('Starting redis-server');
  // The worker's warnings about the rejected clients are in its log, not on the terminal.
  const workerLog = join(stateDir, 'worker.log');
  expect(output).toContain(`worker log         ${workerLog}\n`);
  expect(readFileSync(workerLog, 'utf8')).toContain('Rejected login');
  for (const noise of ['WARN', 'taskToken', 'LOGIN_PROOF_KEY', 'EBADENGINE', '> token-lifecycle-worker'])
    expect(output).not.toContain(noise);
});

/** What each printed command must show: every command the demo prints needs its check here. */
const CHECKS: Array<[RegExp, (stdout: string) => void]> = [
  [
    /^bin\/tokenctl list$/,
    (stdout) => {
      const rows = stdout.trim().split('\n').slice(1);
      expect(rows.filter((row) => /^\S+ +active +in \d+s +in \d+s +0 /.test(row))).toHaveLength(3);
      expect(rows.filter((row) => /^\S+ +credentials_rejected +- +- +1 /.test(row))).toHaveLength(2);
    },
  ],
  [/^bin\/tokenctl token orders-service$/, (stdout) => expect(stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/)],
  [
    /^bin\/tokenctl status shipping-service$/,
    (stdout) => {
      expect(stdout).toMatch(/^state +credentials_rejected$/m);
      expect(stdout).toMatch(/^next step +.*tokenctl resume shipping-service/m);
    },
  ],
  [/^bin\/tokenctl refresh orders-service --wait$/, (stdout) => expect(stdout).toMatch(/^Refreshed orders-service: generation \d+/)],
  [
    /^curl -s -H "Authorization: Bearer .*\$API_URL$/,
    (stdout) => expect(JSON.parse(stdout)).toEqual({ ok: true, clientId: 'orders-service' }),
  ],
  [
    /^npx tsx consumers\/node\/examples\/got-with-token\.ts$/,
    (stdout) => expect(stdout).toContain("{ ok: true, clientId: 'orders-service' }"),
  ],
  [
    /^curl -s http:\/\/127\.0\.0\.1:\d+\/metrics \| grep '\^token_'$/,
    (stdout) => {
      expect(stdout).toMatch(/^token_requests_total\{client_id="orders-service",outcome="issued"\} \d+$/m);
      expect(stdout.split('\n').filter((line) => line !== '' && !line.startsWith('token_'))).toEqual([]);
    },
  ],
];

test('every command it prints runs as printed, in a shell with the variables it exports', async () => {
  const [exported, ...commands] = block('Try, in another terminal in this folder');
  expect(exported).toBe(
    `export TEMPORAL_ADDRESS=127.0.0.1:${ports.temporal} REDIS_URL=${redisServer.url} TOKEN_KEY_PREFIX=token-demo: API_URL=http://127.0.0.1:${ports.iam}/api/resource`,
  );
  // The README's copy of the block is the same, on the default ports.
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const readmeBlock = /what to try in another terminal:\n\n```sh\n([^`]*)```/.exec(readme)?.[1]?.trim().split('\n');
  const anyPort = (lines: string[]) => lines.map((line) => line.replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT'));
  expect(anyPort(readmeBlock ?? [])).toEqual(anyPort([exported!, ...commands]));
  expect(commands.length).toBeGreaterThan(0);
  for (const command of commands) {
    const check = CHECKS.find(([pattern]) => pattern.test(command));
    expect(check, `a check for the printed command: ${command}`).toBeDefined();
    const { stdout, stderr } = await run('bash', ['-c', `${exported}; ${command}`], { cwd: ROOT, env: shellEnvironment() });
    expect(stderr, command).toBe('');
    check![1](stdout);
  }
});

test('the metrics it serves are what docs/deployment.md says', async () => {
  const text = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
  expect(
    metricsDocsDifferences(text, ['token_requests_total', 'token_rejected_logins_total', 'token_breaker_open', 'temporal_num_pollers']),
  ).toEqual([]);
});

test('the UI server lists the workflows with their TokenState, the rejected ones on purpose', async () => {
  // The same request the UI's list page makes for its query box.
  const list = async (query: string) => {
    const url = `http://127.0.0.1:${ports.ui}/api/v1/namespaces/default/workflows?query=${encodeURIComponent(query)}`;
    const body = (await (await fetch(url)).json()) as { executions?: Array<{ execution: { workflowId: string } }> };
    return (body.executions ?? []).map((e) => e.execution.workflowId).sort();
  };
  const rejected = ['token-lifecycle:legacy-batch', 'token-lifecycle:shipping-service'];
  const active = ['token-lifecycle:billing-service', 'token-lifecycle:orders-service', 'token-lifecycle:reporting-service'];
  await eventually(
    async () => ((await list('TokenState="credentials_rejected"')).join() === rejected.join() ? true : undefined),
    30_000,
    'the rejected demo clients listed',
  );
  await eventually(
    async () => ((await list('TokenState="active"')).join() === active.join() ? true : undefined),
    30_000,
    'the active demo clients listed',
  );
});

test('Ctrl-C stops everything the demo started and removes its keys, and only its keys, from the Redis it found', async () => {
  const keys = await redis.keys('*');
  expect(keys.filter((key) => !key.startsWith('token-demo:'))).toEqual(['someone-else:key']);
  expect(keys).toContain('token-demo:token:orders-service');

  const exited = once(demo, 'exit');
  // What Ctrl-C does: SIGINT to every process of the group. make reports the interrupt and
  // exits at once; the demo must still stop everything and say so.
  process.kill(-demo.pid!, 'SIGINT');
  await exited;
  await eventually(() => (output.includes('Stopped.') ? true : undefined), 20_000, 'the demo to say it stopped');
  for (const port of Object.values(ports)) expect(await portAnswers(port), `port ${port}`).toBe(false);
  expect(output).toMatch(/Removed the demo's \d+ keys \(token-demo:\*\)/);
  expect(await redis.keys('*')).toEqual(['someone-else:key']);
  expect(existsSync(join(stateDir, 'temporal.db'))).toBe(true); // a restarted demo finds its workflows
});

/** The test's environment without what the demo's `export` line sets, so that the line decides. */
function shellEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['TEMPORAL_ADDRESS', 'REDIS_URL', 'TOKEN_KEY_PREFIX', 'API_URL']) delete env[name];
  return env;
}
