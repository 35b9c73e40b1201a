/**
 * `npm run bench:outage`: what an IAM outage costs (docs/design.md, "The IAM is never hammered"),
 * beside issue 23's targets. For each client count: the built worker (`dist/worker/main.js`, `npm
 * run build` first) as a process of its own, every client registered and holding a token, then the
 * IAM emulator fails every token request (a 503, a reset or a hang) for BENCH_OUTAGE_SECONDS, longer
 * than a token lives, and heals. Prints the requests that reached the IAM during the outage and the
 * seconds from healing until every client holds a token again. Asserts nothing.
 *
 *   BENCH_CLIENT_COUNTS (30,300)    the runs, one per client count
 *   BENCH_OUTAGE_SECONDS (150)      how long the IAM fails
 *   BENCH_TOKEN_LIFETIME (20)       the emulator's token lifetime, in seconds
 *   BENCH_FAULT (503)               503, reset or hang
 *   IAM_MAX_RPS (40)                the worker's fleet-wide cap
 *   BENCH_TEMPORAL_ADDRESS          a running Temporal server to use (default: start a dev server)
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { TokenAdmin } from '../client/admin.js';
import { startIamEmulator, type Fault } from '../dev/iam-emulator/emulator.js';
import { startTemporalDevServer } from '../dev/temporal-dev-server.js';
import { tokenKey } from '../shared/redis-layout.js';
import { startRedisServer } from '../test/support/redis-server.js';
import { terminateRunning } from '../test/support/terminate-running.js';
import { startWorkerProcess } from '../test/support/worker-process.js';
import type { TokenStatus } from '../workflows/messages.js';
import { breakerWaitMs, DEFAULT_POLICY } from '../workflows/policy.js';

const CLIENT_COUNTS = (process.env.BENCH_CLIENT_COUNTS ?? '30,300').split(',').map(Number);
const OUTAGE_SECONDS = Number(process.env.BENCH_OUTAGE_SECONDS ?? 150);
const TOKEN_LIFETIME_SECONDS = Number(process.env.BENCH_TOKEN_LIFETIME ?? 20);
const FAULT_NAME = process.env.BENCH_FAULT ?? '503';
const IAM_MAX_RPS = Number(process.env.IAM_MAX_RPS ?? 40);
const ROOT = join(import.meta.dirname, '..');
const WORKER = join(ROOT, 'dist', 'worker', 'main.js');
const WORKFLOW_BUNDLE = join(ROOT, 'dist', 'workflow-bundle.js');
const SECRET = 'bench-secret';
/** Issue 23: every client live within this + clients / IAM_MAX_RPS seconds of healing. */
const RECOVERY_TARGET_BASE_S = 10;
/** Registrations sent at once. */
const REGISTER_CONCURRENCY = 50;

const FAULTS: Record<string, { fault: Fault; kind: 'server_error' | 'blocked' }> = {
  '503': { fault: { kind: 'status', status: 503 }, kind: 'server_error' },
  reset: { fault: { kind: 'reset' }, kind: 'blocked' },
  hang: { fault: { kind: 'hang' }, kind: 'blocked' },
};

/**
 * The most probes the default schedule allows in `outageMs`: one at the end of each breaker wait,
 * which grows with each failed probe up to the policy's cap (`breakerWaitMs`). The target: about
 * one request per probe interval, whatever the number of clients.
 */
function probesInSchedule(kind: 'server_error' | 'blocked', outageMs: number): number {
  let probes = 0;
  for (let at = 0, openings = 1; at < outageMs; openings++) {
    at += breakerWaitMs(kind, openings, {}, DEFAULT_POLICY);
    probes++;
  }
  return probes;
}

interface OutageRun {
  clients: number;
  requestsDuringOutage: number;
  /** Of those, the requests that left before the first failure was answered: in flight as it began. */
  inFlightAtStart: number;
  liveAfterHealingS: number;
  /** From healing to the first token issued: the probe that found the IAM healed. */
  firstTokenAfterHealingS: number;
  /** The clients' waits when the IAM healed: how many backed off, and the longest wait left. */
  atHealing: { backingOff: number; longestWaitS: number };
}

/**
 * Requests within this of the first failed one were in flight when the outage began: they passed
 * the breaker before any failure had been seen. The probe schedule counts from there.
 */
const IN_FLIGHT_GRACE_MS = 1_000;

