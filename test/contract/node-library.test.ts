/**
 * Every contract vector (test/contract/vectors.json) through the Node consumer library, against a
 * real redis-server: the same vectors that the Go and Python libraries' tests read, so the three
 * give the same answers (docs/redis-contract.md). Each group of vectors uses a key prefix of its own.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import got from 'got';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { refreshRequestsStream, tokenKey, tokenUpdatedChannel } from '../../shared/redis-layout.js';
import { TokenStore } from '../../shared/token-store.js';
import {
  fetchWithBearerAuth,
  findBearerChallenge,
  isInvalidTokenChallenge,
  MalformedStoredTokenError,
  parseWwwAuthenticate,
  requestRefresh,
  TokenReader,
  TokenUnavailableError,
  WwwAuthenticateSyntaxError,
} from 'token-lifecycle';
import {
  formatTraceparent,
  isValidRefreshRequestProof,
  isValidTraceparent,
  parseTraceparent,
  parseTokenUpdated,
  refreshRequestProof,
  refreshRequestProofMessage,
} from 'token-lifecycle/contract';
import { withBearerAuth } from 'token-lifecycle/got';
import { parseRefreshRequest } from '../../worker/refresh-request-consumer.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { loadContractVectors, type StoredValue } from './contract-vectors.js';
import tokenUpdatedSchema from '../../docs/token-updated.schema.json' with { type: 'json' };

const vectors = loadContractVectors();
let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.stop();
});

async function store(key: string, stored: StoredValue): Promise<void> {
  await redis.del(key);
  if (stored?.type === 'hash') await redis.hset(key, stored.fields);
  if (stored?.type === 'string') await redis.set(key, stored.value);
}

/** A complete hash as the worker writes it, valid for a minute by the real clock. */
function tokenFields(clientId: string, generation: number): Record<string, string> {
  const now = Date.now();
  return {
    access_token: `token-${clientId}-${generation}`,
    token_type: 'Bearer',
    expires_at: String(now + 60_000),
    obtained_at: String(now),
    scope: '',
    generation: String(generation),
    fingerprint: generation.toString(16).padStart(16, '0'),
    client_id: clientId,
  };
}

describe('stored tokens', () => {
  const { now, vectors: storedVectors } = vectors.storedTokens;

  describe.each([false, true])('cache %s', (cache) => {
    const prefix = `contract-node-${cache ? 'cached' : 'plain'}:`;
    let reader: TokenReader;
    beforeAll(() => {
      reader = new TokenReader({ redis, prefix, cache, now: () => now });
    });
    afterAll(() => reader?.close());

    test.each(storedVectors)('$name', async (vector) => {
      const key = tokenKey(prefix, vector.clientId);
      await store(key, vector.stored);
      const outcome = await reader.getToken(vector.clientId).catch((error: unknown) => error);
      if ('token' in vector.expect) {
        expect(outcome).toStrictEqual(vector.expect.token);
        return;
      }
      if (vector.expect.error === 'token_unavailable') {
        expect(outcome).toBeInstanceOf(TokenUnavailableError);
        expect(outcome).toMatchObject({ code: 'token_unavailable', clientId: vector.clientId, key });
        return;
      }
      expect(outcome).toBeInstanceOf(MalformedStoredTokenError);
      expect(outcome).toMatchObject({ code: 'malformed_stored_token', key });
      if (vector.expect.field !== undefined) expect((outcome as Error).message).toContain(`"${vector.expect.field}"`);
      expect((outcome as Error).message).not.toContain('eyJ');
    });
  });
});

describe('WWW-Authenticate', () => {
  test.each(vectors.wwwAuthenticate)('$name', (vector) => {
    const header = vector.header ?? undefined;
    if (vector.challenges === 'syntax_error') {
      expect(() => parseWwwAuthenticate(header!)).toThrow(WwwAuthenticateSyntaxError);
    } else if (vector.challenges !== null) {
      expect(parseWwwAuthenticate(header!)).toStrictEqual(vector.challenges);
    }
    expect(findBearerChallenge(header) ?? null).toStrictEqual(vector.bearer);
    expect(isInvalidTokenChallenge(header)).toBe(vector.invalidToken);
  });
});

/** One request through an HTTP client's integration: the status the caller got. */
type SendWithToken = (reader: TokenReader, clientId: string, url: string) => Promise<number>;

