/**
 * The worker's logger, shared by the SDK, the Rust core and the activities through
 * `Runtime.install`: the SDK's readable lines (`LOG_FORMAT=pretty`) or one JSON object per line for
 * log pipelines (`LOG_FORMAT=json`). Secrets and tokens are never in what it is given
 * (docs/design.md, "No secret in Temporal"), and `Redacted` values serialize as `[redacted]` in
 * both formats.
 */
import { DefaultLogger, type LogEntry, type LogLevel, type LogMetadata } from '@temporalio/worker';
import type { Settings } from '../shared/settings.js';

/**
 * SDK warnings that describe this worker's design rather than a problem: the IAM worker runs
 * activities only (the fleet-wide rate limit belongs to its own task queue), so it polls no
 * workflow tasks on purpose. They are logged at debug.
 */
const EXPECTED_SDK_WARNINGS = new Set(['No workflows registered, not polling for workflow tasks']);

export interface WorkerLoggerOptions {
  level: LogLevel;
  format: Settings['LOG_FORMAT'];
  /** Where JSON lines go. @default process.stderr, like the SDK's own lines */
  writeLine?: (line: string) => void;
}

class WorkerLogger extends DefaultLogger {
  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    super.log(level === 'WARN' && EXPECTED_SDK_WARNINGS.has(message) ? 'DEBUG' : level, message, meta);
  }
}

/** The logger for `Runtime.install({ logger })`. */
export function createWorkerLogger({
  level,
  format,
  writeLine = (line) => process.stderr.write(line),
}: WorkerLoggerOptions): DefaultLogger {
  if (format === 'pretty') return new WorkerLogger(level);
  return new WorkerLogger(level, (entry) => writeLine(`${toJsonLine(entry)}\n`));
}

/** `{"time":"…","level":"WARN","message":"…",…meta}`: errors with name, message and stack. */
export function toJsonLine({ level, message, meta, timestampNanos }: LogEntry): string {
  const time = new Date(Number(timestampNanos / 1_000_000n)).toISOString();
  // These three first and never overwritten by a metadata field of the same name.
  return JSON.stringify(Object.assign({ time, level, message }, meta, { time, level, message }), jsonValue);
}

function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  // An Error's fields are not enumerable, so JSON.stringify would print `{}`; its own enumerable
  // ones (an ApplicationFailure's `type`, `details`, `nonRetryable`, …) come along.
  if (value instanceof Error) return { ...value, name: value.name, message: value.message, stack: value.stack };
  return value;
}
