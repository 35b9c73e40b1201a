/** Exit codes of tokenctl: 0 done, 1 failed (the message says what was wrong), 2 wrong usage. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A failure whose message already says what went wrong and how to fix it. */
export class CliError extends Error {
  readonly code = 'cli_failed';
}

/** Writes a line of a command's output. */
export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}
