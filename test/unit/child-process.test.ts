/**
 * dev/child-process.ts: `stopChild` ends real child processes (node itself), SIGKILL after the grace
 * for one that ignores SIGTERM; `waitUntilAnswering` against in-process HTTP servers on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { hasExited, NotAnsweringError, stopChild, waitUntilAnswering } from '../../dev/child-process.js';

const children: ChildProcess[] = [];
const servers: Server[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (!hasExited(child)) child.kill('SIGKILL');
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A node child running `script`, resolved once it printed `ready` (its signal handlers are set by then). */
async function node(script: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', `${script}; console.log('ready')`], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let printed = '';
  while (!printed.includes('ready')) {
    const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
    printed += chunk.toString();
  }
  return child;
}

const IDLE = 'setInterval(() => {}, 1000)';

test('stopChild ends a child that exits on SIGTERM, with SIGTERM', async () => {
  const child = await node(IDLE);
  await expect(stopChild(child, { graceMs: 60_000 })).resolves.toBe('SIGTERM');
  expect(hasExited(child)).toBe(true);
});

test('stopChild resolves with the exit code of a child that shuts down on SIGTERM', async () => {
  const child = await node(`process.on('SIGTERM', () => process.exit(0)); ${IDLE}`);
  await expect(stopChild(child)).resolves.toBe('code 0');
});

test('stopChild sends SIGKILL to a child that ignores SIGTERM once the grace is over', async () => {
  const child = await node(`process.on('SIGTERM', () => {}); ${IDLE}`);
  await expect(stopChild(child, { graceMs: 300 })).resolves.toBe('SIGKILL');
});

test('stopChild with SIGKILL kills at once, whatever the child does with SIGTERM', async () => {
  const child = await node(`process.on('SIGTERM', () => {}); ${IDLE}`);
  await expect(stopChild(child, { signal: 'SIGKILL', graceMs: 60_000 })).resolves.toBe('SIGKILL');
});

test('stopChild of a child already gone says how it ended', async () => {
  const child = spawn(process.execPath, ['-e', 'process.exit(3)'], { stdio: 'ignore' });
  children.push(child);
  await once(child, 'exit');
  await expect(stopChild(child)).resolves.toBe('code 3');
});

/** A loopback server answering 503 to its first `notReadyFor` requests, then 200; counts them. */
async function serverReadyAfter(notReadyFor: number): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((_, response) => {
    requests++;
    response.writeHead(requests > notReadyFor ? 200 : 503).end();
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ready`, requests: () => requests };
}

test('waitUntilAnswering polls each URL until it answers 2xx, then no more', async () => {
  const [first, second] = await Promise.all([serverReadyAfter(3), serverReadyAfter(2)]);
  await waitUntilAnswering([first.url, second.url], { what: 'test server', intervalMs: 20, timeoutMs: 30_000 });
  expect(first.requests()).toBe(4);
  expect(second.requests()).toBe(3);
});

test('waitUntilAnswering names the URL and its last answer when it never answers 2xx', async () => {
  const never = await serverReadyAfter(Infinity);
  const error = await waitUntilAnswering([never.url], { what: 'test server', intervalMs: 20, timeoutMs: 300 }).catch((err: unknown) => err);
  expect(error).toBeInstanceOf(NotAnsweringError);
  expect(error).toMatchObject({ url: never.url, lastAnswer: 'HTTP 503', exit: undefined });
  expect((error as Error).message).toContain(never.url);
  expect(never.requests()).toBeGreaterThan(1);
});

test('waitUntilAnswering says why a URL that takes no connection did not answer', async () => {
  const gone = await serverReadyAfter(0);
  await new Promise((resolve) => servers.pop()!.close(resolve));
  const error = await waitUntilAnswering([gone.url], { what: 'test server', intervalMs: 20, timeoutMs: 300 }).catch((err: unknown) => err);
  expect(error).toBeInstanceOf(NotAnsweringError);
  expect((error as NotAnsweringError).lastAnswer).toContain('ECONNREFUSED');
});

test('waitUntilAnswering fails as soon as its child exits, saying how', async () => {
  const never = await serverReadyAfter(Infinity);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => process.exit(3), 200)'], { stdio: 'ignore' });
  children.push(child);
  const error = await waitUntilAnswering([never.url], { what: 'test server', child, intervalMs: 20, timeoutMs: 50_000 }).catch(
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(NotAnsweringError);
  expect(error).toMatchObject({ url: never.url, lastAnswer: 'HTTP 503', exit: 'code 3' });
  expect((error as Error).message).toContain('exited (code 3)');
});
