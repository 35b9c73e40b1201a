/**
 * `npm run bench:worker`: what one worker process costs per client registration, the figures that
 * size a deployment (how many clients one worker holds, what it needs while they sleep).
 *
 * Laid out as in production: the built worker (`dist/worker/main.js`, `npm run build` first) and the
 * IAM emulator (with the provider's 50 requests/s edge) run as processes of their own; this process
 * registers the clients and samples the worker's memory and CPU from /proc. Prints figures;
 * asserts nothing (targets belong here, not in timed tests).
 *
 *   BENCH_CLIENTS (1000)            client registrations
 *   BENCH_IDLE_SECONDS (30)         how long to watch the worker once every token is stored
 *   BENCH_TOKEN_LIFETIME (300)      the emulator's token lifetime, in seconds
 *   IAM_MAX_RPS (40)                the worker's fleet-wide cap
 *   MAX_CACHED_WORKFLOWS            the worker's workflow cache (default: the SDK's)
 *   BENCH_TEMPORAL_ADDRESS          a running Temporal server to use (default: start a dev server)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { tokenKey } from '../shared/redis-layout.js';
import { TokenAdmin } from '../client/admin.js';
import { hasExited } from '../dev/child-process.js';
import { findFreePort } from '../dev/free-port.js';
import { startTemporalDevServer, type TemporalDevServer } from '../dev/temporal-dev-server.js';
import { busiestSecond } from '../test/support/busiest-second.js';
import { startEmulatorProcess } from '../test/support/emulator-process.js';
import { startRedisServer } from '../test/support/redis-server.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const TOKEN_LIFETIME_SECONDS = Number(process.env.BENCH_TOKEN_LIFETIME ?? 300);
const IAM_MAX_RPS = Number(process.env.IAM_MAX_RPS ?? 40);
const ROOT = join(import.meta.dirname, '..');
const WORKER = join(ROOT, 'dist', 'worker', 'main.js');
const SECRET = 'bench-secret';
/** Every token of a stampede of registrations should be stored within this × CLIENTS / IAM_MAX_RPS seconds. */
const STAMPEDE_TARGET = 1.15;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** Resident memory of a process, in MiB. */
function rssMiB(pid: number): number {
  const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kib) / 1024;
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command name, which is in parentheses and may hold spaces: utime, stime
  // are the 14th and 15th of the line, the 12th and 13th of these.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function main(): Promise<void> {
  if (!existsSync(WORKER)) throw new Error('dist/worker/main.js is missing: run `npm run build` first');
  const cleanups: Array<() => unknown> = [];
  try {
    let temporalAddress = process.env.BENCH_TEMPORAL_ADDRESS;
    if (temporalAddress === undefined) {
      const server: TemporalDevServer = await startTemporalDevServer({ uiPort: false });
      cleanups.push(() => server.stop());
      temporalAddress = server.address;
    }
    const redisServer = await startRedisServer();
    cleanups.push(() => redisServer.stop());
    const redis = new Redis(redisServer.url);
    cleanups.push(() => redis.disconnect());
    const clientIds = Array.from({ length: CLIENTS }, (_, i) => `bench-${String(i).padStart(5, '0')}`);
    const iam = await startEmulatorProcess({
      rateLimitPerSecond: 50,
      tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
      clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })),
    });
    cleanups.push(() => iam.stop());

    const taskQueue = `bench-${randomUUID()}`;
    let log = '';
    const worker = spawn(process.execPath, [WORKER], {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: temporalAddress,
        TEMPORAL_TASK_QUEUE: taskQueue,
        REDIS_URL: redisServer.url,
        IAM_MAX_RPS: String(IAM_MAX_RPS),
        METRICS_PORT: String(await findFreePort()),
        LOG_LEVEL: 'WARN',
        LOG_FORMAT: 'json',
        BENCH_SECRET: SECRET,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
    worker.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    cleanups.push(async () => {
      if (hasExited(worker)) return;
      const exited = once(worker, 'exit');
      worker.kill('SIGTERM');
      await exited;
    });

    const connection = await Connection.connect({ address: temporalAddress });
    const client = new Client({ connection });
    cleanups.push(async () => {
      for await (const execution of client.workflow.list({ query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'` })) {
        await client.workflow
          .getHandle(execution.workflowId)
          .terminate('benchmark finished')
          .catch(() => undefined);
      }
      await connection.close();
    });
    const admin = new TokenAdmin(client, { taskQueue });
    await sleep(2_000); // the worker connects and starts polling
    if (hasExited(worker)) throw new Error(`The worker exited at start:\n${log}`);
    const rssAtStart = rssMiB(worker.pid!);
    const cpuAtStart = cpuSeconds(worker.pid!);

    const startedAt = performance.now();
    for (let i = 0; i < clientIds.length; i += 50) {
      await Promise.all(
        clientIds
          .slice(i, i + 50)
          .map((clientId) =>
            admin.register({ clientId, tokenUrl: iam.tokenUrl, authMethod: 'client_secret_post', secretRef: 'env:BENCH_SECRET' }),
          ),
      );
    }
    const registeredMs = performance.now() - startedAt;
    const keys = clientIds.map((clientId) => tokenKey('oauth:', clientId));
    let peakRss = rssAtStart;
    for (;;) {
      peakRss = Math.max(peakRss, rssMiB(worker.pid!));
      if ((await redis.exists(...keys)) === CLIENTS) break;
      if (hasExited(worker)) throw new Error(`The worker exited:\n${log}`);
      await sleep(250);
    }
    const allStoredMs = performance.now() - startedAt;
    const cpuAfterAcquiring = cpuSeconds(worker.pid!);
    const rssAfterAcquiring = rssMiB(worker.pid!);

    await sleep(IDLE_SECONDS * 1000);
    const cpuAfterIdle = cpuSeconds(worker.pid!);
    const rssAfterIdle = rssMiB(worker.pid!);
    const requests = iam.requests();
    const rejected = requests.filter((request) => request.outcome !== 'issued').length;
    const arrivals = requests.map((request) => request.at).sort((a, b) => a - b);
    const requestsPerSecond = arrivals.length > 1 ? (arrivals.length - 1) / ((arrivals.at(-1)! - arrivals[0]!) / 1000) : 0;
    const targetSeconds = (STAMPEDE_TARGET * CLIENTS) / IAM_MAX_RPS;

    const rows: Array<[string, string]> = [
      ['clients', String(CLIENTS)],
      ['IAM_MAX_RPS', String(IAM_MAX_RPS)],
      ['MAX_CACHED_WORKFLOWS', process.env.MAX_CACHED_WORKFLOWS ?? "the SDK's default (scales with the heap)"],
      ['registrations sent', `${(registeredMs / 1000).toFixed(1)} s`],
      [
        'every token stored',
        `${(allStoredMs / 1000).toFixed(1)} s (at IAM_MAX_RPS: ${(CLIENTS / IAM_MAX_RPS).toFixed(1)} s; target ≤ ${targetSeconds.toFixed(1)} s: ${allStoredMs / 1000 <= targetSeconds ? 'met' : 'missed'})`,
      ],
      ['token requests', `${requests.length} (${rejected} not issued)`],
      [
        'token requests per second',
        `${requestsPerSecond.toFixed(1)} (IAM_MAX_RPS ${IAM_MAX_RPS}), busiest second at the edge ${busiestSecond(arrivals)}`,
      ],
      ['worker RSS at start', `${rssAtStart.toFixed(0)} MiB`],
      ['worker RSS, all active', `${rssAfterAcquiring.toFixed(0)} MiB (peak ${peakRss.toFixed(0)} MiB)`],
      [`worker RSS after ${IDLE_SECONDS} s idle`, `${rssAfterIdle.toFixed(0)} MiB`],
      ['per client', `${(((rssAfterIdle - rssAtStart) * 1024) / CLIENTS).toFixed(1)} KiB`],
      [
        'CPU while acquiring',
        `${(cpuAfterAcquiring - cpuAtStart).toFixed(1)} s (${(((cpuAfterAcquiring - cpuAtStart) * 1000) / CLIENTS).toFixed(1)} ms per client)`,
      ],
      ['CPU while idle', `${(((cpuAfterIdle - cpuAfterAcquiring) / IDLE_SECONDS) * 100).toFixed(1)} % of a core`],
    ];
    const width = Math.max(...rows.map(([name]) => name.length));
    console.log(`worker scale (${process.platform}, Node.js ${process.version})`);
    for (const [name, value] of rows) console.log(`  ${name.padEnd(width)}  ${value}`);
  } finally {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
