/**
 * worker/redis-lease.ts on a real redis-server: one holder at a time; only the holder renews or
 * releases; a lease nobody renews passes to the next contender.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { RedisLease } from '../../worker/redis-lease.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';

let redisServer: RedisServer;
let redis: Redis;
/** Each contender on its own connection, as workers of a fleet are. */
let otherRedis: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  otherRedis = new Redis(redisServer.url);
});

afterAll(async () => {
  redis?.disconnect();
  otherRedis?.disconnect();
  await redisServer?.stop();
});

const TTL_MS = 60_000;

test('one holder at a time: a second contender is refused, cannot renew or release, and takes it once released', async () => {
  const key = 'oauth:listing-lease:one-holder';
  const first = new RedisLease(redis, key, TTL_MS);
  const second = new RedisLease(otherRedis, key, TTL_MS);
  expect(first.holder).not.toBe(second.holder);

  expect(await first.acquire()).toBe(true);
  expect(await redis.get(key)).toBe(first.holder);
  expect(await redis.pttl(key)).toBeGreaterThan(0);
  expect(await redis.pttl(key)).toBeLessThanOrEqual(TTL_MS);

  expect(await second.acquire()).toBe(false);
  expect(await second.renew()).toBe(false);
  expect(await second.keep()).toBe(false);
  expect(await second.release()).toBe(false);
  expect(await redis.get(key)).toBe(first.holder);
  // Taking it again is not renewing it: SET NX refuses its own holder too.
  expect(await first.acquire()).toBe(false);

  expect(await first.release()).toBe(true);
  expect(await redis.exists(key)).toBe(0);
  expect(await first.release()).toBe(false);
  expect(await second.acquire()).toBe(true);
  expect(await redis.get(key)).toBe(second.holder);
  expect(await first.keep()).toBe(false);
});

test('the holder renews its lease to the whole TTL; keep renews it when held and takes it when free', async () => {
  const key = 'oauth:listing-lease:renew';
  const lease = new RedisLease(redis, key, TTL_MS);
  expect(await lease.renew()).toBe(false);
  expect(await redis.exists(key)).toBe(0);

  expect(await lease.keep()).toBe(true);
  await redis.pexpire(key, 5_000);
  expect(await lease.renew()).toBe(true);
  expect(await redis.pttl(key)).toBeGreaterThan(5_000);

  await redis.pexpire(key, 5_000);
  expect(await lease.keep()).toBe(true);
  expect(await redis.pttl(key)).toBeGreaterThan(5_000);
  expect(await redis.get(key)).toBe(lease.holder);
});

test('a lease its holder stops renewing expires and passes to another, which the former holder cannot renew or delete', async () => {
  const key = 'oauth:listing-lease:expiry';
  const former = new RedisLease(redis, key, 200);
  const next = new RedisLease(otherRedis, key, TTL_MS);
  expect(await former.acquire()).toBe(true);
  expect(await next.acquire()).toBe(false);

  await eventually(async () => ((await next.acquire()) ? true : undefined), 10_000, 'the expired lease taken over');
  expect(await redis.get(key)).toBe(next.holder);
  expect(await former.renew()).toBe(false);
  expect(await former.keep()).toBe(false);
  expect(await former.release()).toBe(false);
  expect(await redis.get(key)).toBe(next.holder);
  expect(await redis.pttl(key)).toBeGreaterThan(200);
});

test('a TTL that is not a positive integer is refused', () => {
  expect(() => new RedisLease(redis, 'oauth:listing-lease:bad', 0)).toThrow(RangeError);
  expect(() => new RedisLease(redis, 'oauth:listing-lease:bad', 1.5)).toThrow(RangeError);
});