const integrations: { name: string; send: SendWithToken }[] = [
  {
    name: 'got with bearerAuth',
    send: async (reader, clientId, url) => {
      const api = withBearerAuth(got.extend({ retry: { limit: 0 }, throwHttpErrors: false }), { reader, clientId, refreshTimeoutMs: 300 });
      return (await api.get(url)).statusCode;
    },
  },
  {
    name: 'fetchWithBearerAuth',
    send: async (reader, clientId, url) => {
      const response = await fetchWithBearerAuth({ reader, clientId, refreshTimeoutMs: 300 })(url);
      await response.arrayBuffer();
      return response.status;
    },
  },
];

describe.each(integrations)('responses: $name refreshes only on 401 invalid_token', ({ name, send }) => {
  const prefix = `contract-node-http-${name.split(' ')[0]}:`;
  let server: Server;
  let reader: TokenReader;
  const hits = new Map<string, string[]>();

  beforeAll(async () => {
    server = createServer((request, response) => {
      const index = Number(request.url!.slice(1));
      const vector = vectors.responses[index]!;
      hits.set(request.url!, [...(hits.get(request.url!) ?? []), request.headers.authorization ?? '']);
      if (vector.wwwAuthenticate !== null) response.setHeader('WWW-Authenticate', vector.wwwAuthenticate);
      response.writeHead(vector.status).end('{}');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    reader = new TokenReader({ redis, prefix, cache: true });
  });

  afterAll(async () => {
    await reader?.close();
    server?.close();
  });

  test.each(vectors.responses.map((vector, index) => ({ ...vector, index })))('$name', async (vector) => {
    const clientId = `response-${vector.index}`;
    const fields = tokenFields(clientId, 1);
    await store(tokenKey(prefix, clientId), { type: 'hash', fields });

    // No newer token arrives: a refresh is asked for, waited on briefly, and the caller gets the answer.
    const status = await send(reader, clientId, `http://127.0.0.1:${(server.address() as AddressInfo).port}/${vector.index}`);

    expect(status).toBe(vector.status);
    expect(hits.get(`/${vector.index}`)).toStrictEqual([`Bearer ${fields.access_token}`]);
    const entries = (await redis.xrange(refreshRequestsStream(prefix), '-', '+')).filter(([, entry]) => entry[1] === clientId);
    expect(entries.map(([, entry]) => entry.slice(0, 4))).toStrictEqual(
      vector.refresh ? [['clientId', clientId, 'rejectedFingerprint', fields.fingerprint]] : [],
    );
    // The entry is proven with the very token the API refused.
    if (vector.refresh)
      expect(entries[0]![1].slice(-2)).toStrictEqual(['proof', refreshRequestProof(fields.access_token!, clientId, fields.fingerprint)]);
  });
});

describe('token-updated', () => {
  const validate = new Ajv2020({ strict: true }).compile(tokenUpdatedSchema);
  const { cached, messages } = vectors.tokenUpdated;

  test.each(messages)('schema and parse: $name', (vector) => {
    let value: unknown;
    try {
      value = JSON.parse(vector.payload);
    } catch {
      value = undefined;
    }
    expect(value !== undefined && validate(value)).toBe(vector.schemaValid);
    const parsed = parseTokenUpdated(vector.payload);
    expect(parsed === undefined ? null : { clientId: parsed.clientId, generation: parsed.generation }).toStrictEqual(vector.announces);
  });

  test.each(messages.map((vector, index) => ({ ...vector, index })))('cache: $name', async (vector) => {
    const prefix = `contract-node-updates-${vector.index}:`;
    const reader = new TokenReader({ redis, prefix, cache: true });
    try {
      await store(tokenKey(prefix, cached.clientId), { type: 'hash', fields: tokenFields(cached.clientId, cached.generation) });
      expect((await reader.getToken(cached.clientId)).generation).toBe(cached.generation);
      // Behind the reader's back: only an announcement makes it read Redis again.
      await store(tokenKey(prefix, cached.clientId), { type: 'hash', fields: tokenFields(cached.clientId, cached.generation + 1) });
      expect((await reader.getToken(cached.clientId)).generation).toBe(cached.generation);

      await redis.publish(tokenUpdatedChannel(prefix), vector.payload);
      // Announcements arrive in order on one connection: once this one is seen, so was the vector's.
      await store(tokenKey(prefix, 'barrier'), { type: 'hash', fields: tokenFields('barrier', 1) });
      await reader.getToken('barrier');
      await store(tokenKey(prefix, 'barrier'), { type: 'hash', fields: tokenFields('barrier', 2) });
      await redis.publish(tokenUpdatedChannel(prefix), JSON.stringify({ clientId: 'barrier', generation: 2 }));
      await eventually(
        async () => ((await reader.getToken('barrier')).generation === 2 ? true : undefined),
        10_000,
        'the barrier announcement',
      );

      expect((await reader.getToken(cached.clientId)).generation).toBe(vector.dropsCache ? cached.generation + 1 : cached.generation);
    } finally {
      await reader.close();
    }
  });

  test('every announcement the worker publishes follows the schema', async () => {
    const prefix = 'contract-node-schema:';
    const subscriber = redis.duplicate();
    const published: string[] = [];
    try {
      subscriber.on('message', (_channel: string, message: string) => published.push(message));
      await subscriber.subscribe(tokenUpdatedChannel(prefix));
      const tokenStore = new TokenStore(redis, { prefix });
      for (const generation of [1, 2, 3]) {
        const fields = tokenFields('schema-check', generation);
        await tokenStore.write({
          clientId: 'schema-check',
          accessToken: fields.access_token!,
          tokenType: 'Bearer',
          scope: '',
          generation,
          obtainedAt: Number(fields.obtained_at),
          expiresAt: Number(fields.expires_at),
          fingerprint: fields.fingerprint!,
        });
      }
      await eventually(() => (published.length === 3 ? true : undefined), 10_000, 'three announcements');
      for (const message of published) expect(validate(JSON.parse(message)), JSON.stringify(validate.errors)).toBe(true);
    } finally {
      subscriber.disconnect();
    }
  });
});

describe('refresh requests', () => {
  const prefix = 'contract-node-refresh:';

  test.each([...vectors.refreshRequests, ...vectors.tracedRefreshRequests])('$name', async (vector) => {
    const receipt = await requestRefresh({ redis, prefix }, vector.clientId, { ...vector.request, accessToken: vector.accessToken });
    const entryId = receipt.entryId;
    const [entry] = await redis.xrange(refreshRequestsStream(prefix), entryId, entryId);
    expect(entry?.[1]).toStrictEqual(vector.fields);
    const parsed = parseRefreshRequest(vector.fields);
    expect(parsed).toMatchObject({ ok: true, clientId: vector.clientId });
    // What the worker checks: the proof was made with the token the requester holds.
    const proof = parsed.ok ? parsed.proof : undefined;
    expect(isValidRefreshRequestProof(proof, vector.accessToken, vector.clientId, vector.request.rejectedFingerprint)).toBe(true);
    // What the signal carries: the entry's traceparent, when it sent one.
    const sent = vector.fields[vector.fields.indexOf('traceparent') + 1];
    expect(parsed.ok && parsed.request.traceparent).toBe(vector.fields.includes('traceparent') ? sent : undefined);
  });

  test.each(vectors.traceparents)('traceparent: $name', (vector) => {
    expect(isValidTraceparent(vector.value)).toBe(vector.valid);
    const fields = parseTraceparent(vector.value);
    expect(fields === undefined ? undefined : formatTraceparent(fields)).toBe(vector.valid ? vector.value : undefined);
    // The worker keeps a valid one for the signal and drops any other: never a reason to refuse.
    const parsed = parseRefreshRequest(['clientId', 'orders-service', 'traceparent', vector.value, 'proof', 'p']);
    expect(parsed).toMatchObject({ ok: true, clientId: 'orders-service' });
    expect(parsed.ok && parsed.request.traceparent).toBe(vector.valid ? vector.value : undefined);
  });

  test.each(vectors.refreshRequestProofs)('proof: $name', (vector) => {
    expect(refreshRequestProofMessage(vector.clientId, vector.rejectedFingerprint)).toBe(vector.message);
    expect(refreshRequestProof(vector.accessToken, vector.clientId, vector.rejectedFingerprint)).toBe(vector.proof);
    expect(isValidRefreshRequestProof(vector.proof, vector.accessToken, vector.clientId, vector.rejectedFingerprint)).toBe(true);
  });

  test('without a token of its own, a stream request is proven with the token Redis holds, or refused with a typed error', async () => {
    const fields = tokenFields('refresh-from-redis', 3);
    await store(tokenKey(prefix, 'refresh-from-redis'), { type: 'hash', fields });
    const receipt = await requestRefresh({ redis, prefix }, 'refresh-from-redis', { rejectedFingerprint: fields.fingerprint });
    const entryId = receipt.entryId;
    const [entry] = await redis.xrange(refreshRequestsStream(prefix), entryId, entryId);
    expect(entry?.[1]).toStrictEqual([
      'clientId',
      'refresh-from-redis',
      'rejectedFingerprint',
      fields.fingerprint,
      'proof',
      refreshRequestProof(fields.access_token!, 'refresh-from-redis', fields.fingerprint),
    ]);

    const refused = await requestRefresh({ redis, prefix }, 'never-stored').catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'refresh_request_failed', clientId: 'never-stored' });
    expect((refused as Error).message).toMatch(/no token of it to prove the request with/);
  });
});
