/**
 * `npm run bench:apply`: how long `tokenctl apply` (the built CLI, as an operator runs it) takes to
 * register N new clients on a Temporal dev server, then to find the same file unchanged. No worker
 * runs: this measures the CLI and Temporal's frontend, not token requests. Prints figures against
 * the target; asserts nothing. Needs `npm run build`.
 *
 *   BENCH_CLIENTS (1000)         clients in the file
 *   BENCH_TEMPORAL_ADDRESS       a running Temporal server to use (default: start a dev server)
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTemporalDevServer } from '../dev/temporal-dev-server.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
/** Issue 17: 1000 new clients in at most 10 s, i.e. 10 ms per client. */
const TARGET_SECONDS = (10 * CLIENTS) / 1000;
const ROOT = join(import.meta.dirname, '..');
const run = promisify(execFile);

const cleanups: Array<() => Promise<unknown>> = [];
try {
  let temporalAddress = process.env.BENCH_TEMPORAL_ADDRESS;
  if (temporalAddress === undefined) {
    const server = await startTemporalDevServer({ uiPort: false });
    cleanups.push(() => server.stop());
    temporalAddress = server.address;
  }
  const dir = await mkdtemp(join(tmpdir(), 'bench-apply-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'clients.yaml');
  const runId = randomUUID().slice(0, 8);
  await writeFile(
    file,
    [
      'defaults:',
      '  tokenUrl: https://iam.example.com/token',
      '  secretRef: env:BENCH_SECRET',
      'clients:',
      ...Array.from({ length: CLIENTS }, (_, i) => `  - clientId: bench-apply-${runId}-${i}`),
      '',
    ].join('\n'),
  );
  // Its own task queue: no worker polls it, and other runs' workflows are not in its way.
  const env = { ...process.env, TEMPORAL_ADDRESS: temporalAddress, TEMPORAL_TASK_QUEUE: `bench-apply-${runId}` };
  const timed = async () => {
    const started = performance.now();
    const { stdout } = await run(process.execPath, [join(ROOT, 'dist', 'cli', 'tokenctl.js'), 'apply', file, '--json'], {
      env,
      maxBuffer: 64 * 1024 * 1024,
    });
    const seconds = (performance.now() - started) / 1000;
    const result = JSON.parse(stdout) as { created: string[]; unchanged: string[]; failed: unknown[] };
    return { seconds, ...result };
  };
  const created = await timed();
  const again = await timed();
  // Wall-clock figures: on a shared machine, the load says how far to trust them.
  console.log(`tokenctl apply, ${CLIENTS} clients, Temporal dev server (no worker), load average ${loadavg()[0]!.toFixed(1)}`);
  console.log(
    `  ${CLIENTS} new clients           ${created.seconds.toFixed(2).padStart(7)} s   ${created.created.length} created, ${created.failed.length} failed   ` +
      `target ≤ ${TARGET_SECONDS} s: ${created.seconds <= TARGET_SECONDS && created.created.length === CLIENTS ? 'met' : 'missed'}`,
  );
  console.log(
    `  the same file again         ${again.seconds.toFixed(2).padStart(7)} s   ${again.unchanged.length} unchanged, ${again.failed.length} failed`,
  );
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
}
