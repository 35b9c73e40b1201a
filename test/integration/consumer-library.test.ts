/**
 * The consumer library (consumers/node) against real services: the shared Temporal dev server with
 * the project's workflow, a real redis-server, and the IAM emulator's token endpoint and resource
 * API over HTTP. Refreshes go through the refresh-requests stream, which the worker's consumer
 * turns into `forceRefresh` signals.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import got, { HTTPError, type Got } from 'got';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { refreshRequestsStream, tokenKey } from '../../shared/redis-layout.js';
import { TokenStore, type StoredToken } from '../../shared/token-store.js';
import { findFreePort } from '../../dev/free-port.js';
import { ADMIN_PATH, RESOURCE_PATH, startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import {
  MalformedStoredTokenError,
  RedisUnavailableError,
  requestRefresh,
  TokenReader,
  TokenUnavailableError,
  TokenWaitTimeoutError,
} from 'token-lifecycle';
import { withBearerAuth } from 'token-lifecycle/got';
import { parseRefreshRequest } from '../../worker/refresh-request-consumer.js';
import { refreshRequestProof } from 'token-lifecycle/contract';
import { workflowIdFor, type ForceRefreshRequest } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const SECRET = 'consumer-secret';
/** Long enough that no scheduled renewal happens during a test: every new token here is a forced one. */
const LIFETIME_SECONDS = 120;
const MIN_FORCED_INTERVAL_MS = 3_000;

let iam: IamEmulator;
let stack: TokenStack;
let reader: TokenReader;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: LIFETIME_SECONDS,
    clients: ['revoked-twice', 'hundred-callers', 'other-errors'].map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  stack = await startTokenStack({ env: { CONSUMER_SECRET: SECRET } });
  reader = new TokenReader({ redis: stack.redis, cache: true });
});

afterAll(async () => {
  await reader?.close();
  await stack?.stop();
  await iam?.close();
});

function registration(clientId: string, minForcedRefreshIntervalMs: number): ClientRegistration {
  return {
    clientId,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:CONSUMER_SECRET',
    policy: { minForcedRefreshIntervalMs },
  };
}

function api(clientId: string, refreshTimeoutMs = 10_000, prefixUrl = iam.url): Got {
  return withBearerAuth(got.extend({ prefixUrl, retry: { limit: 0 } }), { reader, clientId, refreshTimeoutMs });
}

const resourcePath = RESOURCE_PATH.slice(1);

function issuedTo(clientId: string) {
  return iam.requestsFor(clientId).filter((entry) => entry.outcome === 'issued');
}

function resourceOutcomes(clientId: string, since: number): string[] {
  return iam.resourceRequests.filter((entry) => entry.clientId === clientId && entry.at >= since).map((entry) => entry.outcome);
}

/** The inputs of the `forceRefresh` signals in the workflow's history: what reached the workflow. */
async function forceRefreshSignals(clientId: string): Promise<ForceRefreshRequest[]> {
  const history = await stack.client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory();
  return (history.events ?? [])
    .map((event) => event.workflowExecutionSignaledEventAttributes)
    .filter((signal) => signal?.signalName === 'forceRefresh')
    .map((signal) => JSON.parse(Buffer.from(signal!.input!.payloads![0]!.data!).toString('utf8')) as ForceRefreshRequest);
}

async function registerAndWaitForFirstToken(clientId: string, minForcedRefreshIntervalMs: number) {
  await stack.admin.register(registration(clientId, minForcedRefreshIntervalMs));
  const token = await eventually(async () => await reader.getToken(clientId).catch(() => undefined), 20_000, `first token of ${clientId}`);
  // The workflow holds forced refreshes to the minimum interval after its last request started.
  const issuedAt = issuedTo(clientId)[0]!.at;
  await sleep(Math.max(0, issuedAt + minForcedRefreshIntervalMs + 200 - Date.now()));
  return token;
}

