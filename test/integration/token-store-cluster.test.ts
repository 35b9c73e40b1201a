import { createHash } from 'node:crypto';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { tokenKey, tokenUpdatedChannel } from '../../shared/redis-layout.js';
import { TokenStore, type StoredToken } from '../../shared/token-store.js';
import type { TokenUpdatedMessage } from 'token-lifecycle/contract';
import { TokenReader, TokenUnavailableError } from 'token-lifecycle';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';

const PREFIX = 'oauth:';

/** A canonical token that expires in 300 s, with overrides. */
function someToken(overrides: Partial<StoredToken> = {}): StoredToken {
  const accessToken = overrides.accessToken ?? `eyJ.${overrides.clientId ?? 'billing-service'}-${overrides.generation ?? 1}.sig`;
  const obtainedAt = Date.now();
  return {
    clientId: 'billing-service',
    accessToken,
    tokenType: 'Bearer',
    scope: 'invoices:read',
    generation: 1,
    obtainedAt,
    expiresAt: obtainedAt + 300_000,
    fingerprint: createHash('sha256').update(accessToken).digest('hex').slice(0, 16),
    ...overrides,
  };
}

/** The ports of the masters that serve the token keys of `clientIds`, from CLUSTER KEYSLOT and CLUSTER SLOTS. */
async function mastersHolding(cluster: Cluster, clientIds: string[]): Promise<Set<number>> {
  const ranges = await cluster.cluster('SLOTS');
  const ports = new Set<number>();
  for (const clientId of clientIds) {
    const slot = await cluster.cluster('KEYSLOT', tokenKey(PREFIX, clientId));
    ports.add(ranges.find(([first, last]) => slot >= first && slot <= last)![2]![1]);
  }
  return ports;
}

