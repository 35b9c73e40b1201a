/**
 * The benchmarks still run and print their figures (`npm run bench`), on tiny inputs so that they
 * cost the suite seconds: a benchmark nobody can run is a figure nobody can check. The figures
 * themselves are not asserted (targets belong in the benchmarks, not in timed tests).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, inject, test } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);

function bench(script: string, env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', script)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
}

test('bench/token-store.ts prints throughput and latency for each operation', async () => {
  const { stdout } = await bench('token-store.ts', { BENCH_OPERATIONS: '300', BENCH_CONCURRENCY: '10' });
  expect(stdout).toMatch(/^token store on redis-server, 300 operations, 10 in flight/);
  const rows = stdout.split('\n').filter((line) => / ops\/s {3}p50 [\d.]+ ms {3}p99 [\d.]+ ms$/.test(line));
  expect(rows.length).toBeGreaterThanOrEqual(3);
});

test('bench/client-authentication.ts prints what each method adds to a request', async () => {
  const { stdout } = await bench('client-authentication.ts', { BENCH_REQUESTS: '20' });
  expect(stdout).toMatch(/^client authentication per request, 20 requests each/);
  const rows = stdout.split('\n').filter((line) => /first [\d.]+ ms, then p50 [\d.]+ ms (ok|ABOVE TARGET), p99 [\d.]+ ms$/.test(line));
  expect(rows).toHaveLength(5);
});

test('bench/token-expiry-gauge.ts prints what a renewal and the periodic update cost the gauge', async () => {
  const { stdout } = await bench('token-expiry-gauge.ts', { BENCH_CLIENTS: '20', BENCH_MESSAGES: '20' });
  expect(stdout).toMatch(/^token expiry gauge, 20 clients known, 20 token-updated messages/);
  expect(stdout).toMatch(/^ {4}the gauge's share +[\d.]+ ms {3}target ≤ [\d.]+ ms, whatever the clients: (met|missed)$/m);
  expect(stdout).toMatch(/^ {2}CPU per periodic update \(1\/s\) +[\d.]+ ms/m);
});

test('bench/tokenctl-startup.ts prints the start-up of the built CLI for each command beside its target (`npm test` builds it)', async () => {
  const { stdout } = await bench('tokenctl-startup.ts', { BENCH_RUNS: '1' });
  expect(stdout).toMatch(/^tokenctl start-up, median of 1 runs/);
  expect(stdout).toMatch(/^ {2}node -e 0 \(the floor\) +[\d.]+ s$/m);
  expect(stdout).toMatch(/^ {2}tokenctl --help +[\d.]+ s {3}target ≤ 0\.15 s: (met|missed)$/m);
  for (const command of ['register', 'apply', 'token', 'grant']) {
    expect(stdout).toMatch(new RegExp(`^ {2}tokenctl ${command} --help +[\\d.]+ s {3}target ≤ 0\\.15 s: (met|missed)$`, 'm'));
  }
  expect(stdout).toMatch(/^ {2}tokenctl token \(Redis only\) +[\d.]+ s {3}target ≤ 0\.2 s: (met|missed)$/m);
});

test('bench/package-import.ts prints the import time and RSS of the consumer library beside ioredis alone (`npm test` builds both packages)', async () => {
  const { stdout } = await bench('package-import.ts', { BENCH_RUNS: '1' });
  for (const module of ['ioredis', 'token-lifecycle', 'token-lifecycle-worker'])
    expect(stdout).toMatch(new RegExp(`^${module} +(\\d+ [\\d.]+× +){3}[\\d.]+ [\\d.]+×$`, 'm'));
  expect(stdout).toMatch(
    /^\[bench:import\] token-lifecycle vs ioredis alone, import CPU and RSS: [\d.]+× at worst; target 1\.15×: (met|NOT met)$/m,
  );
});

test('bench/worker-scale.ts prints what a worker costs per client and per renewal, in both renewal shapes (the built worker, `npm test` builds it)', async () => {
  // 6 s tokens renewed every 5.1 s: 12 s of steady renewal hold two renewals of each client.
  const { stdout } = await bench('worker-scale.ts', {
    BENCH_CLIENTS: '10',
    BENCH_TOKEN_LIFETIME: '6',
    BENCH_IDLE_SECONDS: '12',
    BENCH_TEMPORAL_ADDRESS: inject('temporalAddress'),
    BENCH_CPU_PROFILE: '1',
    BENCH_SHAPE: 'both',
  });
  for (const row of [
    'clients +10',
    'every token stored +[\\d.]+ s',
    'renewals in 12 s of steady renewal +[1-9]\\d*',
    'worker CPU per renewal +[\\d.]+ ms \\(target ≤ 8 ms: (met|missed)\\)',
    ' {2}workflow thread \\(the workflow sandbox, its GC\\) +[\\d.]+ ms',
    'renewals of current tokens +queued on the IAM task queue',
    'renewals of current tokens +local activities',
    'Temporal server CPU per renewal +not measured \\(BENCH_TEMPORAL_ADDRESS\\)',
    'renewals late +\\d+ of \\d+ more than 5 s after their renewal point',
    'history per cycle +[\\d.]+ events \\(target ≤ 7: (met|missed)\\)',
    'billable actions per cycle +[\\d.]+ \\(.*activity_task_scheduled 1\\.00.*\\); at 300 s tokens ≈ \\d+ per client per month',
    'billable actions per cycle +[\\d.]+ \\(.*marker_recorded 1\\.00.*\\); at 300 s tokens ≈ \\d+ per client per month',
    'workflow tasks timed out +\\d+ in 10 sampled histories',
    'RSS per client +-?[\\d.]+ KiB',
    'workflow-thread heap used +\\d+ MiB',
  ]) {
    expect(stdout).toMatch(new RegExp(`^  ${row}`, 'm'));
  }
  // Both shapes side by side, and the rule that chose the default.
  // (The server's CPU is not measured on a server of BENCH_TEMPORAL_ADDRESS: bench:worker starts its own.)
  expect(stdout).toMatch(/^ {2}queued renewals, tracing off, cache default +[\d.]+ +n\/a +n\/a +[\d.]+ /m);
  expect(stdout).toMatch(/^ {2}local renewals, tracing off, cache default +[\d.]+ +n\/a +n\/a +[\d.]+ /m);
  expect(stdout).toMatch(/^local renewals: worker CPU per renewal [\d.]+ → [\d.]+ ms; the rule needs the server's CPU too/m);
  // The profile: each thread's CPU by owner, the workflow code told from the SDK's in the bundle.
  const profile = stdout.slice(stdout.indexOf('CPU profile of steady renewal'));
  expect(profile).toMatch(/^ {2}main: [\d.]+ ms$/m);
  expect(profile).toMatch(/^ {2}worker thread \d+: [\d.]+ ms$/m);
  expect(profile).toMatch(/^ {4}\S.* \(workflow bundle\) +[\d.]+ ms +[\d.]+ %$/m);
  expect(profile).toMatch(/^ {4}V8 and native code +[\d.]+ ms +[\d.]+ %$/m);
});

test('bench/iam-outage.ts prints what an IAM outage costs beside its targets (the built worker, `npm test` builds it)', async () => {
  const { stdout } = await bench('iam-outage.ts', {
    BENCH_CLIENT_COUNTS: '3',
    BENCH_OUTAGE_SECONDS: '8',
    BENCH_TOKEN_LIFETIME: '5',
    BENCH_TEMPORAL_ADDRESS: inject('temporalAddress'),
  });
  expect(stdout).toMatch(
    /^IAM outage of 8 s \(503 from the IAM emulator\), 5 s tokens, IAM_MAX_RPS 40, probe interval 1\.6 s growing to 8 s$/m,
  );
  expect(stdout).toMatch(/^ {2}3 clients$/m);
  expect(stdout).toMatch(
    /^ {4}requests during the outage +\d+ \([\d.]+\/s\): \d+ in flight as it began, then \d+ +target ≤ \d+, one per probe interval: (met|missed)$/m,
  );
  expect(stdout).toMatch(
    /^ {4}every client live after healing +[\d.]+ s +target ≤ 10\.1 s \(10 s \+ clients \/ IAM_MAX_RPS\): (met|missed)$/m,
  );
  expect(stdout).toMatch(/^ {4}at healing: \d+ clients backing off, the longest wait [\d.]+ s; the first token [\d.]+ s after healing$/m);
});
