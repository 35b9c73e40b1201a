/**
 * The child processes of the local stack and the tests: how to tell that one is gone, how to stop
 * one whatever state it is in, and how to wait until one serves. A process killed by a signal has
 * `signalCode` set and `exitCode` null, so checking `exitCode` alone waits forever for an `exit`
 * event that has already fired.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/** Whether the process has exited, by itself or by a signal. */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** How it ended, for messages: `code 1` or `SIGKILL`; `running` while it runs. */
export function exitDescription(child: ChildProcess): string {
  if (child.exitCode !== null) return `code ${child.exitCode}`;
  return child.signalCode ?? 'running';
}

export interface StopChildOptions {
  /** The signal sent first; `SIGKILL` for a crash (nothing flushed, no grace). @default 'SIGTERM' */
  signal?: NodeJS.Signals;
  /** How long the child may take to exit after `signal` before it gets SIGKILL. @default 10_000 */
  graceMs?: number;
}

/**
 * Stops `child`: sends `signal` (SIGTERM unless told), then SIGKILL if it has not exited after
 * `graceMs`, so a child that ignores or hangs on SIGTERM cannot hang its parent. Resolves once it
 * has exited, with how ({@link exitDescription}: `code 0`, `SIGTERM`, `SIGKILL`…); at once for a
 * child already gone or never started.
 */
export async function stopChild(child: ChildProcess, { signal = 'SIGTERM', graceMs = 10_000 }: StopChildOptions = {}): Promise<string> {
  // No pid: spawning failed (an 'error' event), and no 'exit' event is due.
  if (hasExited(child) || child.pid === undefined) return exitDescription(child);
  const exited = once(child, 'exit');
  child.kill(signal);
  const killer = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(killer);
  }
  return exitDescription(child);
}

/** A URL that did not answer 2xx in time, or whose server exited first. */
export class NotAnsweringError extends Error {
  constructor(
    /** What was waited for, e.g. `Jaeger`. */
    readonly what: string,
    /** The first URL that has not answered 2xx. */
    readonly url: string,
    /** Its last answer: `HTTP 503`, or the request's error. */
    readonly lastAnswer: string,
    /** How the child serving it exited ({@link exitDescription}), if it did; undefined if it runs or there is none. */
    readonly exit: string | undefined,
    timeoutMs: number,
    output: string,
  ) {
    const why =
      exit === undefined ? `did not answer 2xx at ${url} within ${timeoutMs} ms` : `exited (${exit}) before it answered 2xx at ${url}`;
    super(`${what} ${why} (last answer: ${lastAnswer})${output === '' ? '' : `:\n${output}`}`);
    this.name = 'NotAnsweringError';
  }
}

export interface WaitUntilAnsweringOptions {
  /** What is waited for, for the error message, e.g. `Jaeger`. */
  what: string;
  /** The process serving the URLs: if it exits, the wait fails at once, saying how it exited. */
  child?: ChildProcess;
  /** @default 120_000 */
  timeoutMs?: number;
  /** The pause between two polls of a URL. @default 250 */
  intervalMs?: number;
  /** The end of the child's output, appended to the error message. */
  output?: () => string;
}

/**
 * Polls each of `urls` (GET, in order) until it answers 2xx, and resolves once every one has.
 * Rejects with a {@link NotAnsweringError} naming the URL and its last answer when the deadline
 * passes, or as soon as `child` exits. A request is given no longer than the time left.
 */
export async function waitUntilAnswering(urls: readonly string[], options: WaitUntilAnsweringOptions): Promise<void> {
  const { what, child, timeoutMs = 120_000, intervalMs = 250, output = () => '' } = options;
  const deadline = Date.now() + timeoutMs;
  for (const url of urls) {
    let lastAnswer = 'none yet';
    for (;;) {
      if (child !== undefined && hasExited(child))
        throw new NotAnsweringError(what, url, lastAnswer, exitDescription(child), timeoutMs, output());
      const left = deadline - Date.now();
      if (left <= 0) throw new NotAnsweringError(what, url, lastAnswer, undefined, timeoutMs, output());
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(left) });
        await response.body?.cancel();
        if (response.ok) break;
        lastAnswer = `HTTP ${response.status}`;
      } catch (err) {
        lastAnswer = requestError(err);
      }
      await sleep(intervalMs);
    }
  }
}

/** fetch's own message is `fetch failed`: the cause (e.g. `connect ECONNREFUSED …`) says why. */
function requestError(err: unknown): string {
  const cause = (err as { cause?: unknown } | null)?.cause;
  const reason = cause instanceof Error ? cause : err;
  return reason instanceof Error ? reason.message : String(reason);
}
