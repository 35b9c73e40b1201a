/**
 * The Temporal dev server (SQLite, Web UI) for the demo and the integration tests, started from the
 * project's pinned Temporal CLI with the project's search attributes registered. Started by hand
 * rather than through `@temporalio/testing`, which waits only a few seconds for it to come up.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import { TOKEN_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { exitDescription, hasExited, stopChild } from './child-process.js';
import { findFreePorts } from './free-port.js';

export interface TemporalDevServerOptions {
  /** @default a free port */
  port?: number;
  /** The Web UI's port; `false` runs headless. @default a free port */
  uiPort?: number | false;
  /** Keep state in this SQLite file, so a restart keeps the workflows. @default in memory */
  dbFilename?: string;
  /** Register the project's search attributes at start. @default true */
  searchAttributes?: boolean;
  /** More namespaces to create at start, besides `default`. @default none */
  namespaces?: readonly string[];
  /** Dynamic config values, e.g. `{ 'limit.historyCount.suggestContinueAsNew': 50 }`. */
  dynamicConfig?: Record<string, unknown>;
  /** Where the server's output goes. @default discarded */
  logFile?: string;
  /** @default 120_000 (the first start compiles nothing, but a loaded machine is slow) */
  readyTimeoutMs?: number;
  /**
   * Run it in a process group of its own, so that a terminal's Ctrl-C (SIGINT to the whole
   * foreground group) reaches only its parent, which stops it after what depends on it. Its parent
   * kills it when it exits; a parent killed with SIGKILL leaves it running. @default false
   */
  ownProcessGroup?: boolean;
}

export interface TemporalDevServer {
  /** `127.0.0.1:<port>`, for `TEMPORAL_ADDRESS`. */
  readonly address: string;
  /** The Web UI, or null when headless. */
  readonly uiUrl: string | null;
  /** The server process's ID while it runs (benchmarks read its CPU time from /proc). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
  /** Stops and starts it again on the same ports (and database file, if any). */
  restart(): Promise<void>;
}

const SEARCH_ATTRIBUTE_TYPE_FLAG = { KEYWORD: 'Keyword', DATETIME: 'Datetime', INT: 'Int' } as const;

/** The path of the Temporal CLI (`TEMPORAL_CLI`, or the pinned version, built once if needed). */
export function temporalCliPath(): string {
  // This file runs from dev/ (tsx, vitest) and from dist/dev/ (the build): find the script upwards.
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const ensure = join(dir, 'dev', 'temporal-cli', 'ensure.sh');
    if (existsSync(ensure)) return execFileSync('bash', [ensure], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  }
  throw new Error('dev/temporal-cli/ensure.sh not found: run from a checkout of the project, or set TEMPORAL_CLI');
}

/**
 * Starts tried: the server binds several ports chosen free a moment before (by this module or by
 * the CLI itself), and another process can take one first.
 */
const STARTS = 3;

export async function startTemporalDevServer(options: TemporalDevServerOptions = {}): Promise<TemporalDevServer> {
  for (let start = 1; ; start++) {
    try {
      return await startOnce(options);
    } catch (err) {
      if (!(err instanceof ExitedBeforeReadyError) || start >= STARTS) throw err;
    }
  }
}

async function startOnce(options: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const cli = temporalCliPath();
  const [freeGrpc, freeUi] = await findFreePorts(2);
  const port = options.port ?? freeGrpc!;
  const uiPort = options.uiPort === false ? null : (options.uiPort ?? freeUi!);
  const address = `127.0.0.1:${port}`;
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'warn'];
  if (uiPort === null) args.push('--headless');
  else args.push('--ui-port', String(uiPort));
  if (options.dbFilename !== undefined) args.push('--db-filename', options.dbFilename);
  if (options.searchAttributes !== false) {
    for (const key of TOKEN_SEARCH_ATTRIBUTES) args.push('--search-attribute', `${key.name}=${SEARCH_ATTRIBUTE_TYPE_FLAG[key.type]}`);
  }
  for (const namespace of options.namespaces ?? []) args.push('--namespace', namespace);
  for (const [key, value] of Object.entries(options.dynamicConfig ?? {}))
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);

  let child: ChildProcess | null = null;
  const start = async () => {
    const log = options.logFile === undefined ? 'ignore' : createWriteStream(options.logFile, { flags: 'a' });
    const proc = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: options.ownProcessGroup ?? false });
    const stderrTail = tailOf(proc.stderr);
    if (log !== 'ignore') {
      proc.stdout.pipe(log);
      proc.stderr.pipe(log);
    } else {
      proc.stdout.resume();
    }
    child = proc;
    await waitUntilReady(address, proc, options.readyTimeoutMs ?? 120_000, stderrTail);
  };
  const stop = async () => {
    const proc = child;
    child = null;
    if (proc !== null) await stopChild(proc);
  };
  process.once('exit', () => child?.kill('SIGKILL'));

  await start();
  return {
    address,
    uiUrl: uiPort === null ? null : `http://127.0.0.1:${uiPort}`,
    get pid() {
      return child?.pid;
    },
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}

/** The dev server exited before it answered; `output` is the end of what it printed on stderr. */
class ExitedBeforeReadyError extends Error {
  constructor(
    description: string,
    readonly output: string,
  ) {
    super(`Temporal dev server exited (${description}) before it was ready${output === '' ? '' : `: ${output}`}`);
  }
}

/** Keeps the last few lines a stream carries, for an error message. */
function tailOf(stream: Readable, lines = 5): () => string {
  let tail: string[] = [];
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    tail = [...tail, ...chunk.split('\n').filter((line) => line.trim() !== '')].slice(-lines);
  });
  return () => tail.join('\n');
}

async function waitUntilReady(address: string, proc: ChildProcess, timeoutMs: number, stderrTail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (hasExited(proc)) throw new ExitedBeforeReadyError(exitDescription(proc), stderrTail());
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.describeNamespace({ namespace: 'default' });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  proc.kill('SIGKILL');
  throw new Error(`Temporal dev server at ${address} was not ready within ${timeoutMs} ms: ${String(lastError)}`);
}
