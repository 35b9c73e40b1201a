/**
 * `npm run bench`: throughput and latency of the token store against a local redis-server, the
 * figures that size a deployment (how many clients one Redis serves, what a read costs a service).
 * Prints comparable figures; asserts nothing (targets belong here, not in timed tests).
 *
 *   BENCH_OPERATIONS (20000)  operations per measurement
 *   BENCH_CONCURRENCY (50)    operations in flight at once
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { TokenStore } from '../activities/token-store.js';
import { startRedisServer } from '../test/support/redis-server.js';

const OPERATIONS = Number(process.env.BENCH_OPERATIONS ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const CLIENTS = 300;

interface Figures {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Runs `operation(i)` OPERATIONS times, CONCURRENCY at a time. */
async function measure(operation: (i: number) => Promise<unknown>): Promise<Figures> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < OPERATIONS) {
        const i = next++;
        const t0 = performance.now();
        await operation(i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { perSecond: OPERATIONS / seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
}

function token(i: number, generation: number) {
  const accessToken = `bench-token-${i}-${generation}-${'x'.repeat(800)}`; // a JWT is ~1 KB
  return {
    clientId: `client-${i % CLIENTS}`,
    accessToken,
    tokenType: 'Bearer',
    scope: 'orders:read',
    generation,
    obtainedAt: Date.now(),
    expiresAt: Date.now() + 300_000,
    fingerprint: createHash('sha256').update(accessToken).digest('hex').slice(0, 16),
  };
}

const server = await startRedisServer();
const redis = new Redis(server.url);
const store = new TokenStore(redis);
try {
  const rows: Array<[string, Figures]> = [];
  rows.push(['write (script: compare, write, expire, publish)', await measure((i) => store.write(token(i, Math.floor(i / CLIENTS) + 1)))]);
  rows.push(['write refused as stale', await measure((i) => store.write(token(i, 1)))]);
  rows.push(['read (HGETALL, checked)', await measure((i) => store.read(`client-${i % CLIENTS}`))]);
  console.log(`token store on redis-server, ${OPERATIONS} operations, ${CONCURRENCY} in flight, ${CLIENTS} clients`);
  for (const [name, figures] of rows) {
    console.log(`  ${name.padEnd(50)} ${figures.perSecond.toFixed(0).padStart(7)} ops/s   p50 ${figures.p50Ms.toFixed(2)} ms   p99 ${figures.p99Ms.toFixed(2)} ms`);
  }
} finally {
  redis.disconnect();
  await server.stop();
}
