/**
 * The one-second window per IAM host (docs/design.md, "The IAM is never hammered"), on a real
 * redis-server: never more than the limit in any one-second window, however many callers race, on
 * one host; other hosts unaffected.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { EndpointRateWindow, MAX_SLOT_AGE_MS } from '../../activities/endpoint-rate-window.js';
import { rateWindowKey } from '../../shared/redis-layout.js';
import { RequestHeldBackError } from '../../activities/errors.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.stop();
});

test('30 callers at once with a limit of 10: exactly 10 get a slot, the others the wait until the oldest leaves', async () => {
  const window = new EndpointRateWindow(redis, { prefix: 'burst:', limit: 10 });
  const tokenUrl = 'http://iam.example:8080/realms/a/protocol/openid-connect/token';
  const waits = await Promise.all(Array.from({ length: 30 }, () => window.tryTake(tokenUrl)));
  expect(waits.filter((wait) => wait === 0)).toHaveLength(10);
  for (const wait of waits.filter((w) => w !== 0)) {
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(1001);
  }
  expect(await redis.zcard(rateWindowKey('burst:', tokenUrl))).toBe(10);
  expect(await redis.pttl(rateWindowKey('burst:', tokenUrl))).toBeLessThanOrEqual(1000);
  // Another realm on the same host shares the window; another host has its own.
  expect(await window.tryTake('http://iam.example:8080/realms/b/protocol/openid-connect/token')).toBeGreaterThan(0);
  expect(await window.tryTake('http://other-iam.example/token')).toBe(0);
});

test('30 callers waiting for slots with a limit of 10: they need at least two more seconds, and all get through', async () => {
  const window = new EndpointRateWindow(redis, { prefix: 'race:', limit: 10 });
  const tokenUrl = 'https://iam.example/token';
  const startedAt = Date.now();
  // Each caller gives up after maxWaitMs: all resolving is the upper bound, a generous one.
  await Promise.all(Array.from({ length: 30 }, () => window.take(tokenUrl, { maxWaitMs: 30_000 })));
  const tookMs = Date.now() - startedAt;
  console.info(`[rate-window] 30 callers, limit 10: all through after ${tookMs} ms`);
  // Slots are counted on Redis's clock; this process's clock only bounds them from below (a busy
  // event loop delays when a caller learns it got one, never when it got it).
  expect(tookMs).toBeGreaterThanOrEqual(2000);
});

test('a full window past the caller’s longest wait: RequestHeldBackError (rate_limited) with the wait, nothing counted', async () => {
  const window = new EndpointRateWindow(redis, { prefix: 'full:', limit: 2 });
  const tokenUrl = 'https://iam.example/token';
  await window.take(tokenUrl, { maxWaitMs: 0 });
  await window.take(tokenUrl, { maxWaitMs: 0 });
  const error = await window.take(tokenUrl, { maxWaitMs: 100 }).catch((err: unknown) => err);
  expect(error).toBeInstanceOf(RequestHeldBackError);
  const heldBack = error as RequestHeldBackError;
  expect(heldBack.kind).toBe('rate_limited');
  expect(heldBack.details.heldBack).toBe(true);
  expect(heldBack.details.retryAfterMs).toBeGreaterThan(100);
  expect(heldBack.details.retryAfterMs).toBeLessThanOrEqual(1001);
  expect(heldBack.message).toContain('https://iam.example stayed at 2 requests per second');
  expect(await redis.zcard(rateWindowKey('full:', tokenUrl))).toBe(2);
});

test('an aborted wait rejects at once with an AbortError', async () => {
  const window = new EndpointRateWindow(redis, { prefix: 'abort:', limit: 1 });
  const tokenUrl = 'https://iam.example/token';
  await window.take(tokenUrl, { maxWaitMs: 0 });
  const controller = new AbortController();
  const waiting = window.take(tokenUrl, { maxWaitMs: 5_000, signal: controller.signal });
  controller.abort(new Error('activity cancelled'));
  await expect(waiting).rejects.toMatchObject({ name: 'AbortError', cause: new Error('activity cancelled') });
});

test('a limit that is not a positive number is refused, naming the option', () => {
  expect(() => new EndpointRateWindow(redis, { limit: 0 })).toThrow('EndpointRateWindowOptions.limit must be a positive number, got 0');
});

test('a slot whose answer sat unread while the process was stalled is replaced by a fresh one, once', async () => {
  const window = new EndpointRateWindow(redis, { prefix: 'stall:', limit: 10 });
  const tokenUrl = 'https://iam.example/token';
  const taking = window.take(tokenUrl, { maxWaitMs: 10_000 });
  // The event loop stalls (as in a long GC pause) while Redis's answer waits to be read.
  const stalledUntil = performance.now() + 2 * MAX_SLOT_AGE_MS;
  while (performance.now() < stalledUntil);
  await taking;
  // The stale slot stays counted: the request that follows is sent on the fresh one.
  expect(await redis.zcard(rateWindowKey('stall:', tokenUrl))).toBe(2);
});
