/**
 * `npm run bench:worker`: what one worker process costs per client registration and per renewal,
 * the figures that size a deployment (docs/deployment.md, "Sizing"), each beside its target.
 *
 * Laid out as in production: the built worker (`dist/worker/main.js`, `npm run build` first) and the
 * IAM emulator (with the provider's 50 requests/s edge) run as processes of their own; this process
 * registers the clients, samples the worker's memory and its CPU by thread from /proc, and reads a
 * sample of the histories. Prints figures; asserts nothing (targets belong here, not in timed tests).
 *
 * Two phases: the stampede (every client registered at once, until every token is stored), then
 * steady renewal for BENCH_IDLE_SECONDS, in which each client renews every 0.85 × the lifetime.
 *
 *   BENCH_CLIENTS (1000)            client registrations
 *   BENCH_IDLE_SECONDS (60)         how long to watch steady renewal once every token is stored
 *   BENCH_TOKEN_LIFETIME (60)       the emulator's token lifetime, in seconds
 *   IAM_MAX_RPS (40)                the worker's fleet-wide cap
 *   BENCH_NODE_OPTIONS              NODE_OPTIONS of the worker only (heap flags, to compare)
 *   BENCH_CPU_PROFILE               1: profile the worker (node --cpu-prof) and print, per thread,
 *                                   where the CPU of steady renewal went (bench/cpu-profile.ts)
 *   BENCH_TEMPORAL_ADDRESS          a running Temporal server to use (default: start a dev server)
 *   BENCH_SHAPE (both)              how a current token is renewed (docs/design.md, "Local
 *                                   renewals"): local (a local activity), queued (the IAM task
 *                                   queue, `policy.localRenewals: false`), or both, one run after the
 *                                   other, side by side with the rule that chose the default
 *   BENCH_TRACING (off)             on: the worker traces, exporting OTLP to a local Jaeger
 *                                   (dev/jaeger); both: a run without, then one with, side by side
 *   BENCH_CACHE_SIZES               e.g. 250,1000,4000: one run per MAX_CACHED_WORKFLOWS, and the
 *                                   curve of RSS against CPU per renewal (replays) they draw
 *
 * Late renewals are counted from the IAM's log: a client's request that came more than 5 s after
 * the latest renewal point its previous token allowed (0.85 × the lifetime after that request).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Redis } from 'ioredis';
import { tokenKey } from '../shared/redis-layout.js';
import { workflowIdFor } from '../workflows/messages.js';
import { TokenAdmin } from '../client/admin.js';
import { hasExited, stopChild } from '../dev/child-process.js';
import { findFreePort } from '../dev/free-port.js';
import { startTemporalDevServer, type TemporalDevServer } from '../dev/temporal-dev-server.js';
import { busiestSecond } from '../test/support/busiest-second.js';
import { summarizeProfiles } from './cpu-profile.js';
import { DEFAULT_MAX_CACHED_WORKFLOWS, STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT_MS, WORKER_STOP_GRACE_MS } from '../worker/token-workers.js';
import { startEmulatorProcess, type PrintedRequest } from '../test/support/emulator-process.js';
import { tokenRequests } from '../test/support/workflow-history.js';
import { startJaeger } from '../test/support/jaeger.js';
import { startRedisServer } from '../test/support/redis-server.js';
import { terminateRunning } from '../test/support/terminate-running.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const TOKEN_LIFETIME_SECONDS = Number(process.env.BENCH_TOKEN_LIFETIME ?? 60);
const IAM_MAX_RPS = Number(process.env.IAM_MAX_RPS ?? 40);
const ROOT = join(import.meta.dirname, '..');
const WORKER = join(ROOT, 'dist', 'worker', 'main.js');
const WORKFLOW_BUNDLE = join(ROOT, 'dist', 'workflow-bundle.js');
const CPU_PROFILE = process.env.BENCH_CPU_PROFILE === '1';
const SECRET = 'bench-secret';
/** Every token of a stampede of registrations should be stored within this × CLIENTS / IAM_MAX_RPS seconds. */
const STAMPEDE_TARGET = 1.15;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;
/** The targets of issues 17 and 30, printed beside each figure. */
const TARGETS = {
  cpuMsPerRenewal: 8,
  serverCpuMsPerRenewal: 10,
  eventsPerCycle: 7,
  actionsPerCycle: 2,
  rssKiBPerClient: 150,
  workerCoreShare: 0.5,
  workerRssMiB: 1024,
};
/** How much later than its renewal point a renewal may come before it counts as late. */
const LATE_AFTER_MS = 5_000;
/** The share of total CPU per renewal (worker + server) local renewals must save to be the default. */
const LOCAL_RENEWALS_MIN_SAVING = 0.3;
/** Workflows whose histories are read for the per-cycle figures. */
const HISTORY_SAMPLE = 20;
/** A token's renewals in a 30-day month at 300 s tokens, renewed at 0.85 × the lifetime. */
const CYCLES_PER_MONTH_AT_300_S = (30 * 86_400) / (0.85 * 300);

