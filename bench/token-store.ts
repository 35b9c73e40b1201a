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
import { TokenStore } from '../shared/token-store.js';
import { TokenReader } from 'token-lifecycle';
import { startRedisServer } from '../test/support/redis-server.js';

const OPERATIONS = Number(process.env.BENCH_OPERATIONS ?? 20_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const CLIENTS = 300;
/** Writes whose announcement a caching reader must act on, one after the other. */
const INVALIDATIONS = Math.max(20, Math.min(500, Math.floor(OPERATIONS / 40)));
/** What a caching reader's staleness after a write should stay under. */
const INVALIDATION_TARGET_MS = 50;

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

/**
 * How long after a write starts a caching reader serves the new generation: the write's script
 * announces it on `token-updated`, and the reader drops its cached entry when the message comes.
 */
async function measureCacheInvalidation(store: TokenStore, redis: Redis): Promise<{ p50Ms: number; p99Ms: number; maxMs: number }> {
  const reader = new TokenReader({ redis, cache: true });
  const clientId = 'cached-client';
  const latencies: number[] = [];
  try {
    await store.write({ ...token(0, 1), clientId });
    await reader.getToken(clientId);
    for (let generation = 2; generation < INVALIDATIONS + 2; generation++) {
      const writtenAt = performance.now();
      await store.write({ ...token(0, generation), clientId });
      while ((await reader.getToken(clientId)).generation < generation) await new Promise((resolve) => setImmediate(resolve));
      latencies.push(performance.now() - writtenAt);
    }
  } finally {
    await reader.close();
  }
  latencies.sort((a, b) => a - b);
  return {
    p50Ms: latencies[latencies.length >> 1]!,
    p99Ms: latencies[Math.floor(0.99 * (latencies.length - 1))]!,
    maxMs: latencies.at(-1)!,
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
    console.log(
      `  ${name.padEnd(50)} ${figures.perSecond.toFixed(0).padStart(7)} ops/s   p50 ${figures.p50Ms.toFixed(2)} ms   p99 ${figures.p99Ms.toFixed(2)} ms`,
    );
  }
  const invalidation = await measureCacheInvalidation(store, redis);
  console.log(
    `  caching reader, write → new generation served (${INVALIDATIONS} writes)   p50 ${invalidation.p50Ms.toFixed(2)} ms   p99 ${invalidation.p99Ms.toFixed(2)} ms   ` +
      `max ${invalidation.maxMs.toFixed(2)} ms   target < ${INVALIDATION_TARGET_MS} ms: ${invalidation.maxMs < INVALIDATION_TARGET_MS ? 'met' : 'missed'}`,
  );
} finally {
  redis.disconnect();
  await server.stop();
}