async function runOutage(temporalAddress: string, clients: number, fault: Fault): Promise<OutageRun> {
  const cleanups: Array<() => unknown> = [];
  try {
    const redisServer = await startRedisServer();
    cleanups.push(() => redisServer.stop());
    const redis = new Redis(redisServer.url);
    cleanups.push(() => redis.disconnect());
    const clientIds = Array.from({ length: clients }, (_, i) => `outage-${String(i).padStart(5, '0')}`);
    const iam = await startIamEmulator({
      rateLimitPerSecond: 50,
      tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
      clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })),
    });
    cleanups.push(() => iam.close());
    const taskQueue = `bench-outage-${randomUUID()}`;
    const worker = await startWorkerProcess({
      temporalAddress,
      taskQueue,
      redisUrl: redisServer.url,
      workflowBundlePath: WORKFLOW_BUNDLE,
      script: WORKER,
      env: { BENCH_SECRET: SECRET, IAM_MAX_RPS: String(IAM_MAX_RPS), LOG_LEVEL: 'WARN' },
    });
    cleanups.push(() => worker.stop());
    const connection = await Connection.connect({ address: temporalAddress });
    const client = new Client({ connection });
    cleanups.push(async () => {
      await terminateRunning(client, taskQueue, 'benchmark finished');
      await connection.close();
    });
    const admin = new TokenAdmin(client, { taskQueue });

    for (let i = 0; i < clientIds.length; i += REGISTER_CONCURRENCY) {
      await Promise.all(
        clientIds
          .slice(i, i + REGISTER_CONCURRENCY)
          .map((clientId) =>
            admin.register({ clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:BENCH_SECRET' }),
          ),
      );
    }
    await everyClientLive(redis, clientIds, 0);

    const downAt = Date.now();
    iam.inject(fault);
    await sleep(OUTAGE_SECONDS * 1000);
    iam.clearFaults();
    const healedAt = Date.now();
    const [liveAt, statuses] = await Promise.all([everyClientLive(redis, clientIds, healedAt), statusesOf(admin, clientIds)]);
    const waits = statuses.flatMap((status) =>
      status.state === 'backing_off' && status.backoffUntil !== null ? [status.backoffUntil - healedAt] : [],
    );
    const duringOutage = iam.requests.filter((request) => request.at >= downAt && request.at < healedAt);
    const firstAt = duringOutage[0]?.at ?? downAt;
    return {
      clients,
      requestsDuringOutage: duringOutage.length,
      inFlightAtStart: duringOutage.filter((request) => request.at < firstAt + IN_FLIGHT_GRACE_MS).length - 1,
      liveAfterHealingS: (liveAt - healedAt) / 1000,
      firstTokenAfterHealingS:
        ((iam.requests.find((request) => request.at >= healedAt && request.outcome === 'issued')?.at ?? liveAt) - healedAt) / 1000,
      atHealing: { backingOff: waits.length, longestWaitS: Math.max(0, ...waits) / 1000 },
    };
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

/** Every client's status, a batch at a time. */
async function statusesOf(admin: TokenAdmin, clientIds: readonly string[]): Promise<TokenStatus[]> {
  const statuses: TokenStatus[] = [];
  for (let i = 0; i < clientIds.length; i += REGISTER_CONCURRENCY) {
    statuses.push(...(await Promise.all(clientIds.slice(i, i + REGISTER_CONCURRENCY).map((clientId) => admin.status(clientId)))));
  }
  return statuses;
}

/** Waits until every client holds a token obtained at `since` or later; resolves to when (Unix ms). */
async function everyClientLive(redis: Redis, clientIds: readonly string[], since: number): Promise<number> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    const pipeline = redis.pipeline();
    for (const clientId of clientIds) pipeline.hget(tokenKey('oauth:', clientId), 'obtained_at');
    const replies = (await pipeline.exec()) ?? [];
    const now = Date.now();
    if (replies.every(([error, value]) => error === null && typeof value === 'string' && Number(value) >= since)) return now;
    if (now > deadline) throw new Error('Not every client got a token within 15 minutes');
    await sleep(100);
  }
}

async function main(): Promise<void> {
  if (!existsSync(WORKER)) throw new Error('dist/worker/main.js is missing: run `npm run build` first');
  const chosen = FAULTS[FAULT_NAME];
  if (chosen === undefined) throw new Error(`BENCH_FAULT must be one of ${Object.keys(FAULTS).join(', ')}, got ${FAULT_NAME}`);
  let temporalAddress = process.env.BENCH_TEMPORAL_ADDRESS;
  let stopServer: () => Promise<unknown> = () => Promise.resolve();
  if (temporalAddress === undefined) {
    const devServer = await startTemporalDevServer({ uiPort: false });
    stopServer = () => devServer.stop();
    temporalAddress = devServer.address;
  }
  try {
    const outageMs = OUTAGE_SECONDS * 1000;
    const probeTarget = probesInSchedule(chosen.kind, outageMs);
    console.log(
      `IAM outage of ${OUTAGE_SECONDS} s (${FAULT_NAME} from the IAM emulator), ${TOKEN_LIFETIME_SECONDS} s tokens, IAM_MAX_RPS ${IAM_MAX_RPS}, ` +
        `probe interval ${breakerWaitMs(chosen.kind, 1, {}, DEFAULT_POLICY) / 1000} s growing to ${DEFAULT_POLICY.probeIntervalMaxMs / 1000} s`,
    );
    for (const clients of CLIENT_COUNTS) {
      const run = await runOutage(temporalAddress, clients, chosen.fault);
      const recoveryTarget = RECOVERY_TARGET_BASE_S + clients / IAM_MAX_RPS;
      const verdict = (met: boolean) => (met ? 'met' : 'missed');
      console.log(`  ${clients} clients`);
      const probes = run.requestsDuringOutage - run.inFlightAtStart;
      console.log(
        `    requests during the outage  ${run.requestsDuringOutage} (${(run.requestsDuringOutage / OUTAGE_SECONDS).toFixed(2)}/s): ` +
          `${run.inFlightAtStart} in flight as it began, then ${probes}   target ≤ ${probeTarget}, one per probe interval: ${verdict(probes <= probeTarget)}`,
      );
      console.log(
        `    every client live after healing  ${run.liveAfterHealingS.toFixed(1)} s   ` +
          `target ≤ ${recoveryTarget.toFixed(1)} s (10 s + clients / IAM_MAX_RPS): ${verdict(run.liveAfterHealingS <= recoveryTarget)}`,
      );
      console.log(
        `    at healing: ${run.atHealing.backingOff} clients backing off, the longest wait ${run.atHealing.longestWaitS.toFixed(1)} s; ` +
          `the first token ${run.firstTokenAfterHealingS.toFixed(1)} s after healing`,
      );
    }
  } finally {
    await stopServer();
  }
}

await main();
