/**
 * A real `redis-server` for integration tests, on a free port of 127.0.0.1, without persistence
 * unless a test asks for it (see {@link RedisServer.restart}).
 *
 * Always stop it in `afterAll`, so it is cleaned up even when a test fails:
 *
 * ```ts
 * let redisServer: RedisServer;
 * beforeAll(async () => { redisServer = await startRedisServer(); });
 * afterAll(async () => { await redisServer?.stop(); });
 * ```
 *
 * As a last resort, servers still running when the test process exits are killed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitDescription, hasExited, stopChild } from '../../dev/child-process.js';
import { findFreePort } from '../../dev/free-port.js';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Where the binaries are; override with `REDIS_SERVER_BIN` / `REDIS_CLI_BIN`. */
export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server';
export const REDIS_CLI_BIN = process.env.REDIS_CLI_BIN ?? 'redis-cli';

/** How long a server may take to answer PING after it was spawned. */
const STARTUP_TIMEOUT_MS = 10_000;

/** A running `redis-server` owned by a test. */
export interface RedisServer {
  /** The port it listens on, on 127.0.0.1. It stays the same across {@link RedisServer.restart}. */
  readonly port: number;
  /** `redis://127.0.0.1:<port>`, or `rediss://127.0.0.1:<port>` with TLS */
  readonly url: string;
  /** Its working directory (logs, cluster config, snapshots); removed by {@link RedisServer.stop}. */
  readonly dir: string;
  /** Stops it with SIGTERM, waits for the process to exit and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops it and starts it again on the same port. By default it comes back with the data it had
   * (a snapshot is taken before stopping, like a Redis with persistence); with `empty: true` it
   * comes back empty, like a Redis without persistence or a failover to an empty replica.
   */
  restart(opts?: { empty?: boolean }): Promise<void>;
  /** Kills it with SIGKILL (a crash: nothing is saved) and waits for the process to exit. */
  kill9(): Promise<void>;
}

/** The files of a Redis that speaks only TLS (`--port 0 --tls-port …`); see test/support/test-pki.ts. */
export interface RedisTlsFiles {
  /** The server's certificate and key. */
  certPath: string;
  keyPath: string;
  /** The CA that clients' certificates must be signed by (`tls-ca-cert-file`). */
  caPath: string;
  /** `tls-auth-clients`: whether a client must show a certificate. @default true */
  requireClientCertificate?: boolean;
  /**
   * A client certificate and key signed by the CA, for this module's own `redis-cli` (PING at
   * start, {@link redisCli}); required when the server requires one.
   */
  clientCertPath?: string;
  clientKeyPath?: string;
}

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** @default a free port found by the kernel */
  port?: number;
  /** More `redis-server` arguments, e.g. `['--cluster-enabled', 'yes']`. @default [] */
  extraArgs?: string[];
  /** `requirepass`: clients must AUTH with it (this module's `redis-cli` does). */
  password?: string;
  /** TLS only: the server listens with TLS on {@link RedisServer.port} and has no plain-text port; its URL is `rediss://`. */
  tls?: RedisTlsFiles;
}

/** Processes this module started and has not seen exit yet: killed if the test process exits. */
const runningProcesses = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of runningProcesses) child.kill('SIGKILL');
});

/** Starts a `redis-server` and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await findFreePort());
  const dir = await mkdtemp(join(tmpdir(), `redis-${port}-`));
  const tls = options.tls;
  const listen =
    tls === undefined
      ? ['--port', String(port)]
      : [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          tls.certPath,
          '--tls-key-file',
          tls.keyPath,
          '--tls-ca-cert-file',
          tls.caPath,
          '--tls-auth-clients',
          (tls.requireClientCertificate ?? true) ? 'yes' : 'no',
        ];
  const cli = [
    ...(tls === undefined ? [] : redisCliTlsArgs(tls)),
    ...(options.password === undefined ? [] : ['-a', options.password, '--no-auth-warning']),
  ];
  if (cli.length > 0) cliArgs.set(port, cli);
  const args = [
    ...listen,
    ...(options.password === undefined ? [] : ['--requirepass', options.password]),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--logfile',
    join(dir, 'redis.log'),
    '--save',
    '',
    '--appendonly',
    'no',
    ...(options.extraArgs ?? []),
  ];

  let child: ChildProcess;
  try {
    child = await spawnAndWaitForPing(args, port, dir);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  let removed = false;
  return {
    port,
    url: `${tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${port}`,
    dir,
    async stop() {
      await stopChild(child);
      if (!removed) {
        removed = true;
        cliArgs.delete(port);
        await rm(dir, { recursive: true, force: true });
      }
    },
    async restart({ empty = false } = {}) {
      if (!empty && !hasExited(child)) await redisCli(port, 'SAVE');
      await stopChild(child);
      // A crash (kill9) or an earlier SAVE may have left a snapshot that an empty restart must not load.
      if (empty) await rm(join(dir, 'dump.rdb'), { force: true });
      child = await spawnAndWaitForPing(args, port, dir);
    },
    async kill9() {
      await stopChild(child, { signal: 'SIGKILL' });
    },
  };
}

/** The `redis-cli` TLS and AUTH arguments of the servers started with {@link RedisServerOptions.tls} or a password, by port. */
const cliArgs = new Map<number, string[]>();

function redisCliTlsArgs(tls: RedisTlsFiles): string[] {
  const client = tls.clientCertPath === undefined ? [] : ['--cert', tls.clientCertPath, '--key', tls.clientKeyPath ?? ''];
  return ['--tls', '--cacert', tls.caPath, ...client];
}

/** Runs `redis-cli -p <port> <args…>` against 127.0.0.1 (over TLS and with the password of a server started with them) and returns its output. */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(REDIS_CLI_BIN, ['-h', '127.0.0.1', '-p', String(port), ...(cliArgs.get(port) ?? []), ...args]);
  return stdout;
}

async function spawnAndWaitForPing(args: string[], port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER_BIN, args, { stdio: 'ignore' });
  runningProcesses.add(child);
  child.once('exit', () => runningProcesses.delete(child));
  // Without this listener a missing binary (ENOENT) would crash the test process.
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const failure = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
    if (failure) throw new Error(`Could not start ${REDIS_SERVER_BIN}: ${failure.message}`);
    if (hasExited(child)) {
      throw new Error(`redis-server on port ${port} exited during startup (${exitDescription(child)}):\n${await logTail(dir)}`);
    }
    if (await answersPing(port)) return child;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not answer PING within ${STARTUP_TIMEOUT_MS} ms:\n${await logTail(dir)}`);
    }
  }
}

async function answersPing(port: number): Promise<boolean> {
  try {
    return (await redisCli(port, 'PING')).trim() === 'PONG';
  } catch {
    return false;
  }
}

async function logTail(dir: string): Promise<string> {
  const log = await readFile(join(dir, 'redis.log'), 'utf8').catch(() => '(no log)');
  return log.split('\n').slice(-20).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
