/**
 * `npm run bench:heap`: whether the worker's live heap stays flat while its workflows renew, cycle
 * after cycle (docs/design.md, "Continue-as-new"): the SDK keeps what each cycle leaves (the
 * scope of a condition with a timeout, its cancellation failure) until the run ends, so only the
 * bound of cycles per run keeps the heap from growing with the worker's uptime.
 *
 * The token workers run in this process with their workflows in its main thread (`TEMPORAL_DEBUG`,
 * as the SDK's replayer runs them), so a full GC (`--expose-gc`) and `process.memoryUsage()` see the
 * workflows' live heap; the Temporal dev server, redis-server and the IAM emulator are processes of
 * their own. Tokens live 1 s, so a cycle takes about 0.85 s. Prints figures; asserts nothing.
 *
 *   BENCH_WORKFLOWS (20)             token workflows
 *   BENCH_CYCLES (100)               renewals of each
 *   BENCH_MAX_CYCLES_PER_RUN         the registrations' `maxCyclesPerRun` (default: the policy's, 50);
 *                                    500 shows the heap before the bound was lowered
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { TokenAdmin } from '../client/admin.js';
import { startTemporalDevServer } from '../dev/temporal-dev-server.js';
import { TokenStore } from '../shared/token-store.js';
import { startEmulatorProcess } from '../test/support/emulator-process.js';
import { startRedisServer } from '../test/support/redis-server.js';
import { createTokenWorkers } from '../worker/token-workers.js';
import { DEFAULT_POLICY } from '../workflows/policy.js';
import { terminateRunning } from '../test/support/terminate-running.js';

const WORKFLOWS = Number(process.env.BENCH_WORKFLOWS ?? 20);
const CYCLES = Number(process.env.BENCH_CYCLES ?? 100);
const MAX_CYCLES_PER_RUN = process.env.BENCH_MAX_CYCLES_PER_RUN === undefined ? undefined : Number(process.env.BENCH_MAX_CYCLES_PER_RUN);
const SECRET = 'bench-secret';
/** How often the heap is measured. */
const SAMPLE_EVERY_MS = 5_000;
/** Issue 17's target: no growth across runs. Peaks of successive runs this close count as flat (GC noise). */
const FLAT_PERCENT = 5;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('Run with node --expose-gc (npm run bench:heap does)');

/** The live heap after a full GC, in bytes. */
function liveHeap(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

const cleanups: Array<() => unknown> = [];
try {
  // Before the worker is made: the SDK reads it for its `debugMode` default.
  process.env.TEMPORAL_DEBUG = '1';
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const [server, redisServer] = await Promise.all([startTemporalDevServer({ uiPort: false }), startRedisServer()]);
  cleanups.push(
    () => server.stop(),
    () => redisServer.stop(),
  );
  const clientIds = Array.from({ length: WORKFLOWS }, (_, i) => `heap-${String(i).padStart(3, '0')}`);
  const iam = await startEmulatorProcess({
    rateLimitPerSecond: 50,
    tokenLifetimeSeconds: 1,
    clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  cleanups.push(() => iam.stop());
  const redis = new Redis(redisServer.url);
  cleanups.push(() => redis.disconnect());
  const taskQueue = `heap-${randomUUID()}`;
  const connection = await Connection.connect({ address: server.address });
  cleanups.push(() => connection.close());
  const client = new Client({ connection });
  cleanups.push(async () => {
    await terminateRunning(client, taskQueue, 'benchmark finished');
  });
  const workers = await createTokenWorkers({
    connection: await NativeConnection.connect({ address: server.address }),
    namespace: 'default',
    taskQueue,
    store: new TokenStore(redis),
    iamMaxRps: 40,
    env: { BENCH_SECRET: SECRET },
  });
  const running = workers.run();
  // First of the cleanups: the workers stop before their workflows are terminated.
  cleanups.push(async () => {
    workers.shutdown();
    await running;
  });
  const admin = new TokenAdmin(client, { taskQueue });

  const before = liveHeap();
  await Promise.all(
    clientIds.map((clientId) =>
      admin.register({
        clientId,
        tokenUrl: iam.tokenUrl,
        authMethod: 'client_secret_post',
        secretRef: 'env:BENCH_SECRET',
        ...(MAX_CYCLES_PER_RUN !== undefined && { policy: { maxCyclesPerRun: MAX_CYCLES_PER_RUN } }),
      }),
    ),
  );
  const issued = () => iam.requests().filter((request) => request.outcome === 'issued').length;
  const samples: Array<{ cycles: number; heap: number }> = [];
  for (;;) {
    await sleep(SAMPLE_EVERY_MS);
    const cycles = issued() / WORKFLOWS;
    samples.push({ cycles, heap: liveHeap() });
    if (cycles >= CYCLES) break;
  }

  const bound = MAX_CYCLES_PER_RUN ?? DEFAULT_POLICY.maxCyclesPerRun;
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  console.log(`workflow heap, ${WORKFLOWS} workflows, ${CYCLES} renewals each (1 s tokens), maxCyclesPerRun ${bound}`);
  console.log(`  live heap before the workflows      ${mib(before)}`);
  for (const sample of samples)
    console.log(`  after ${sample.cycles.toFixed(0).padStart(4)} cycles a workflow          ${mib(sample.heap)}`);
  // Within a run the heap grows by what each cycle leaves; the run's end frees it. Compare the
  // peaks of successive runs (the workflows started together, so their runs end together).
  const runs = new Map<number, number>();
  for (const sample of samples.slice(1)) {
    const run = Math.floor(sample.cycles / bound);
    runs.set(run, Math.max(runs.get(run) ?? 0, sample.heap));
  }
  // Over the second half: the first holds the warm-up (code compiled, caches filled) too.
  const secondHalf = samples.filter((sample) => sample.cycles >= CYCLES / 2);
  const growth =
    secondHalf.length >= 2
      ? (secondHalf.at(-1)!.heap - secondHalf[0]!.heap) / ((secondHalf.at(-1)!.cycles - secondHalf[0]!.cycles) * WORKFLOWS)
      : NaN;
  console.log(`  growth per cycle per workflow, second half  ${growth.toFixed(0)} B (what a run keeps until it continues as new)`);
  const peaks = [...runs.values()];
  console.log(`  peak live heap of each run            ${peaks.map(mib).join(', ')}`);
  if (peaks.length >= 2) {
    const rise = peaks.at(-1)! - peaks[0]!;
    console.log(
      `  from the first run's peak to the last's  ${rise >= 0 ? '+' : ''}${mib(rise)} over ${(WORKFLOWS * CYCLES).toFixed(0)} cycles (target: flat, within ${FLAT_PERCENT} %: ${Math.abs(rise) <= (peaks[0]! * FLAT_PERCENT) / 100 ? 'met' : 'missed'})`,
    );
  } else {
    console.log(
      `  one run only: the heap grows for ${bound} cycles a workflow (about ${mib(growth * bound * WORKFLOWS)} here) before it is freed`,
    );
  }
} finally {
  for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
}