describe('TokenStore and TokenReader on a real 3-node Redis Cluster', () => {
  let redisCluster: RedisCluster;
  let cluster: Cluster;
  let subscriber: Cluster;
  let store: TokenStore;
  const updates: TokenUpdatedMessage[] = [];

  beforeAll(async () => {
    redisCluster = await startRedisCluster({ nodes: 3 });
    cluster = new Cluster(redisCluster.nodes);
    store = new TokenStore(cluster);
    subscriber = cluster.duplicate();
    subscriber.on('message', (_channel: string, message: string) => updates.push(JSON.parse(message) as TokenUpdatedMessage));
    await subscriber.subscribe(tokenUpdatedChannel(PREFIX));
  });

  afterAll(async () => {
    subscriber?.disconnect();
    cluster?.disconnect();
    await redisCluster?.stop();
  });

  test('tokens of many clients are written and read back on every node', async () => {
    const tokens = Array.from({ length: 30 }, (_, index) => someToken({ clientId: `service-${index}` }));

    const results = await Promise.all(tokens.map((token) => store.write(token)));

    expect(results.every((result) => result.written)).toBe(true);
    for (const token of tokens) expect(await store.read(token.clientId)).toStrictEqual(token);
    expect(await cluster.pexpiretime(tokenKey(PREFIX, 'service-0'))).toBe(tokens[0]!.expiresAt);
    // 30 keys over 16384 slots land on every master, so the script was routed to each of them.
    const keysPerMaster = await Promise.all(cluster.nodes('master').map((node) => node.dbsize()));
    expect(keysPerMaster).toHaveLength(3);
    expect(keysPerMaster.every((count) => count > 0)).toBe(true);
  });

  test('an older or equal generation never overwrites a newer one', async () => {
    const newer = someToken({ clientId: 'stale-check', generation: 5 });
    await store.write(newer);

    expect(await store.write(someToken({ clientId: 'stale-check', generation: 4 }))).toStrictEqual({
      written: false,
      reason: 'stale',
      stored: { generation: 5, fingerprint: newer.fingerprint, expiresAt: newer.expiresAt },
    });
    expect(await store.write(someToken({ clientId: 'stale-check', generation: 5, accessToken: 'eyJ.other.sig' }))).toMatchObject({
      written: false,
      reason: 'stale',
    });
    expect(await store.read('stale-check')).toStrictEqual(newer);
    expect(await store.readGeneration('stale-check')).toBe(5);
  });

  test('accepted writes on any node are published to a subscriber of the cluster, stale ones are not', async () => {
    const clientIds = ['publish-a', 'publish-b', 'publish-c', 'publish-d'];
    const written = await Promise.all(clientIds.map((clientId) => store.write(someToken({ clientId, generation: 2 }))));
    await store.write(someToken({ clientId: 'publish-a', generation: 1 }));
    const last = someToken({ clientId: 'publish-a', generation: 3 });
    await store.write(last);

    expect(written.every((result) => result.written)).toBe(true);
    await vi.waitFor(() => expect(updates.filter((message) => message.clientId.startsWith('publish-'))).toHaveLength(5));
    const published = updates.filter((message) => message.clientId.startsWith('publish-'));
    expect(published.map(({ clientId, generation }) => `${clientId}@${generation}`).sort()).toStrictEqual([
      'publish-a@2',
      'publish-a@3',
      'publish-b@2',
      'publish-c@2',
      'publish-d@2',
    ]);
    expect(published.find((message) => message.generation === 3)).toStrictEqual({
      clientId: 'publish-a',
      generation: 3,
      fingerprint: last.fingerprint,
      expiresAt: last.expiresAt,
    });
  });

  test('the reader gets the tokens of clients whose keys live on every node, and none for a missing key', async () => {
    const reader = new TokenReader({ redis: cluster });
    try {
      const tokens = Array.from({ length: 12 }, (_, index) => someToken({ clientId: `reader-${index}`, generation: 3 }));
      await Promise.all(tokens.map((token) => store.write(token)));

      const read = await Promise.all(tokens.map((token) => reader.getToken(token.clientId)));

      expect(
        (
          await mastersHolding(
            cluster,
            tokens.map((token) => token.clientId),
          )
        ).size,
      ).toBe(3);
      expect(read).toStrictEqual(
        tokens.map(({ accessToken, tokenType, obtainedAt, expiresAt, generation, fingerprint, scope, clientId }) => ({
          accessToken,
          tokenType,
          obtainedAt,
          expiresAt,
          generation,
          fingerprint,
          scope,
          clientId,
        })),
      );
      await expect(reader.getToken('reader-missing')).rejects.toBeInstanceOf(TokenUnavailableError);
    } finally {
      await reader.close();
    }
  });

  test("the caching reader drops a client's entry when a newer token is announced from any node", async () => {
    const reader = new TokenReader({ redis: cluster, cache: true });
    try {
      const clientIds = ['cached-a', 'cached-b', 'cached-c', 'cached-d', 'cached-e', 'cached-f'];
      expect((await mastersHolding(cluster, clientIds)).size).toBe(3);
      await Promise.all(clientIds.map((clientId) => store.write(someToken({ clientId, generation: 1 }))));
      for (const clientId of clientIds) expect((await reader.getToken(clientId)).generation).toBe(1);
      // Changed without an announcement: the cache keeps serving what it holds.
      await cluster.hset(tokenKey(PREFIX, 'cached-a'), 'access_token', 'changed-without-announcement');
      expect((await reader.getToken('cached-a')).accessToken).toBe('eyJ.cached-a-1.sig');

      const newer = clientIds.map((clientId) => someToken({ clientId, generation: 2 }));
      const writtenAt = performance.now();
      await Promise.all(newer.map((token) => store.write(token)));
      const seen = await vi.waitFor(
        async () => {
          const tokens = await Promise.all(clientIds.map((clientId) => reader.getToken(clientId)));
          expect(tokens.map((token) => token.generation)).toStrictEqual(clientIds.map(() => 2));
          return tokens;
        },
        { timeout: 10_000, interval: 1 },
      );
      const latencyMs = performance.now() - writtenAt;

      expect(seen.map((token) => token.accessToken)).toStrictEqual(newer.map((token) => token.accessToken));
      console.info(
        `[token-store-cluster] caching reader saw 6 new generations (keys on all 3 nodes) ${latencyMs.toFixed(1)} ms after the writes started`,
      );
      const waited = reader.waitForToken('cached-b', { newerThan: 2, timeoutMs: 5_000 });
      await store.write(someToken({ clientId: 'cached-b', generation: 3 }));
      expect((await waited).generation).toBe(3);
    } finally {
      await reader.close();
    }
  });

  test('the write script still works on every node after SCRIPT FLUSH', async () => {
    await Promise.all(cluster.nodes('master').map((node) => node.script('FLUSH')));

    const tokens = Array.from({ length: 10 }, (_, index) => someToken({ clientId: `after-flush-${index}` }));
    const results = await Promise.all(tokens.map((token) => store.write(token)));

    expect(results.every((result) => result.written)).toBe(true);
  });
});
