/**
 * `npm run bench:cli`: how long the built CLI (`bin/tokenctl`, as an operator runs it) takes to
 * start, beside `node -e 0` on the same Node.js: `--help`, each command's `--help`, and
 * `tokenctl token` reading a stored token from a real redis-server. Median of several runs, each
 * against issue 17's target. Prints figures; asserts nothing. Needs `npm run build`.
 *
 *   BENCH_RUNS (9)    runs of each command
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { tokenFingerprint } from '../activities/access-token.js';
import { TokenStore } from '../shared/token-store.js';
import { startRedisServer } from '../test/support/redis-server.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const ROOT = join(import.meta.dirname, '..');
const TOKENCTL = join(ROOT, 'bin', 'tokenctl');
const NODE = join(ROOT, 'node_modules', '.bin', 'node');
/** Issue 17's targets, in seconds. */
const TARGETS = { help: 0.15, token: 0.2 };
const CLIENT_ID = 'bench-cli';
const run = promisify(execFile);

/** Median wall-clock seconds of `RUNS` runs of a command (its exit status ignored: only the start counts). */
async function medianSeconds(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const startedAt = performance.now();
    await run(file, args, { env }).catch(() => undefined);
    times.push((performance.now() - startedAt) / 1000);
  }
  return times.sort((a, b) => a - b)[times.length >> 1]!;
}

const redisServer = await startRedisServer();
try {
  const redis = new Redis(redisServer.url);
  const accessToken = 'bench-cli-token';
  await new TokenStore(redis).write({
    clientId: CLIENT_ID,
    accessToken,
    tokenType: 'Bearer',
    scope: '',
    generation: 1,
    obtainedAt: Date.now(),
    expiresAt: Date.now() + 3_600_000,
    fingerprint: tokenFingerprint(accessToken),
  });
  redis.disconnect();
  const tokenEnv = { ...process.env, REDIS_URL: redisServer.url };
  // Timed only if it works: the token printed, exit code 0.
  const printed = (await run(TOKENCTL, ['token', CLIENT_ID], { env: tokenEnv })).stdout.trim();
  if (printed !== accessToken) throw new Error(`tokenctl token printed ${JSON.stringify(printed)}, not the stored token`);
  // Every command the CLI lists, from its own help.
  const help = (await run(TOKENCTL, ['--help'])).stdout;
  const commands = [...help.slice(help.indexOf('Commands:')).matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');

  const rows: Array<[string, number, number | null]> = [['node -e 0 (the floor)', await medianSeconds(NODE, ['-e', '0']), null]];
  rows.push(['tokenctl --help', await medianSeconds(TOKENCTL, ['--help']), TARGETS.help]);
  for (const command of commands)
    rows.push([`tokenctl ${command} --help`, await medianSeconds(TOKENCTL, [command, '--help']), TARGETS.help]);
  rows.push(['tokenctl token (Redis only)', await medianSeconds(TOKENCTL, ['token', CLIENT_ID], tokenEnv), TARGETS.token]);

  const width = Math.max(...rows.map(([name]) => name.length));
  console.log(`tokenctl start-up, median of ${RUNS} runs (bin/tokenctl, Node.js ${process.version})`);
  for (const [name, seconds, target] of rows) {
    const verdict = target === null ? '' : `   target ≤ ${target} s: ${seconds <= target ? 'met' : 'missed'}`;
    console.log(`  ${name.padEnd(width)}  ${seconds.toFixed(3)} s${verdict}`);
  }
} finally {
  await redisServer.stop();
}