describe('got with bearerAuth against the emulator resource API', () => {
  test('a revoked token: one refresh and the call succeeds; revoked again inside the minimum interval: the caller gets the 401, no loop', async () => {
    const clientId = 'revoked-twice';
    const first = await registerAndWaitForFirstToken(clientId, MIN_FORCED_INTERVAL_MS);
    expect(await api(clientId).get(resourcePath).json()).toStrictEqual({ ok: true, clientId });

    iam.revoke(first.accessToken);
    const firstRevocationAt = Date.now();
    const recovered = await api(clientId).get(resourcePath).json();

    expect(recovered).toStrictEqual({ ok: true, clientId });
    expect(resourceOutcomes(clientId, firstRevocationAt)).toStrictEqual(['invalid_token', 'ok']);
    expect(issuedTo(clientId)).toHaveLength(2);
    const second = await reader.getToken(clientId);
    expect(second.generation).toBe(2);
    expect(second.fingerprint).not.toBe(first.fingerprint);
    expect(iam.resourceRequests.at(-1)!.accessToken).toBe(second.accessToken);
    expect(await forceRefreshSignals(clientId)).toStrictEqual([
      { rejectedFingerprint: first.fingerprint, reason: `401 invalid_token from ${new URL(iam.url).host}` },
    ]);

    // Inside the minimum interval the workflow defers the refresh, so no newer token arrives in time.
    iam.revoke(second.accessToken);
    const secondRevocationAt = Date.now();
    const refused = await api(clientId, 1_000)
      .get(resourcePath)
      .catch((error: unknown) => error);
    const waitedMs = Date.now() - secondRevocationAt;

    expect(refused).toBeInstanceOf(HTTPError);
    expect((refused as HTTPError).response.statusCode).toBe(401);
    expect(resourceOutcomes(clientId, secondRevocationAt)).toStrictEqual(['invalid_token']);
    expect(issuedTo(clientId)).toHaveLength(2);
    // It waited out its refresh timeout; the refusal reached the caller before any newer token
    // existed (two tokens, above), so it did not wait for the deferred refresh.
    expect(waitedMs).toBeGreaterThanOrEqual(1_000);
    expect((await forceRefreshSignals(clientId)).map((signal) => signal.rejectedFingerprint)).toStrictEqual([
      first.fingerprint,
      second.fingerprint,
    ]);

    // The deferred request is served once, when the interval is over: one token, not a loop.
    const third = await reader.waitForToken(clientId, { newerThan: 2, timeoutMs: MIN_FORCED_INTERVAL_MS + 5_000 });
    expect(third.generation).toBe(3);
    await sleep(1_000);
    expect(issuedTo(clientId)).toHaveLength(3);
    expect(resourceOutcomes(clientId, secondRevocationAt)).toStrictEqual(['invalid_token']);
    console.info(
      `[consumer-library] revoked once: recovered after 1 refresh; revoked again inside ${MIN_FORCED_INTERVAL_MS} ms: 401 after ${waitedMs} ms, 1 resource request, 0 extra IAM requests`,
    );
  });

  test('100 concurrent callers holding the same revoked token cause exactly one refresh request and one IAM request', async () => {
    const clientId = 'hundred-callers';
    const first = await registerAndWaitForFirstToken(clientId, 0);
    const issuedBefore = issuedTo(clientId).length;

    iam.revoke(first.accessToken);
    const revokedAt = Date.now();
    const client = api(clientId);
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 100 }, () => client.get(resourcePath).json()));
    const elapsedMs = Math.round(performance.now() - started);

    expect(results).toStrictEqual(Array.from({ length: 100 }, () => ({ ok: true, clientId })));
    expect(issuedTo(clientId)).toHaveLength(issuedBefore + 1);
    expect(await forceRefreshSignals(clientId)).toHaveLength(1);
    const outcomes = resourceOutcomes(clientId, revokedAt);
    expect(outcomes.filter((outcome) => outcome === 'invalid_token')).toHaveLength(100);
    expect(outcomes.filter((outcome) => outcome === 'ok')).toHaveLength(100);
    expect(outcomes).toHaveLength(200);
    console.info(
      `[consumer-library] 100 concurrent callers with a revoked token: ${issuedTo(clientId).length - issuedBefore} IAM request, 1 forceRefresh signal, all 100 succeeded in ${elapsedMs} ms`,
    );
  });

  test('no refresh on 403 insufficient_scope, on a 401 without an error code, or on 401 invalid_request', async () => {
    const clientId = 'other-errors';
    await registerAndWaitForFirstToken(clientId, 0);
    const issuedBefore = issuedTo(clientId).length;

    const since = Date.now();
    const forbidden = await api(clientId)
      .get(ADMIN_PATH.slice(1))
      .catch((error: unknown) => error);
    expect((forbidden as HTTPError).response.statusCode).toBe(403);
    expect((forbidden as HTTPError).response.headers['www-authenticate']).toContain('error="insufficient_scope"');
    expect(resourceOutcomes(clientId, since)).toStrictEqual(['insufficient_scope']);

    // An API whose 401s carry other challenges: each request must be sent exactly once.
    const challenges = ['Bearer realm="other"', 'Bearer realm="other", error="invalid_request"', 'Basic realm="x"'];
    const seen: string[] = [];
    const other: Server = createServer((request, response) => {
      seen.push(request.headers.authorization ?? '');
      response.writeHead(401, { 'WWW-Authenticate': challenges[Number(request.url!.slice(1))]! }).end();
    });
    other.listen(0, '127.0.0.1');
    await once(other, 'listening');
    try {
      const otherApi = api(clientId, 10_000, `http://127.0.0.1:${(other.address() as AddressInfo).port}`);
      for (const index of challenges.keys()) {
        const error = await otherApi.get(String(index)).catch((caught: unknown) => caught);
        expect((error as HTTPError).response.statusCode).toBe(401);
      }
    } finally {
      other.close();
    }
    const token = await reader.getToken(clientId);
    expect(seen).toStrictEqual(challenges.map(() => `Bearer ${token.accessToken}`));
    expect(await forceRefreshSignals(clientId)).toHaveLength(0);
    expect(issuedTo(clientId)).toHaveLength(issuedBefore);
  });
});

