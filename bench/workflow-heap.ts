/**
 * `npm run bench:heap`: whether a token workflow's live heap stays flat over many cycles
 * (docs/design.md, "The loop's memory"). Runs BENCH_HEAP_WORKFLOWS workflows in this process
 * (`debugMode`: the workflow sandbox shares this thread's heap, so `process.memoryUsage()` sees it)
 * against a dev server, with an activity that stores nothing and returns a token that is due for
 * renewal a few milliseconds later, and prints the heap after a full GC and the count of the SDK
 * objects the old loop kept per cycle (from a heap snapshot) at every BENCH_HEAP_STEP cycles. Needs `node --expose-gc` (the npm script passes it).
 *
 *   BENCH_HEAP_WORKFLOWS (5)        workflows run side by side
 *   BENCH_HEAP_CYCLES (2000)        cycles of each (one run: continue-as-new is kept out of the way)
 *   BENCH_HEAP_STEP (1000)          cycles between two heap figures
 *   WORKFLOW_BUNDLE_PATH            the workflow code (default: the build's, `npm run build` first)
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { getHeapSnapshot } from 'node:v8';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { startTemporalDevServer } from '../dev/temporal-dev-server.js';
import type { AcquireTokenInput } from '../activities/acquire-token.js';
import { statusQuery } from '../workflows/messages.js';
import type { TokenMetadata } from '../workflows/token-metadata.js';

const WORKFLOWS = Number(process.env.BENCH_HEAP_WORKFLOWS ?? 5);
const CYCLES = Number(process.env.BENCH_HEAP_CYCLES ?? 2000);
const STEP = Number(process.env.BENCH_HEAP_STEP ?? 1000);
const BUNDLE = process.env.WORKFLOW_BUNDLE_PATH ?? join(import.meta.dirname, '..', 'dist', 'workflow-bundle.js');
/** Per cycle of one workflow, the growth this bench exists to catch was ≈ 2.7 KB. */
const FLAT_TARGET_BYTES_PER_CYCLE = 100;

const gc = (globalThis as { gc?: () => void }).gc;

function liveHeapMiB(): number {
  // Twice: the first collection may leave what finalizers release.
  gc!();
  gc!();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

/** The SDK objects the leak was made of, counted in a heap snapshot: what must not grow with the cycles. */
const COUNTED = ['CancellationScope', 'CancelledFailure'] as const;

/** How many objects of each {@link COUNTED} constructor the heap holds (a snapshot; seconds). */
async function countObjects(): Promise<Record<(typeof COUNTED)[number], number>> {
  const chunks: Buffer[] = [];
  for await (const chunk of getHeapSnapshot()) chunks.push(chunk as Buffer);
  const snapshot = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const [typeAt, nameAt] = [fields.indexOf('type'), fields.indexOf('name')];
  const objectType = snapshot.snapshot.meta.node_types[0].indexOf('object');
  const counts = Object.fromEntries(COUNTED.map((name) => [name, 0])) as Record<(typeof COUNTED)[number], number>;
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    if (snapshot.nodes[i + typeAt] !== objectType) continue;
    const name = snapshot.strings[snapshot.nodes[i + nameAt]!] as (typeof COUNTED)[number];
    if (name in counts) counts[name]++;
  }
  return counts;
}

/** A token renewed 20 ms after it was requested; nothing is written anywhere. */
function acquireToken(input: AcquireTokenInput): Promise<TokenMetadata> {
  const now = Date.now();
  return Promise.resolve({
    clientId: input.clientId,
    generation: input.generation,
    fingerprint: '0123456789abcdef',
    tokenType: 'Bearer',
    scope: '',
    requestStartedAt: now,
    obtainedAt: now,
    expiresAt: now + 24,
    expiresInSeconds: 0.024,
    written: true,
  });
}

async function main(): Promise<void> {
  if (gc === undefined) throw new Error('run with node --expose-gc (npm run bench:heap)');
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const server = await startTemporalDevServer({
    uiPort: false,
    // One run per workflow: the server would suggest continue-as-new after 4 Ki events.
    dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 1_000_000 },
  });
  const taskQueue = `heap-${randomUUID()}`;
  const connection = await NativeConnection.connect({ address: server.address });
  const clientConnection = await Connection.connect({ address: server.address });
  const client = new Client({ connection: clientConnection });
  try {
    const worker = await Worker.create({
      connection,
      taskQueue,
      workflowBundle: { codePath: BUNDLE },
      activities: { acquireToken, purgeToken: () => Promise.resolve() },
      debugMode: true,
    });
    const iamWorker = await Worker.create({ connection, taskQueue: `${taskQueue}-iam`, activities: { acquireToken } });
    const running = Promise.all([worker.run(), iamWorker.run()]);
    const handles = await Promise.all(
      Array.from({ length: WORKFLOWS }, (_, i) =>
        client.workflow.start('tokenLifecycle', {
          taskQueue,
          workflowId: `heap-${i}-${randomUUID()}`,
          args: [
            {
              registration: {
                clientId: `heap-${i}`,
                tokenUrl: 'http://127.0.0.1:9/token',
                authMethod: 'client_secret_post',
                secretRef: 'env:NONE',
                policy: { maxCyclesPerRun: CYCLES + 10, jitterFraction: 0, minForcedRefreshIntervalMs: 0 },
              },
            },
          ],
        }),
      ),
    );
    const cyclesDone = async () => Math.min(...(await Promise.all(handles.map((h) => h.query(statusQuery)))).map((s) => s.generation));

    const figures: Array<{ cycles: number; heap: number; cpu: number }> = [];
    const cpuMs = () => {
      const usage = process.cpuUsage();
      return (usage.user + usage.system) / 1000;
    };
    for (let target = 1; ; target = Math.min(CYCLES, figures.length === 1 ? STEP : target + STEP)) {
      while ((await cyclesDone()) < target) await new Promise((resolve) => setTimeout(resolve, 200));
      const cycles = await cyclesDone();
      figures.push({ cycles, heap: liveHeapMiB(), cpu: cpuMs() });
      const counts = await countObjects();
      console.log(
        `  cycle ${String(cycles).padStart(5)}: live heap ${figures.at(-1)!.heap.toFixed(2)} MiB, ${COUNTED.map((name) => `${counts[name]} ${name}`).join(', ')}`,
      );
      if (target >= CYCLES) break;
    }
    const first = figures[0]!;
    const last = figures.at(-1)!;
    const perCycle = ((last.heap - first.heap) * 2 ** 20) / ((last.cycles - first.cycles) * WORKFLOWS);
    const cpuPerCycle = (last.cpu - first.cpu) / ((last.cycles - first.cycles) * WORKFLOWS);
    console.log(`workflow heap (${WORKFLOWS} workflows, ${BUNDLE})`);
    console.log(
      `  growth per cycle per workflow  ${perCycle.toFixed(0)} B (target ≤ ${FLAT_TARGET_BYTES_PER_CYCLE} B: ${perCycle <= FLAT_TARGET_BYTES_PER_CYCLE ? 'PASS' : 'MISS'})`,
    );
    console.log(`  process CPU per cycle          ${cpuPerCycle.toFixed(2)} ms (worker and workflow in one thread, Rust core included)`);
    for (const handle of handles) await handle.terminate('bench finished').catch(() => undefined);
    worker.shutdown();
    iamWorker.shutdown();
    await running;
  } finally {
    await clientConnection.close();
    await connection.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
