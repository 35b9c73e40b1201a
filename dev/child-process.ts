/**
 * How the local stack and the tests tell that a child process is gone. A process killed by a
 * signal has `signalCode` set and `exitCode` null, so checking `exitCode` alone waits forever for
 * an `exit` event that has already fired.
 */
import type { ChildProcess } from 'node:child_process';

/** Whether the process has exited, by itself or by a signal. */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** How it ended, for messages: `code 1` or `SIGKILL`; `running` while it runs. */
export function exitDescription(child: ChildProcess): string {
  if (child.exitCode !== null) return `code ${child.exitCode}`;
  return child.signalCode ?? 'running';
}
