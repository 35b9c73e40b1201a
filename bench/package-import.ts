/**
 * `npm run bench:import`: what importing the consumer library `token-lifecycle` costs a service,
 * beside `ioredis` alone (its only dependency), in one run. Each module is imported by a fresh
 * Node.js process, runs interleaved, median of `BENCH_RUNS`: the CPU time of the `import()` and of
 * the whole process until then (start-up included), the `import()`'s wall-clock time, and the RSS
 * after it. The target (issue 24: within 1.15× of ioredis alone) is judged on the import's CPU time
 * and the RSS: on a shared machine the wall-clock time of a 100 ms import varies by more than the
 * difference measured. The worker's package entry (the admin API) is measured too, for
 * comparison. Prints figures; asserts nothing. Needs the build.
 *
 *   BENCH_RUNS (9)      runs of each module
 *   tsx bench/package-import.ts [module …]   more modules (a name or an absolute path) to measure
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const ROOT = join(import.meta.dirname, '..');
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const TARGET_RATIO = 1.15;
const BASELINE = 'ioredis';
const MODULES = [BASELINE, 'token-lifecycle', 'token-lifecycle-worker', ...process.argv.slice(2)];
const run = promisify(execFile);

interface Sample {
  /** CPU time of the process from its start to the end of the import. */
  processCpuMs: number;
  importCpuMs: number;
  importWallMs: number;
  rssMiB: number;
}

/** The child's program: import the module, then report its costs. */
const PROGRAM = `
const cpuBefore = process.cpuUsage();
const startedAt = performance.now();
await import(process.argv[1]);
const importWallMs = performance.now() - startedAt;
const cpuMs = ({ user, system }) => (user + system) / 1000;
console.log(JSON.stringify({
  processCpuMs: cpuMs(process.cpuUsage()),
  importCpuMs: cpuMs(process.cpuUsage(cpuBefore)),
  importWallMs,
  rssMiB: process.memoryUsage().rss / 2 ** 20,
}));
process.exit(0);
`;

async function sample(module: string): Promise<Sample> {
  const specifier = module.startsWith('/') ? pathToFileURL(module).href : module;
  const { stdout } = await run(NODE, ['--input-type=module', '-e', PROGRAM, specifier], { cwd: ROOT });
  return JSON.parse(stdout) as Sample;
}

const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1]!;

const samples = new Map<string, Sample[]>(MODULES.map((module) => [module, []]));
for (let i = 0; i < RUNS; i++) for (const module of MODULES) samples.get(module)!.push(await sample(module));

const COLUMNS = [
  ['process CPU ms', 'processCpuMs', 0],
  ['import() CPU ms', 'importCpuMs', 0],
  ['import() wall ms', 'importWallMs', 0],
  ['RSS MiB', 'rssMiB', 1],
] as const;
const results = MODULES.map((module) => {
  const runs = samples.get(module)!;
  const medians = Object.fromEntries(COLUMNS.map(([, key]) => [key, median(runs.map((run) => run[key]))])) as unknown as Sample;
  return { module, ...medians };
});
const baseline = results[0]!;
const width = 30;
console.log(`[bench:import] ${process.version}, median of ${RUNS} fresh processes per module, interleaved`);
console.log(`${'module'.padEnd(width)}${COLUMNS.map(([title]) => title.padStart(18)).join('')}`);
for (const result of results) {
  const cells = COLUMNS.map(([, key, digits]) =>
    `${result[key].toFixed(digits)} ${(result[key] / baseline[key]).toFixed(2)}×`.padStart(18),
  );
  console.log(`${result.module.padEnd(width)}${cells.join('')}`);
}
const library = results.find((result) => result.module === 'token-lifecycle')!;
const worst = Math.max(library.importCpuMs / baseline.importCpuMs, library.rssMiB / baseline.rssMiB);
console.log(
  `[bench:import] token-lifecycle vs ioredis alone, import CPU and RSS: ${worst.toFixed(2)}× at worst; target ${TARGET_RATIO}×: ${worst <= TARGET_RATIO ? 'met' : 'NOT met'}`,
);
