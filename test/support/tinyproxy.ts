/**
 * A real HTTP proxy for tests: Debian's `tinyproxy` (make system-deps installs it) in the
 * foreground on a free port of 127.0.0.1, accepting only loopback clients, with a log of every
 * request it tunnels (`CONNECT host:port`). Stop it to play a proxy that went away; start it again
 * on the same port to play its recovery.
 *
 * ```ts
 * const proxy = await startTinyproxy();
 * // HTTPS_PROXY=proxy.url …
 * expect(await proxy.connects()).toContain('127.0.0.1:8443');
 * await proxy.stop();
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitDescription, hasExited, stopChild } from '../../dev/child-process.js';
import { findFreePort } from '../../dev/free-port.js';

export const TINYPROXY_BIN = process.env.TINYPROXY_BIN ?? 'tinyproxy';

export interface Tinyproxy {
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** The `host:port` of every CONNECT it received so far, in order. */
  connects(): Promise<string[]>;
  /** Stops it (SIGTERM) and waits until the port refuses connections. Idempotent. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startTinyproxy(): Promise<Tinyproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyproxy-'));
  const port = await findFreePort();
  const logPath = join(dir, 'tinyproxy.log');
  const configPath = join(dir, 'tinyproxy.conf');
  // No ConnectPort line: CONNECT to any port (the tests' IAMs listen on free ports, not 443).
  await writeFile(
    configPath,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 30',
      'Allow 127.0.0.1',
      `LogFile "${logPath}"`,
      'LogLevel Connect',
      'MaxClients 50',
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  let output = '';

  const start = async () => {
    const proxyProcess = spawn(TINYPROXY_BIN, ['-d', '-c', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proxyProcess;
    running.add(proxyProcess);
    proxyProcess.once('exit', () => running.delete(proxyProcess));
    proxyProcess.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    proxyProcess.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const deadline = Date.now() + 10_000;
    while (!(await accepts(port))) {
      if (hasExited(proxyProcess)) throw new Error(`tinyproxy exited at start (${exitDescription(proxyProcess)}): ${output}`);
      if (Date.now() > deadline) throw new Error(`tinyproxy did not listen on ${port} within 10 s: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const stop = async () => {
    if (child !== undefined) await stopChild(child);
  };
  await start();

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    async connects() {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      return [...log.matchAll(/Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g)].map((match) => match[1]!);
    },
    stop,
    start,
    async remove() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
