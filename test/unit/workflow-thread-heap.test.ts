/**
 * worker/workflow-thread-heap.ts: the cap reaches a worker thread started after it (as the SDK's
 * workflow thread is), and an operator's own flag wins.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { semiSpaceFlagGiven } from '../../worker/workflow-thread-heap.js';

const run = promisify(execFile);
const MODULE = join(import.meta.dirname, '..', '..', 'worker', 'workflow-thread-heap.ts');

/**
 * The largest new space a worker thread reached while keeping many young objects alive, in MiB,
 * in a Node.js process that called the cap first or not.
 */
async function workerThreadNewSpaceMiB(capFirst: boolean): Promise<number> {
  const script = `
    import { Worker } from 'node:worker_threads';
    import { capWorkflowThreadYoungGeneration } from ${JSON.stringify(MODULE)};
    if (${capFirst}) capWorkflowThreadYoungGeneration();
    const work = \`
      const v8 = process.getBuiltinModule('node:v8');
      let kept = [], max = 0;
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 300000; i++) kept.push({ i, s: 'x' + i });
        if (kept.length > 600000) kept = kept.slice(300000);
        max = Math.max(max, v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space').space_size);
      }
      process.getBuiltinModule('node:worker_threads').parentPort.postMessage(max);\`;
    new Worker(work, { eval: true }).once('message', (max) => console.log(max / 2 ** 20));
  `;
  const env = { ...process.env, NODE_OPTIONS: '' };
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env, timeout: 60_000 });
  return Number(stdout.trim());
}

test('a worker thread started after the cap keeps a small young generation; without it, it grows', async () => {
  const [capped, uncapped] = await Promise.all([workerThreadNewSpaceMiB(true), workerThreadNewSpaceMiB(false)]);
  expect(capped).toBeLessThanOrEqual(32);
  expect(uncapped).toBeGreaterThan(32);
}, 120_000);

test('an operator’s --max-semi-space-size, in either spelling, is left alone', () => {
  expect(semiSpaceFlagGiven(['--max-semi-space-size=16'])).toBe(true);
  expect(semiSpaceFlagGiven(['--max_semi_space_size', '16'])).toBe(true);
  expect(semiSpaceFlagGiven(['--max-old-space-size=512', ''])).toBe(false);
  expect(semiSpaceFlagGiven([])).toBe(false);
});