describe('TokenReader', () => {
  let sequence = 0;

  /** A token as the worker stores it, for a client no workflow manages. */
  function someToken(clientId: string, generation: number, lifetimeMs = 60_000): StoredToken {
    const accessToken = `eyJ.${clientId}.${generation}.${++sequence}`;
    const obtainedAt = Date.now();
    return {
      clientId,
      accessToken,
      tokenType: 'Bearer',
      scope: 'orders:read',
      generation,
      obtainedAt,
      expiresAt: obtainedAt + lifetimeMs,
      fingerprint: createHash('sha256').update(accessToken).digest('hex').slice(0, 16),
    };
  }

  test('with the cache, a new generation is served once its announcement arrives, never an older one after it (latency: npm run bench:store)', async () => {
    const clientId = 'cache-latency';
    const cachingReader = new TokenReader({ redis: stack.redis, cache: true });
    try {
      const first = someToken(clientId, 1);
      await stack.store.write(first);
      expect((await cachingReader.getToken(clientId)).accessToken).toBe(first.accessToken);
      // Changed behind the reader's back (no announcement): still served from memory.
      await stack.redis.hset(tokenKey('oauth:', clientId), 'access_token', 'changed-without-announcement');
      expect((await cachingReader.getToken(clientId)).accessToken).toBe(first.accessToken);

      const latenciesMs: number[] = [];
      for (let generation = 2; generation <= 21; generation++) {
        const next = someToken(clientId, generation);
        const publishedAt = performance.now();
        await stack.store.write(next);
        let seen = await cachingReader.getToken(clientId);
        while (seen.generation < generation && performance.now() - publishedAt < 10_000) {
          await new Promise((resolve) => setImmediate(resolve));
          seen = await cachingReader.getToken(clientId);
        }
        latenciesMs.push(performance.now() - publishedAt);
        expect(seen).toStrictEqual({
          accessToken: next.accessToken,
          tokenType: 'Bearer',
          expiresAt: next.expiresAt,
          obtainedAt: next.obtainedAt,
          generation,
          fingerprint: next.fingerprint,
          scope: 'orders:read',
          clientId,
        });
      }
      const sorted = [...latenciesMs].sort((a, b) => a - b);
      console.info(
        `[consumer-library] cache invalidation, write start → new generation served, 20 writes: median ${sorted[10]!.toFixed(2)} ms, max ${sorted.at(-1)!.toFixed(2)} ms`,
      );
    } finally {
      await cachingReader.close();
    }
  });

  test('a missing key gives TokenUnavailableError, with and without the cache', async () => {
    const plainReader = new TokenReader({ redis: stack.redis });
    try {
      for (const candidate of [reader, plainReader]) {
        const error = await candidate.getToken('never-stored').catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(TokenUnavailableError);
        expect(error).toMatchObject({ code: 'token_unavailable', clientId: 'never-stored', key: 'oauth:token:never-stored' });
      }
    } finally {
      await plainReader.close();
    }
  });

  test('Redis away gives RedisUnavailableError, and a reader created then works once Redis is up', async () => {
    const port = await findFreePort();
    const url = `redis://127.0.0.1:${port}`;
    const consumerRedis = new Redis(url, { maxRetriesPerRequest: 1 });
    consumerRedis.on('error', () => undefined);
    const cachingReader = new TokenReader({ redis: consumerRedis, cache: true });
    const plainReader = new TokenReader({ redis: consumerRedis });
    let lateRedis: RedisServer | undefined;
    let writer: Redis | undefined;
    try {
      for (const candidate of [cachingReader, plainReader]) {
        const error = await candidate.getToken('away').catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(RedisUnavailableError);
        expect(error).toMatchObject({ code: 'redis_unavailable', clientId: 'away' });
        expect((error as Error).message).toMatch(/^Could not read the token of client 'away' from Redis: /);
      }
      const waitError = await cachingReader.waitForToken('away', { newerThan: 0, timeoutMs: 1_000 }).catch((caught: unknown) => caught);
      expect(waitError).toBeInstanceOf(RedisUnavailableError);

      lateRedis = await startRedisServer({ port });
      writer = new Redis(url);
      const token = someToken('away', 1);
      await new TokenStore(writer).write(token);
      // The failed subscription was not kept: the caching reader subscribes now and serves the token.
      const served = await eventually(() => cachingReader.getToken('away').catch(() => undefined), 30_000, 'the token once Redis is up');
      expect(served.accessToken).toBe(token.accessToken);
      expect((await plainReader.getToken('away')).accessToken).toBe(token.accessToken);
    } finally {
      await cachingReader.close();
      await plainReader.close();
      consumerRedis.disconnect();
      writer?.disconnect();
      await lateRedis?.stop();
    }
  });

  test('a key that does not follow the layout gives MalformedStoredTokenError naming the key', async () => {
    await stack.redis.hset(tokenKey('oauth:', 'garbled'), {
      access_token: 'x',
      client_id: 'garbled',
      token_type: 'Bearer',
      scope: '',
      generation: 'two',
      obtained_at: '1',
      expires_at: String(Date.now() + 60_000),
      fingerprint: 'f',
    });
    const error = await reader.getToken('garbled').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(MalformedStoredTokenError);
    expect(error).toMatchObject({
      code: 'malformed_stored_token',
      key: 'oauth:token:garbled',
      message: 'Redis record oauth:token:garbled field "generation" must be an integer, got "two"',
    });
  });

  test('an expired token is never served, not even from the cache', async () => {
    const clientId = 'short-lived';
    const token = someToken(clientId, 1, 400);
    await stack.store.write(token);
    expect((await reader.getToken(clientId)).generation).toBe(1);

    await sleep(Math.max(0, token.expiresAt - Date.now()) + 10);

    // Nothing announces an expiry: without the expiry check the cache would still serve it.
    await expect(reader.getToken(clientId)).rejects.toBeInstanceOf(TokenUnavailableError);
  });

  test('a reader whose clock is ahead of Redis treats a token past its expires_at as unavailable', async () => {
    const clientId = 'clock-ahead';
    await stack.store.write(someToken(clientId, 1, 30_000));
    const aheadReader = new TokenReader({ redis: stack.redis, cache: true, now: () => Date.now() + 60_000 });
    try {
      await expect(aheadReader.getToken(clientId)).rejects.toBeInstanceOf(TokenUnavailableError);
      expect(await stack.redis.exists(tokenKey('oauth:', clientId))).toBe(1);
    } finally {
      await aheadReader.close();
    }
  });

  test('waitForToken resolves on a newer generation, at once when one is already stored, and times out with a typed error', async () => {
    const clientId = 'waited-for';
    await stack.store.write(someToken(clientId, 4));

    expect((await reader.waitForToken(clientId, { newerThan: 3, timeoutMs: 1_000 })).generation).toBe(4);

    const waiting = reader.waitForToken(clientId, { newerThan: 4, timeoutMs: 5_000 });
    await sleep(100);
    const fifth = someToken(clientId, 5);
    await stack.store.write(fifth);
    expect(await waiting).toMatchObject({ generation: 5, fingerprint: fifth.fingerprint });

    const started = Date.now();
    const error = await reader.waitForToken(clientId, { newerThan: 5, timeoutMs: 300 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TokenWaitTimeoutError);
    expect(error).toMatchObject({ code: 'token_wait_timeout', clientId, newerThan: 5, timeoutMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  test('requestRefresh through the stream adds a well-formed entry that the worker consumer accepts, in a bounded stream', async () => {
    // A prefix of its own: the stack's worker consumes `oauth:refresh-requests` and deletes what it signalled.
    const prefix = 'stream-check:';
    const streamReader = new TokenReader({ redis: stack.redis, prefix });
    try {
      const fingerprint = 'a1b2c3d4e5f60718';
      const accessToken = 'the-token-orders-service-was-refused-with';
      const receipt = await streamReader.requestRefresh('orders-service', {
        rejectedFingerprint: fingerprint,
        reason: '401 invalid_token from orders-api',
        accessToken,
      });
      const proof = refreshRequestProof(accessToken, 'orders-service', fingerprint);

      const stream = refreshRequestsStream(prefix);
      expect(receipt).toMatchObject({ via: 'redis-stream', stream });
      const entries = await stack.redis.xrange(stream, '-', '+');
      expect(entries).toStrictEqual([
        [
          receipt.entryId,
          ['clientId', 'orders-service', 'rejectedFingerprint', fingerprint, 'reason', '401 invalid_token from orders-api', 'proof', proof],
        ],
      ]);
      expect(parseRefreshRequest(entries[0]![1])).toStrictEqual({
        ok: true,
        clientId: 'orders-service',
        request: { rejectedFingerprint: fingerprint, reason: '401 invalid_token from orders-api' },
        proof,
      });

      for (let index = 0; index < 300; index++)
        await requestRefresh({ redis: stack.redis, prefix, maxLength: 10 }, `bounded-${index}`, { accessToken: `token-${index}` });
      // MAXLEN ~ trims whole stream nodes (100 entries each by default), so about 10 to 110 remain.
      expect(await stack.redis.xlen(stream)).toBeLessThanOrEqual(110);
    } finally {
      await streamReader.close();
    }
  });
});
