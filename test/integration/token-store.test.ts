import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { generationsKey, refreshRequestsStream, tokenKey, tokenUpdatedChannel } from '../../shared/redis-layout.js';
import { TokenStore, type StoredToken, type WriteResult } from '../../shared/token-store.js';
import type { TokenUpdatedMessage } from 'token-lifecycle/contract';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

const PREFIX = 'oauth:';

/** A canonical token that expires in 300 s, with overrides. */
function someToken(overrides: Partial<StoredToken> = {}): StoredToken {
  const accessToken = overrides.accessToken ?? `eyJ.token-${overrides.generation ?? 1}.sig`;
  const obtainedAt = Date.now();
  return {
    clientId: 'billing-service',
    accessToken,
    tokenType: 'Bearer',
    scope: 'invoices:read invoices:write',
    generation: 1,
    obtainedAt,
    expiresAt: obtainedAt + 300_000,
    fingerprint: createHash('sha256').update(accessToken).digest('hex').slice(0, 16),
    ...overrides,
  };
}

/** Everything published on the token-updated channel, in arrival order. */
async function collectTokenUpdates(subscriber: Redis): Promise<{ raw: string[]; messages: TokenUpdatedMessage[] }> {
  const raw: string[] = [];
  const messages: TokenUpdatedMessage[] = [];
  subscriber.on('message', (_channel: string, message: string) => {
    raw.push(message);
    messages.push(JSON.parse(message) as TokenUpdatedMessage);
  });
  await subscriber.subscribe(tokenUpdatedChannel(PREFIX));
  return { raw, messages };
}

function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

