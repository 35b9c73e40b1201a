/**
 * Prometheus and promtool, built pinned by dev/prometheus/ensure.sh (`make prometheus`). A server
 * started here gets its own free loopback port and its own data directory, scrapes the given
 * targets statically, and evaluates the given rules file; {@link PrometheusServer.stop} ends it
 * and deletes the directory.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { hasExited, stopChild } from '../../dev/child-process.js';
import { findFreePort } from '../../dev/free-port.js';

const execFileAsync = promisify(execFile);
const ENSURE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dev', 'prometheus', 'ensure.sh');

/** The folder holding `prometheus` and `promtool`, built once (`make prometheus`). */
export async function prometheusFolder(): Promise<string> {
  const { stdout } = await execFileAsync('bash', [ENSURE], { timeout: 1_800_000 });
  return stdout.trim();
}

/** What `promtool` printed and how it exited. */
export interface PromtoolRun {
  code: number;
  output: string;
}

/** Runs `promtool` with `args` (never rejects: the exit code is the result). */
export async function promtool(args: string[], cwd?: string): Promise<PromtoolRun> {
  const binary = join(await prometheusFolder(), 'promtool');
  return new Promise((resolve) => {
    execFile(binary, args, { cwd, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, output: stdout + stderr });
    });
  });
}

/** One alert as `/api/v1/alerts` lists it. */
export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

export interface PrometheusOptions {
  /** The rules file's text. */
  rules: string;
  /** `host:port` targets of one static scrape job, `job="token-lifecycle-worker"`. */
  targets: string[];
  /** Scrape and rule evaluation interval. @default '1s' */
  interval?: string;
}

export interface PrometheusServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** The alerts pending or firing now. */
  alerts(): Promise<PrometheusAlert[]>;
  /** An instant query's vector. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>>;
  /** Its log so far. */
  output(): string;
  /** Stops it and deletes its data directory. Idempotent. */
  stop(): Promise<void>;
}

/** Starts Prometheus and waits until it is ready and has scraped every target once. */
export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const binary = join(await prometheusFolder(), 'prometheus');
  const dir = await mkdtemp(join(tmpdir(), 'prometheus-'));
  const interval = options.interval ?? '1s';
  await writeFile(join(dir, 'rules.yml'), options.rules);
  await writeFile(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: interval, evaluation_interval: interval },
      rule_files: [join(dir, 'rules.yml')],
      scrape_configs: [{ job_name: 'token-lifecycle-worker', static_configs: [{ targets: options.targets }] }],
    }),
  );
  const port = await findFreePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  for (const stream of [child.stdout, child.stderr])
    stream.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));

  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`GET ${path}: ${body.error ?? response.status}`);
    return body.data;
  };
  const stop = async () => {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (hasExited(child)) throw new Error(`Prometheus exited before it was ready:\n${output}`);
      const ready = await fetch(`${url}/-/ready`).then(
        (response) => response.ok,
        () => false,
      );
      if (ready) {
        const { activeTargets } = await api<{ activeTargets: Array<{ health: string }> }>('/api/v1/targets');
        if (activeTargets.length === options.targets.length && activeTargets.every((target) => target.health === 'up')) break;
      }
      if (Date.now() > deadline) throw new Error(`Prometheus not ready, or its targets not up, after 60 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url,
    alerts: async () => (await api<{ alerts: PrometheusAlert[] }>('/api/v1/alerts')).alerts,
    query: async (expr) =>
      (
        await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
          `/api/v1/query?query=${encodeURIComponent(expr)}`,
        )
      ).result.map(({ metric, value }) => ({ metric, value: Number(value[1]) })),
    output: () => output,
    stop,
  };
}