const { EventType } = proto.temporal.api.enums.v1;
/**
 * The history events that Temporal Cloud bills as actions (docs/deployment.md, "Sizing"); a
 * continue-as-new is billed as the new run's start.
 */
const BILLABLE_EVENTS: ReadonlySet<number> = new Set([
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
  EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
  EventType.EVENT_TYPE_TIMER_STARTED,
  EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
  EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
  EventType.EVENT_TYPE_MARKER_RECORDED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
]);

/** What each thread of the worker is, by the name Node.js, V8 and the SDK's core give it. */
function threadGroup(name: string): string {
  if (name === 'MainThread') return 'main JS thread (activities, Redis, metrics, its GC)';
  if (name === 'WorkerThread') return 'workflow thread (the workflow sandbox, its GC)';
  if (name === 'V8Worker' || name === 'DelayedTaskSche') return 'V8 helper threads (concurrent GC, compilation)';
  if (name.startsWith('libuv-worker')) return 'libuv pool (DNS, files, crypto)';
  return 'Rust core threads (gRPC, task polling)';
}

/** CPU seconds used so far by each group of a process's threads (see {@link threadGroup}). */
function cpuByThreadGroup(pid: number): Map<string, number> {
  const groups = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const group = threadGroup(name);
      groups.set(group, (groups.get(group) ?? 0) + cpuSecondsOf(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // The thread ended between the listing and the read: its time is in no later sample either.
    }
  }
  return groups;
}

function met(value: number, target: number): string {
  return value <= target ? 'met' : 'missed';
}

/** The whole machine's busy and total CPU time so far (/proc/stat, in clock ticks), and its cores. */
function machineCpu(): { busy: number; total: number; cores: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  // cpu  user nice system idle iowait irq softirq steal (guest time is counted in user already)
  const ticks = lines[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = ticks[3]! + ticks[4]!;
  const total = ticks.reduce((sum, t) => sum + t, 0);
  return { busy: total - idle, total, cores: lines.filter((line) => /^cpu\d/.test(line)).length };
}

function busyPercent(before: ReturnType<typeof machineCpu>, after: ReturnType<typeof machineCpu>): number {
  return (100 * (after.busy - before.busy)) / (after.total - before.total);
}

/** Resident memory of a process, in MiB. */
function rssMiB(pid: number): number {
  const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kib) / 1024;
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  return cpuSecondsOf(`/proc/${pid}/stat`);
}

