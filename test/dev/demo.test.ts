/**
 * `make demo` as a newcomer meets it: the stack comes up, tokenctl
 * prints a demo client's token, the UI's server lists the workflows by `TokenState`, and Ctrl-C
 * stops everything the demo started. It runs on free ports (DEMO_* variables), so it does not
 * collide with a demo already running on this machine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { hasExited } from '../../dev/child-process.js';
import { findFreePorts, portAnswers } from '../../dev/free-port.js';
import { eventually } from '../support/token-stack.js';

const ROOT = join(import.meta.dirname, '..', '..');
const TOKENCTL = join(ROOT, 'dist', 'cli', 'tokenctl.js');
const run = promisify(execFile);

let demo: ChildProcess;
let output = '';
let stateDir: string;
let ports: { temporal: number; ui: number; redis: number; iam: number; metrics: number };
const tokenctlEnv = () => ({
  ...process.env,
  TEMPORAL_ADDRESS: `127.0.0.1:${ports.temporal}`,
  REDIS_URL: `redis://127.0.0.1:${ports.redis}`,
});

beforeAll(async () => {
  const [temporal, ui, redis, iam, metrics] = (await findFreePorts(5)) as [number, number, number, number, number];
  ports = { temporal, ui, redis, iam, metrics };
  stateDir = mkdtempSync(join(tmpdir(), 'demo-test-'));
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
      DEMO_REDIS_PORT: String(redis),
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
      return output.includes('The token lifecycle demo is running.') ? true : undefined;
    },
    150_000,
    'the demo up',
  );
});

afterAll(() => {
  // Whatever is left of the group (make may be gone while the demo is not).
  try {
    if (demo?.pid !== undefined) process.kill(-demo.pid, 'SIGKILL');
  } catch {
    // ESRCH: nothing is left.
  }
  rmSync(stateDir, { recursive: true, force: true });
});

test('it prints where to look and what to try', () => {
  expect(output).toContain(`http://127.0.0.1:${ports.ui}/namespaces/default/workflows`);
  expect(output).toContain(`http://127.0.0.1:${ports.iam}/realms/demo/protocol/openid-connect/token`);
  expect(output).toContain(
    `TEMPORAL_ADDRESS=127.0.0.1:${ports.temporal} REDIS_URL=redis://127.0.0.1:${ports.redis} bin/tokenctl token orders-service`,
  );
  // No Redis answered on the port, so the demo started one.
  expect(output).toContain(`Starting redis-server on 127.0.0.1:${ports.redis}`);
});

test("tokenctl token prints a demo client's token", async () => {
  const token = await eventually(
    () =>
      run(process.execPath, [TOKENCTL, 'token', 'orders-service'], { env: tokenctlEnv() }).then(
        ({ stdout }) => stdout.trim(),
        () => undefined,
      ),
    30_000,
    'the orders-service token',
  );
  // The emulator issues JWT-shaped tokens.
  expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
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

test('Ctrl-C stops everything the demo started', async () => {
  const exited = once(demo, 'exit');
  // What Ctrl-C does: SIGINT to every process of the group. make reports the interrupt and
  // exits at once; the demo must still stop everything and say so.
  process.kill(-demo.pid!, 'SIGINT');
  await exited;
  await eventually(() => (output.includes('Stopped.') ? true : undefined), 20_000, 'the demo to say it stopped');
  for (const port of Object.values(ports)) expect(await portAnswers(port), `port ${port}`).toBe(false);
});
