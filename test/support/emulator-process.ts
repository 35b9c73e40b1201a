/**
 * The IAM emulator as a separate OS process (`dev/iam-emulator/main.ts`, what `make demo` runs),
 * for tests that measure timing at the provider's edge: its clock and its event loop are its own,
 * as a real IAM's are, so a busy test process cannot bunch up the arrival times it records.
 *
 * The request log is read from the lines the emulator prints per token request.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EmulatorConfig } from '../../dev/iam-emulator/config.js';
import { exitDescription, stopChild } from '../../dev/child-process.js';

const ROOT = join(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'dev', 'iam-emulator', 'main.ts');
const DAY_MS = 86_400_000;

/** One token request, from the emulator's printed line. */
export interface PrintedRequest {
  /** When it arrived (Unix ms, the emulator's clock; printed to the millisecond). */
  at: number;
  /** The HTTP status, or undefined when none was sent (reset, hang). */
  status: number | undefined;
  outcome: string;
  clientId: string | undefined;
}

export interface EmulatorProcess {
  /** The token endpoint URL it printed. */
  readonly tokenUrl: string;
  /** The token requests it printed so far, in arrival order. */
  requests(): PrintedRequest[];
  /** Stops it with SIGTERM and removes its config file. Idempotent. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts the emulator with `config` on a free port and resolves once it printed its URLs. */
export async function startEmulatorProcess(
  config: Omit<EmulatorConfig, 'port'>,
  { readyTimeoutMs = 30_000 } = {},
): Promise<EmulatorProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'iam-emulator-'));
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, configPath, '--port', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));

  let output = '';
  let pending = '';
  const requests: PrintedRequest[] = [];
  let resolveUrl: (url: string) => void;
  const tokenUrl = new Promise<string>((resolve) => (resolveUrl = resolve));
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      const url = /token endpoint:\s+(\S+)/.exec(line);
      if (url) resolveUrl(url[1]!);
      const request = parseRequestLine(line, Date.now());
      if (request) requests.push(request);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));

  const stop = async () => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  const exited = once(child, 'exit').then(() => {
    throw new Error(`IAM emulator process exited during start (${exitDescription(child)}):\n${output}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`IAM emulator process printed no URL within ${readyTimeoutMs} ms:\n${output}`)),
      readyTimeoutMs,
    );
  });
  try {
    const url = await Promise.race([tokenUrl, exited, timeout]);
    return { tokenUrl: url, requests: () => [...requests], stop };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
    exited.catch(() => undefined);
  }
}

/**
 * Parses `HH:MM:SS.mmm STATUS OUTCOME CLIENT (METHOD) from IP` (`---` for no status, `-` for no
 * client). The line holds the UTC time of day; the date is the one that puts it closest before
 * `receivedAt`.
 */
export function parseRequestLine(line: string, receivedAt: number): PrintedRequest | undefined {
  const match = /^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) (\d{3}|---) (\S+)\s+(\S+) \(/.exec(line);
  if (!match) return undefined;
  const [, hours, minutes, seconds, millis, status, outcome, clientId] = match;
  const timeOfDay = ((Number(hours) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000 + Number(millis);
  let at = Math.floor(receivedAt / DAY_MS) * DAY_MS + timeOfDay;
  // Printed just before midnight, read just after.
  if (at > receivedAt + 60_000) at -= DAY_MS;
  return {
    at,
    status: status === '---' ? undefined : Number(status),
    outcome: outcome!,
    clientId: clientId === '-' ? undefined : clientId,
  };
}