/** CPU seconds (user + system) of a /proc `stat` file, a process's or a thread's. */
function cpuSecondsOf(statFile: string): number {
  const stat = readFileSync(statFile, 'utf8');
  // The fields after the command name, which is in parentheses and may hold spaces: utime, stime
  // are the 14th and 15th of the line, the 12th and 13th of these.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

const TRACING = process.env.BENCH_TRACING ?? 'off';
const SHAPE = process.env.BENCH_SHAPE ?? 'both';
const CACHE_SIZES = process.env.BENCH_CACHE_SIZES?.split(',').map(Number);

/** How renewals of current tokens are made (docs/design.md, "Local renewals"). */
type RenewalShape = 'local' | 'queued';

/** One run's settings. */
interface RunOptions {
  label: string;
  tracing: boolean;
  shape: RenewalShape;
  /** MAX_CACHED_WORKFLOWS; undefined for the worker's default. */
  cacheSize: number | undefined;
}

/** One run's key figures, for the side-by-side summary. */
interface RunFigures {
  options: RunOptions;
  workerMsPerRenewal: number;
  serverMsPerRenewal: number;
  eventsPerCycle: number;
  /** The worker's CPU in steady renewal, as a share of one core. */
  workerCoreShare: number;
  rssMiB: number;
  renewals: number;
  lateRenewals: number;
}

/** Renewals in the IAM's log, and those that came more than {@link LATE_AFTER_MS} after their renewal point. */
function renewalTimeliness(requests: readonly PrintedRequest[]): { renewals: number; late: number; expired: number } {
  const lastIssued = new Map<string, number>();
  let renewals = 0;
  let late = 0;
  let expired = 0;
  for (const request of requests) {
    if (request.outcome !== 'issued' || request.clientId === undefined) continue;
    const previous = lastIssued.get(request.clientId);
    lastIssued.set(request.clientId, request.at);
    if (previous === undefined) continue;
    renewals++;
    // Jitter only moves a renewal earlier: 0.85 × the lifetime is the latest point the policy allows.
    if (request.at > previous + 0.85 * TOKEN_LIFETIME_SECONDS * 1000 + LATE_AFTER_MS) late++;
    if (request.at > previous + TOKEN_LIFETIME_SECONDS * 1000) expired++;
  }
  return { renewals, late, expired };
}

/** One run of the benchmark, printed; resolves with its key figures. */
async function run(options: RunOptions): Promise<RunFigures> {
  const { tracing, shape, cacheSize } = options;
  if (!existsSync(WORKER)) throw new Error('dist/worker/main.js is missing: run `npm run build` first');
  const cleanups: Array<() => unknown> = [];
  try {
    // Spans leave for a real backend, as in production: their export is part of the cost.
    const jaeger = tracing ? await startJaeger() : undefined;
    if (jaeger !== undefined) cleanups.push(() => jaeger.destroy());
    // The run without tracing has none, whatever this shell exports.
    const untracedEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('OTEL_')));
    let temporalAddress = process.env.BENCH_TEMPORAL_ADDRESS;
    let server: TemporalDevServer | undefined;
    if (temporalAddress === undefined) {
      const devServer = await startTemporalDevServer({ uiPort: false });
      server = devServer;
      cleanups.push(() => devServer.stop());
      temporalAddress = devServer.address;
    }
    /** The dev server's CPU seconds so far; undefined for a server of BENCH_TEMPORAL_ADDRESS. */
    const serverCpu = () => (server?.pid === undefined ? undefined : cpuSeconds(server.pid));
    // The worker writes a diagnostic report (without its environment: it holds the secret) on
    // SIGWINCH (the SDK shuts down on SIGUSR2): the only outside view of the workflow thread's heap.
    const reportDir = mkdtempSync(join(tmpdir(), 'bench-worker-report-'));
    cleanups.push(() => rmSync(reportDir, { recursive: true, force: true }));
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

    const profileDir = mkdtempSync(join(tmpdir(), 'bench-worker-profile-'));
    cleanups.push(() => rmSync(profileDir, { recursive: true, force: true }));
    const taskQueue = `bench-${randomUUID()}`;
    let log = '';
    const spawnedAt = performance.now();
    const worker = spawn(
      process.execPath,
      [
        '--report-on-signal',
        '--report-signal=SIGWINCH',
        '--report-exclude-env',
        '--report-compact',
        `--report-directory=${reportDir}`,
        ...(CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
        WORKER,
      ],
      {
        env: {
          ...untracedEnv,
          ...(jaeger !== undefined && { OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint, OTEL_SERVICE_NAME: 'bench-worker' }),
          TEMPORAL_ADDRESS: temporalAddress,
          TEMPORAL_TASK_QUEUE: taskQueue,
          REDIS_URL: redisServer.url,
          IAM_MAX_RPS: String(IAM_MAX_RPS),
          METRICS_PORT: String(await findFreePort()),
          LOG_LEVEL: 'WARN',
          LOG_FORMAT: 'json',
          BENCH_SECRET: SECRET,
          ...(cacheSize !== undefined && { MAX_CACHED_WORKFLOWS: String(cacheSize) }),
          ...(process.env.BENCH_NODE_OPTIONS !== undefined && { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS }),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    worker.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
    worker.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const stopWorker = () => stopChild(worker, { graceMs: WORKER_STOP_GRACE_MS });
    cleanups.push(stopWorker);

    const connection = await Connection.connect({ address: temporalAddress });
    const client = new Client({ connection });
    cleanups.push(async () => {
      await terminateRunning(client, taskQueue, 'benchmark finished');
      await connection.close();
    });
    const admin = new TokenAdmin(client, { taskQueue });
    await sleep(2_000); // the worker connects and starts polling
    if (hasExited(worker)) throw new Error(`The worker exited at start:\n${log}`);
    const rssAtStart = rssMiB(worker.pid!);
    const cpuAtStart = cpuSeconds(worker.pid!);
    const serverCpuAtStart = serverCpu();
    const machineAtStart = machineCpu();

    const startedAt = performance.now();
    for (let i = 0; i < clientIds.length; i += 50) {
      await Promise.all(
        clientIds.slice(i, i + 50).map((clientId) =>
          admin.register({
            clientId,
            tokenUrl: iam.tokenUrl,
            authMethod: 'client_secret_post',
            secretRef: 'env:BENCH_SECRET',
            ...(shape === 'queued' && { policy: { localRenewals: false } }),
          }),
        ),
      );
    }
    const registeredMs = performance.now() - startedAt;
    const keys = clientIds.map((clientId) => tokenKey('oauth:', clientId));
    let peakRss = rssAtStart;
    // A worker that cannot keep up (tokens expiring before their renewal) never has them all at
    // once: the steady phase starts anyway after four times the target, with what is stored.
    const targetSeconds = (STAMPEDE_TARGET * CLIENTS) / IAM_MAX_RPS;
    const stampedeDeadline = startedAt + 4 * targetSeconds * 1000 + 60_000;
    let stored = 0;
    for (;;) {
      peakRss = Math.max(peakRss, rssMiB(worker.pid!));
      stored = await redis.exists(...keys);
      if (stored === CLIENTS || performance.now() > stampedeDeadline) break;
      if (hasExited(worker)) throw new Error(`The worker exited:\n${log}`);
      await sleep(250);
    }
    const allStoredMs = performance.now() - startedAt;
    const cpuAfterAcquiring = cpuSeconds(worker.pid!);
    const serverCpuAfterAcquiring = serverCpu();
    const machineAfterAcquiring = machineCpu();
    const rssAfterAcquiring = rssMiB(worker.pid!);
    const heapAfterAcquiring = await heapsMiB(worker.pid!, reportDir);
    if (hasExited(worker)) throw new Error(`The worker exited:\n${log}`);

    // Steady renewal: CPU by thread, and the Temporal server's, per token request in the window.
    const idleFrom = Date.now();
    const idleFromMs = performance.now() - spawnedAt;
    const threadsBefore = cpuByThreadGroup(worker.pid!);
    const serverCpuBefore = serverCpu();
    await sleep(IDLE_SECONDS * 1000);
    if (hasExited(worker)) throw new Error(`The worker exited:\n${log}`);
    const threadsAfter = cpuByThreadGroup(worker.pid!);
    const serverCpuAfter = serverCpu();
    const cpuAfterIdle = cpuSeconds(worker.pid!);
    const rssAfterIdle = rssMiB(worker.pid!);
    const heapAfterIdle = await heapsMiB(worker.pid!, reportDir);
    const requests = iam.requests();
    const renewals = requests.filter((request) => request.at >= idleFrom && request.outcome === 'issued').length;
    const rejected = requests.filter((request) => request.outcome !== 'issued').length;
    const arrivals = requests
      .filter((request) => request.at < idleFrom)
      .map((request) => request.at)
      .sort((a, b) => a - b);
    const requestsPerSecond = arrivals.length > 1 ? (arrivals.length - 1) / ((arrivals.at(-1)! - arrivals[0]!) / 1000) : 0;
    const perClient = (seconds: number) => `${seconds.toFixed(1)} s (${((seconds * 1000) / CLIENTS).toFixed(1)} ms per client)`;
    const perRenewalMs = (seconds: number) => (renewals === 0 ? NaN : (seconds * 1000) / renewals);
    const workerMsPerRenewal = perRenewalMs(cpuAfterIdle - cpuAfterAcquiring);
    const serverMsPerRenewal =
      serverCpuBefore === undefined || serverCpuAfter === undefined ? NaN : perRenewalMs(serverCpuAfter - serverCpuBefore);
    const workerCoreShare = (cpuAfterIdle - cpuAfterAcquiring) / IDLE_SECONDS;
    const timeliness = renewalTimeliness(requests);
    const cycles = await historyPerCycle(client, clientIds.slice(0, HISTORY_SAMPLE));
    const rssPerClientKiB = ((rssAfterIdle - rssAtStart) * 1024) / CLIENTS;

    const rows: Array<[string, string]> = [
      ['run', options.label],
      ['clients', String(CLIENTS)],
      [
        'renewals of current tokens',
        shape === 'local' ? 'local activities (the default)' : 'queued on the IAM task queue (policy.localRenewals: false)',
      ],
      ['token lifetime', `${TOKEN_LIFETIME_SECONDS} s (renewed every ${(0.85 * TOKEN_LIFETIME_SECONDS).toFixed(0)} s)`],
      ['IAM_MAX_RPS', String(IAM_MAX_RPS)],
      ['MAX_CACHED_WORKFLOWS', cacheSize === undefined ? `the worker's default (${DEFAULT_MAX_CACHED_WORKFLOWS})` : String(cacheSize)],
      ['worker NODE_OPTIONS', process.env.BENCH_NODE_OPTIONS ?? '(none)'],
      ['tracing', jaeger === undefined ? 'off (no OTEL_* setting)' : `on: OTLP/HTTP to a local Jaeger (${jaeger.otlpHttpEndpoint})`],
      ['registrations sent', `${(registeredMs / 1000).toFixed(1)} s`],
      [
        'every token stored',
        stored === CLIENTS
          ? `${(allStoredMs / 1000).toFixed(1)} s (at IAM_MAX_RPS: ${(CLIENTS / IAM_MAX_RPS).toFixed(1)} s; target ≤ ${targetSeconds.toFixed(1)} s: ${met(allStoredMs / 1000, targetSeconds)})`
          : `never: ${stored} of ${CLIENTS} stored after ${(allStoredMs / 1000).toFixed(0)} s (target ≤ ${targetSeconds.toFixed(1)} s: missed; tokens expired before their renewal)`,
      ],
      ['token requests', `${requests.length} (${rejected} not issued)`],
      [
        'stampede requests per second',
        `${requestsPerSecond.toFixed(1)} (IAM_MAX_RPS ${IAM_MAX_RPS}), busiest second at the edge ${busiestSecond(arrivals)}`,
      ],
      [
        'CPU while acquiring',
        `worker ${perClient(cpuAfterAcquiring - cpuAtStart)}` +
          (serverCpuAtStart === undefined || serverCpuAfterAcquiring === undefined
            ? ''
            : `, Temporal server ${perClient(serverCpuAfterAcquiring - serverCpuAtStart)}`) +
          `; the machine's ${machineAfterAcquiring.cores} cores ${busyPercent(machineAtStart, machineAfterAcquiring).toFixed(0)} % busy`,
      ],
      [`renewals in ${IDLE_SECONDS} s of steady renewal`, String(renewals)],
      [
        'worker CPU per renewal',
        `${workerMsPerRenewal.toFixed(1)} ms (target ≤ ${TARGETS.cpuMsPerRenewal} ms: ${met(workerMsPerRenewal, TARGETS.cpuMsPerRenewal)}); ${(workerCoreShare * 100).toFixed(1)} % of a core (target ≤ ${TARGETS.workerCoreShare * 100} %: ${met(workerCoreShare, TARGETS.workerCoreShare)})`,
      ],
      ...[...threadsAfter.keys()]
        .sort()
        .map((group): [string, string] => [
          `  ${group}`,
          `${perRenewalMs((threadsAfter.get(group) ?? 0) - (threadsBefore.get(group) ?? 0)).toFixed(2)} ms`,
        ]),
      [
        'Temporal server CPU per renewal',
        serverCpuBefore === undefined || serverCpuAfter === undefined
          ? 'not measured (BENCH_TEMPORAL_ADDRESS)'
          : `${serverMsPerRenewal.toFixed(1)} ms (target ≤ ${TARGETS.serverCpuMsPerRenewal} ms: ${met(serverMsPerRenewal, TARGETS.serverCpuMsPerRenewal)}; the dev server, SQLite in memory); ${(((serverCpuAfter - serverCpuBefore) / IDLE_SECONDS) * 100).toFixed(1)} % of a core`,
      ],
      [
        'renewals late',
        `${timeliness.late} of ${timeliness.renewals} more than ${LATE_AFTER_MS / 1000} s after their renewal point, ${timeliness.expired} after their token expired (target: none late: ${timeliness.late === 0 ? 'met' : 'missed'})`,
      ],
      [
        'history per cycle',
        cycles === null
          ? `not measured: no sampled workflow renewed twice (lengthen BENCH_IDLE_SECONDS)`
          : `${cycles.events.toFixed(1)} events (target ≤ ${TARGETS.eventsPerCycle}: ${met(cycles.events, TARGETS.eventsPerCycle)}), ${(cycles.bytes / 1024).toFixed(2)} KiB, from ${cycles.sampled} cycles`,
      ],
      [
        'billable actions per cycle',
        cycles === null
          ? 'not measured'
          : `${cycles.actions.toFixed(2)} (${cycles.actionNames}; target ≤ ${TARGETS.actionsPerCycle}: ${met(cycles.actions, TARGETS.actionsPerCycle)}); at 300 s tokens ≈ ${Math.round(cycles.actions * CYCLES_PER_MONTH_AT_300_S)} per client per month`,
      ],
      [
        'workflow tasks timed out',
        cycles === null
          ? 'not measured'
          : `${cycles.workflowTaskTimeouts} in ${Math.min(HISTORY_SAMPLE, CLIENTS)} sampled histories (sticky queue schedule-to-start ${STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT_MS} ms, or the 10 s task timeout)`,
      ],
      ['worker RSS at start', `${rssAtStart.toFixed(0)} MiB`],
      ['worker RSS, all active', `${rssAfterAcquiring.toFixed(0)} MiB (peak ${peakRss.toFixed(0)} MiB)`],
      [
        `worker RSS after ${IDLE_SECONDS} s of renewal`,
        `${rssAfterIdle.toFixed(0)} MiB (target ≤ ${TARGETS.workerRssMiB} MiB: ${met(rssAfterIdle, TARGETS.workerRssMiB)})`,
      ],
      [
        'RSS per client',
        `${rssPerClientKiB.toFixed(1)} KiB (target ≤ ${TARGETS.rssKiBPerClient} KiB at 500 clients: ${met(rssPerClientKiB, TARGETS.rssKiBPerClient)})`,
      ],
      [
        'workflow-thread heap used',
        `${heapAfterAcquiring.workflowThread.toFixed(0)} MiB when every token was stored, ${heapAfterIdle.workflowThread.toFixed(0)} MiB after the renewals (no forced GC: garbage included)`,
      ],
      [
        'main-thread heap used',
        `${heapAfterAcquiring.main.toFixed(0)} MiB when every token was stored, ${heapAfterIdle.main.toFixed(0)} MiB after the renewals; the rest of the RSS is native (the SDK's Rust core, buffers, code)`,
      ],
    ];
    const width = Math.max(...rows.map(([name]) => name.length));
    console.log(`worker scale (${process.platform}, Node.js ${process.version})`);
    for (const [name, value] of rows) console.log(`  ${name.padEnd(width)}  ${value}`);
    if (CPU_PROFILE) {
      // The profiles are written as the worker exits; the SIGTERM drains it first.
      await terminateRunning(client, taskQueue, 'benchmark finished');
      await stopWorker();
      printProfiles(
        summarizeProfiles(profileDir, { fromMs: idleFromMs, toMs: idleFromMs + IDLE_SECONDS * 1000 }, ROOT, WORKFLOW_BUNDLE),
        renewals,
      );
    }
    return {
      options,
      workerMsPerRenewal,
      serverMsPerRenewal,
      eventsPerCycle: cycles?.events ?? NaN,
      workerCoreShare,
      rssMiB: rssAfterIdle,
      renewals,
      lateRenewals: timeliness.late,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
  }
}

/** Per thread of the worker, its CPU per renewal in steady renewal by owner, and its costliest functions. */
function printProfiles(threads: ReturnType<typeof summarizeProfiles>, renewals: number): void {
  const perRenewal = (ms: number) => `${(ms / renewals).toFixed(2)} ms`;
  const top = (map: Map<string, number>, count: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, count);
  console.log(`CPU profile of steady renewal (node --cpu-prof, self time per renewal; idle left out)`);
  for (const thread of threads) {
    console.log(`  ${thread.thread}: ${perRenewal(thread.busyMs)}`);
    for (const [owner, ms] of top(thread.byOwner, thread.byOwner.size))
      console.log(`    ${owner.padEnd(48)} ${perRenewal(ms)}  ${((100 * ms) / thread.busyMs).toFixed(1)} %`);
    console.log(`    costliest functions:`);
    for (const [fn, ms] of top(thread.byFunction, 8)) console.log(`      ${perRenewal(ms).padStart(9)}  ${fn}`);
  }
}

/**
 * The heap the worker's main thread and its workflow thread use (MiB), from a diagnostic report the
 * worker writes on SIGWINCH (its main thread's report lists each worker thread's heap).
 */
async function heapsMiB(pid: number, reportDir: string): Promise<{ main: number; workflowThread: number }> {
  const before = new Set(readdirSync(reportDir));
  process.kill(pid, 'SIGWINCH');
  for (let waited = 0; waited < 30_000; waited += 250) {
    await sleep(250);
    const file = readdirSync(reportDir).find((name) => !before.has(name));
    if (file === undefined) continue;
    try {
      const report = JSON.parse(readFileSync(join(reportDir, file), 'utf8')) as {
        javascriptHeap: { usedMemory: number };
        workers: Array<{ javascriptHeap: { usedMemory: number } }>;
      };
      return {
        main: report.javascriptHeap.usedMemory / 2 ** 20,
        workflowThread: report.workers.reduce((sum, thread) => sum + thread.javascriptHeap.usedMemory, 0) / 2 ** 20,
      };
    } catch {
      // Still being written.
    }
  }
  return { main: NaN, workflowThread: NaN };
}

/**
 * Events, their encoded size and the billable actions per renewal cycle, from the histories of
 * `clientIds`: what lies between the second and the last token request of each run, divided by the
 * cycles between them. The first token's cycle is left out: it happens once in a client's life
 * (its `acquiring` → `active` upsert), while the figure multiplies into a month of renewals. Null
 * when no sampled workflow made three requests in one run.
 */
async function historyPerCycle(
  client: Client,
  clientIds: readonly string[],
): Promise<{ events: number; bytes: number; actions: number; actionNames: string; sampled: number; workflowTaskTimeouts: number } | null> {
  let cycles = 0;
  let workflowTaskTimeouts = 0;
  let events = 0;
  let bytes = 0;
  const actions = new Map<string, number>();
  for (const clientId of clientIds) {
    const history = await client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory();
    const list = history.events ?? [];
    // A sticky queue's schedule-to-start timeout shows as a timed-out workflow task (stampede included).
    workflowTaskTimeouts += list.filter((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT).length;
    const requests = tokenRequests(list).map((request) => request.index);
    if (requests.length < 3) continue;
    cycles += requests.length - 2;
    for (const event of list.slice(requests[1], requests.at(-1))) {
      events++;
      bytes += proto.temporal.api.history.v1.HistoryEvent.encode(event).finish().length;
      if (BILLABLE_EVENTS.has(event.eventType ?? 0)) {
        const name = EventType[event.eventType!].replace('EVENT_TYPE_', '').toLowerCase();
        actions.set(name, (actions.get(name) ?? 0) + 1);
      }
    }
  }
  if (cycles === 0) return null;
  const actionNames = [...actions].map(([name, count]) => `${name} ${(count / cycles).toFixed(2)}`).join(', ');
  const actionCount = [...actions.values()].reduce((sum, count) => sum + count, 0);
  return {
    events: events / cycles,
    bytes: bytes / cycles,
    actions: actionCount / cycles,
    actionNames,
    sampled: cycles,
    workflowTaskTimeouts,
  };
}

/** The runs the settings ask for, in order. */
function plannedRuns(): RunOptions[] {
  if (!['off', 'on', 'both'].includes(TRACING)) throw new Error(`BENCH_TRACING must be off, on or both, not '${TRACING}'`);
  if (!['local', 'queued', 'both'].includes(SHAPE)) throw new Error(`BENCH_SHAPE must be local, queued or both, not '${SHAPE}'`);
  if (CACHE_SIZES?.some((size) => !Number.isInteger(size) || size < 0))
    throw new Error(`BENCH_CACHE_SIZES must be a comma-separated list of whole numbers, not '${process.env.BENCH_CACHE_SIZES}'`);
  const shapes: RenewalShape[] = SHAPE === 'both' ? ['queued', 'local'] : [SHAPE as RenewalShape];
  const tracings = TRACING === 'both' ? [false, true] : [TRACING === 'on'];
  const cacheSizes = CACHE_SIZES ?? [undefined];
  return shapes.flatMap((shape) =>
    tracings.flatMap((tracing) =>
      cacheSizes.map((cacheSize) => ({
        shape,
        tracing,
        cacheSize,
        label: [`${shape} renewals`, tracing ? 'tracing on' : 'tracing off', `cache ${cacheSize ?? 'default'}`].join(', '),
      })),
    ),
  );
}

/** The runs side by side, and the rule that chose the renewal shape when both were measured. */
function printSummary(figures: readonly RunFigures[]): void {
  const total = (f: RunFigures) => f.workerMsPerRenewal + f.serverMsPerRenewal;
  console.log(`\nside by side (${CLIENTS} clients, ${TOKEN_LIFETIME_SECONDS} s tokens, ${IDLE_SECONDS} s of steady renewal)`);
  const header = ['run', 'worker ms', 'server ms', 'total ms', 'events', 'worker core', 'RSS MiB', 'late'];
  const ms = (value: number) => (Number.isNaN(value) ? 'n/a' : value.toFixed(1));
  const rows = figures.map((f) => [
    f.options.label,
    ms(f.workerMsPerRenewal),
    ms(f.serverMsPerRenewal),
    ms(total(f)),
    f.eventsPerCycle.toFixed(1),
    `${(f.workerCoreShare * 100).toFixed(1)} %`,
    f.rssMiB.toFixed(0),
    `${f.lateRenewals}/${f.renewals}`,
  ]);
  const widths = header.map((name, i) => Math.max(name.length, ...rows.map((row) => row[i]!.length)));
  for (const row of [header, ...rows])
    console.log(`  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`);
  console.log(
    `  targets: worker ≤ ${TARGETS.cpuMsPerRenewal} ms, server ≤ ${TARGETS.serverCpuMsPerRenewal} ms, events ≤ ${TARGETS.eventsPerCycle}, worker ≤ ${TARGETS.workerCoreShare * 100} % of a core and ≤ ${TARGETS.workerRssMiB} MiB, none late`,
  );
  const queued = figures.find((f) => f.options.shape === 'queued' && !f.options.tracing);
  const local = figures.find((f) => f.options.shape === 'local' && !f.options.tracing && f.options.cacheSize === queued?.options.cacheSize);
  if (queued !== undefined && local !== undefined && Number.isNaN(total(queued) + total(local))) {
    console.log(
      `local renewals: worker CPU per renewal ${queued.workerMsPerRenewal.toFixed(1)} → ${local.workerMsPerRenewal.toFixed(1)} ms; ` +
        `the rule needs the server's CPU too, not measured on BENCH_TEMPORAL_ADDRESS`,
    );
  } else if (queued !== undefined && local !== undefined) {
    const saving = 1 - total(local) / total(queued);
    console.log(
      `local renewals: total CPU per renewal ${total(queued).toFixed(1)} → ${total(local).toFixed(1)} ms (${(saving * 100).toFixed(0)} % less); ` +
        `the rule (docs/design.md, "Local renewals"): the default if ≥ ${LOCAL_RENEWALS_MIN_SAVING * 100} % less: ${saving >= LOCAL_RENEWALS_MIN_SAVING ? 'met' : 'NOT met'}`,
    );
  }
}

async function main(): Promise<void> {
  const figures: RunFigures[] = [];
  for (const options of plannedRuns()) figures.push(await run(options));
  if (figures.length > 1) printSummary(figures);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