describe('TokenStore on a real redis-server', () => {
  let redisServer: RedisServer;
  let redis: Redis;
  let subscriber: Redis;
  let store: TokenStore;

  beforeAll(async () => {
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url);
    store = new TokenStore(redis);
  });

  afterAll(async () => {
    redis?.disconnect();
    await redisServer?.stop();
  });

  beforeEach(async () => {
    await redis.flushall();
    subscriber = new Redis(redisServer.url);
  });

  afterEach(() => {
    subscriber.disconnect();
  });

  test('keys, channel and stream names follow the contract layout', () => {
    expect(tokenKey('oauth:', 'billing-service')).toBe('oauth:token:billing-service');
    expect(tokenUpdatedChannel('oauth:')).toBe('oauth:token-updated');
    expect(refreshRequestsStream('oauth:')).toBe('oauth:refresh-requests');
    expect(store.prefix).toBe('oauth:');
  });

  test('a write stores every contract field with its exact value', async () => {
    const token = someToken({ generation: 7 });

    await expect(store.write(token)).resolves.toEqual({ written: true });

    expect(await redis.hgetall('oauth:token:billing-service')).toStrictEqual({
      access_token: token.accessToken,
      token_type: 'Bearer',
      expires_at: String(token.expiresAt),
      obtained_at: String(token.obtainedAt),
      scope: 'invoices:read invoices:write',
      generation: '7',
      fingerprint: token.fingerprint,
      client_id: 'billing-service',
    });
  });

  test("the worker's renewal point is stored beside the contract fields, and a token written without one drops the old one", async () => {
    const token = someToken({ generation: 1 });
    const refreshAt = token.obtainedAt + 255_000;
    await store.write({ ...token, refreshAt });

    expect(await redis.hget('oauth:token:billing-service', 'refresh_at')).toBe(String(refreshAt));
    await expect(store.readTimes('billing-service')).resolves.toEqual({ expiresAt: token.expiresAt, refreshAt });
    // Consumers read the contract's fields only.
    expect(await store.read('billing-service')).toStrictEqual(token);

    const next = someToken({ generation: 2 });
    await store.write(next);
    expect(await redis.hexists('oauth:token:billing-service', 'refresh_at')).toBe(0);
    await expect(store.readTimes('billing-service')).resolves.toEqual({ expiresAt: next.expiresAt, refreshAt: null });
    await expect(store.readTimes('nobody')).resolves.toBeNull();
  });

  test('the token key expires at expires_at, never later', async () => {
    const token = someToken();
    await store.write(token);

    const before = Date.now();
    const pttl = await redis.pttl(tokenKey(PREFIX, token.clientId));
    expect(await redis.pexpiretime(tokenKey(PREFIX, token.clientId))).toBe(token.expiresAt);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(token.expiresAt - before);
  });

  test('Redis drops a token once its expires_at has passed', async () => {
    const token = someToken({ expiresAt: Date.now() + 200 });
    await expect(store.write(token)).resolves.toEqual({ written: true });

    await new Promise((resolve) => setTimeout(resolve, 300));

    expect(await redis.exists(tokenKey(PREFIX, token.clientId))).toBe(0);
    expect(await store.read(token.clientId)).toBeNull();
  });

  test('a newer generation replaces the token and its expiry, even an earlier expiry', async () => {
    const first = someToken({ generation: 1 });
    const second = someToken({ generation: 2, expiresAt: first.expiresAt - 60_000 });
    await store.write(first);

    await expect(store.write(second)).resolves.toEqual({ written: true });

    expect(await store.read(second.clientId)).toStrictEqual(second);
    expect(await redis.pexpiretime(tokenKey(PREFIX, second.clientId))).toBe(second.expiresAt);
  });

  test('an older generation never overwrites a newer one and reports what is stored', async () => {
    const newer = someToken({ generation: 5 });
    const older = someToken({ generation: 4, expiresAt: newer.expiresAt + 60_000 });
    await store.write(newer);

    const result = await store.write(older);

    expect(result).toStrictEqual({
      written: false,
      reason: 'stale',
      stored: { generation: 5, fingerprint: newer.fingerprint, expiresAt: newer.expiresAt },
    });
    expect(await store.read(newer.clientId)).toStrictEqual(newer);
    expect(await redis.pexpiretime(tokenKey(PREFIX, newer.clientId))).toBe(newer.expiresAt);
  });

  test('an equal generation never overwrites the stored token', async () => {
    const stored = someToken({ generation: 5, accessToken: 'eyJ.first.sig' });
    const sameGeneration = someToken({ generation: 5, accessToken: 'eyJ.second.sig' });
    await store.write(stored);

    const result = await store.write(sameGeneration);

    expect(result).toMatchObject({ written: false, reason: 'stale', stored: { generation: 5, fingerprint: stored.fingerprint } });
    expect((await store.read(stored.clientId))?.accessToken).toBe('eyJ.first.sig');
  });

  test('of many concurrent writes with shuffled generations the highest wins, and exactly the writes newer at their time are published', async () => {
    const updates = await collectTokenUpdates(subscriber);
    const connections = Array.from({ length: 4 }, () => new Redis(redisServer.url));
    const writers = connections.map((connection) => new TokenStore(connection));
    const generations = shuffled(Array.from({ length: 60 }, (_, index) => index + 1));

    try {
      const results = await Promise.all(
        generations.map((generation, index) => writers[index % writers.length]!.write(someToken({ generation }))),
      );
      await vi.waitFor(() => expect(updates.messages.at(-1)?.generation).toBe(60));

      const writtenGenerations = generations.filter((_, index) => results[index]!.written);
      const publishedGenerations = updates.messages.map((message) => message.generation);
      // Redis runs the scripts one at a time and delivers messages in that order: every published
      // write was newer than all before it, and every refused one saw an equal or newer generation.
      expect([...publishedGenerations].sort((a, b) => a - b)).toStrictEqual(publishedGenerations);
      expect(new Set(publishedGenerations).size).toBe(publishedGenerations.length);
      expect([...writtenGenerations].sort((a, b) => a - b)).toStrictEqual(publishedGenerations);
      generations.forEach((generation, index) => {
        const result: WriteResult = results[index]!;
        if (!result.written && result.reason === 'stale') expect(result.stored.generation).toBeGreaterThanOrEqual(generation);
        else expect(result).toStrictEqual({ written: true });
      });
      expect(await store.readGeneration('billing-service')).toBe(60);
      expect((await store.read('billing-service'))?.accessToken).toBe('eyJ.token-60.sig');
    } finally {
      for (const connection of connections) connection.disconnect();
    }
  });

  test('an accepted write publishes the contract JSON on token-updated, without the token', async () => {
    const updates = await collectTokenUpdates(subscriber);
    const token = someToken({ generation: 3 });

    await store.write(token);

    await vi.waitFor(() => expect(updates.raw).toHaveLength(1));
    expect(JSON.parse(updates.raw[0]!)).toStrictEqual({
      clientId: 'billing-service',
      generation: 3,
      fingerprint: token.fingerprint,
      expiresAt: token.expiresAt,
    });
    expect(updates.raw[0]).not.toContain(token.accessToken);
  });

  test('a stale write publishes nothing', async () => {
    const updates = await collectTokenUpdates(subscriber);
    await store.write(someToken({ generation: 2 }));
    await store.write(someToken({ generation: 1 }));
    // Messages arrive in publish order: once generation 3 is here, a message for 1 would be too.
    await store.write(someToken({ generation: 3 }));

    await vi.waitFor(() => expect(updates.messages.at(-1)?.generation).toBe(3));
    expect(updates.messages.map((message) => message.generation)).toStrictEqual([2, 3]);
  });

  test('an already-expired token is neither written nor published', async () => {
    const updates = await collectTokenUpdates(subscriber);
    const expired = someToken({ generation: 1, expiresAt: Date.now() - 1_000 });

    await expect(store.write(expired)).resolves.toStrictEqual({ written: false, reason: 'expired' });

    expect(await redis.exists(tokenKey(PREFIX, expired.clientId))).toBe(0);
    await store.write(someToken({ generation: 2 }));
    await vi.waitFor(() => expect(updates.messages.at(-1)?.generation).toBe(2));
    expect(updates.messages.map((message) => message.generation)).toStrictEqual([2]);
  });

  test('an already-expired newer token leaves the stored token and its generation in place', async () => {
    const stored = someToken({ generation: 1 });
    await store.write(stored);

    const result = await store.write(someToken({ generation: 2, expiresAt: Date.now() - 1_000 }));

    expect(result).toStrictEqual({ written: false, reason: 'expired' });
    expect(await store.read(stored.clientId)).toStrictEqual(stored);
  });

  test('read returns every field of the stored token with numbers parsed', async () => {
    const token = someToken({ generation: 12, scope: '' });
    await store.write(token);

    expect(await store.read('billing-service')).toStrictEqual(token);
  });

  test('read, readMetadata and readGeneration of an absent key give null, null and 0', async () => {
    expect(await store.read('unknown-client')).toBeNull();
    expect(await store.readMetadata('unknown-client')).toBeNull();
    expect(await store.readGeneration('unknown-client')).toBe(0);
  });

  test('readMetadata returns everything but the token', async () => {
    const token = someToken({ generation: 4 });
    await store.write(token);

    const { accessToken: _accessToken, ...metadata } = token;
    expect(await store.readMetadata('billing-service')).toStrictEqual(metadata);
  });

  test('readGeneration returns the stored generation', async () => {
    await store.write(someToken({ generation: 41 }));

    expect(await store.readGeneration('billing-service')).toBe(41);
  });

  test('read treats a token whose expires_at has passed by the reader clock as absent', async () => {
    const token = someToken();
    await store.write(token);
    const readerAhead = new TokenStore(redis, { now: () => token.expiresAt });

    expect(await readerAhead.read(token.clientId)).toBeNull();
    expect(await readerAhead.readMetadata(token.clientId)).toBeNull();
    expect(await readerAhead.readGeneration(token.clientId)).toBe(token.generation);
  });

  test('delete removes the stored token and reports whether there was one', async () => {
    await store.write(someToken());

    expect(await store.delete('billing-service')).toBe(true);
    expect(await store.read('billing-service')).toBeNull();
    expect(await store.delete('billing-service')).toBe(false);
  });

  test('readHighestGeneration outlives the token key: after delete (purge) and after it expired', async () => {
    await store.write(someToken({ generation: 7 }));
    await store.delete('billing-service');
    expect(await store.readGeneration('billing-service')).toBe(0);
    expect(await store.readHighestGeneration('billing-service')).toBe(7);

    await store.write(someToken({ generation: 8, expiresAt: Date.now() + 150 }));
    await vi.waitFor(async () => expect(await redis.exists(tokenKey(PREFIX, 'billing-service'))).toBe(0), { timeout: 2000 });
    expect(await store.readHighestGeneration('billing-service')).toBe(8);
    expect(await redis.zscore(generationsKey(PREFIX), 'billing-service')).toBe('8');
    expect(await store.readHighestGeneration('another-client')).toBe(0);
  });

  test('the generation record only goes up: a stale write leaves it where it was', async () => {
    await store.write(someToken({ generation: 5 }));
    await store.delete('billing-service');
    // With the token key gone, generation 3 is written, but the record of 5 stays.
    await expect(store.write(someToken({ generation: 3 }))).resolves.toEqual({ written: true });
    expect(await store.readGeneration('billing-service')).toBe(3);
    expect(await store.readHighestGeneration('billing-service')).toBe(5);
  });

  test('a custom prefix is used for the key and the channel', async () => {
    const custom = new TokenStore(redis, { prefix: 'tenant-a:' });
    const updates: string[] = [];
    subscriber.on('message', (channel: string) => updates.push(channel));
    await subscriber.subscribe('tenant-a:token-updated');

    await custom.write(someToken());

    expect(await redis.exists('tenant-a:token:billing-service')).toBe(1);
    expect(await redis.exists('oauth:token:billing-service')).toBe(0);
    await vi.waitFor(() => expect(updates).toStrictEqual(['tenant-a:token-updated']));
  });

  test('a write rejects a generation that is not a positive integer before reaching Redis', async () => {
    await expect(store.write(someToken({ generation: 0 }))).rejects.toThrow(
      '"token" "generation" property must be a positive integer, got 0',
    );
    await expect(store.write(someToken({ generation: 1.5 }))).rejects.toThrow(RangeError);
    expect(await redis.exists('oauth:token:billing-service')).toBe(0);
  });

  test('the write script still works after SCRIPT FLUSH, through the NOSCRIPT fallback', async () => {
    await store.write(someToken({ generation: 1 }));
    await redis.script('FLUSH');
    await redis.config('RESETSTAT');

    await expect(store.write(someToken({ generation: 2 }))).resolves.toEqual({ written: true });

    // Proves the EVALSHA really missed and ioredis fell back to EVAL.
    expect(await redis.info('errorstats')).toContain('errorstat_NOSCRIPT:count=1');
    expect(await store.readGeneration('billing-service')).toBe(2);
  });

  test('the write script still works after Redis restarts empty, and the generation guard after a restart with data', async () => {
    await store.write(someToken({ generation: 1 }));

    await redisServer.restart({ empty: true });
    await expect(store.write(someToken({ generation: 2 }))).resolves.toEqual({ written: true });
    expect(await store.readGeneration('billing-service')).toBe(2);

    await redisServer.restart();
    expect(await store.write(someToken({ generation: 1 }))).toMatchObject({ written: false, reason: 'stale' });
    await expect(store.write(someToken({ generation: 3 }))).resolves.toEqual({ written: true });
  });
});
