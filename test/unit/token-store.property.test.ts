/**
 * What consumers read from Redis is untrusted input: anything may have written the token hash or
 * published on the updates channel (docs/design.md, "Redis layout"; docs/redis-contract.md). Any
 * hash yields a token, nothing, or a `MalformedStoredTokenError` that never holds the access
 * token; any message yields an update or nothing; and what the worker writes is read back exactly.
 * Redis is replaced by a map here (the unit tier has no servers): the write script's field
 * mapping is mirrored from shared/token-store.ts, and test/integration/token-store.test.ts runs
 * the real one.
 */
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { describe, expect, test } from 'vitest';
import { MalformedStoredTokenError, TokenStore, type StoredToken } from '../../shared/token-store.js';
import { formatTokenUpdated, parseTokenUpdated, type TokenUpdatedMessage } from 'token-lifecycle/contract';
import { anyText, errorText, propertyOptions, secretArbitrary } from '../support/property-arbitraries.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const HASH_FIELDS = ['access_token', 'token_type', 'expires_at', 'obtained_at', 'scope', 'generation', 'fingerprint', 'client_id'] as const;

/** A Redis stand-in holding one hash, answering HMGET and recording what the write script was given. */
function fakeRedis(hash: Partial<Record<string, string>>) {
  const published: string[] = [];
  const redis = {
    defineCommand() {},
    hmget(_key: string, ...fields: string[]) {
      return Promise.resolve(fields.map((field) => hash[field] ?? null));
    },
    zadd() {
      return Promise.resolve(1);
    },
    // The write script's HSET, as in shared/token-store.ts (KEYS[1], then ARGV in its order).
    oauthTokenStoreWriteIfNewer(_key: string, ...argv: string[]) {
      const [generation, expiresAt, accessToken, tokenType, obtainedAt, scope, fingerprint, clientId, , message] = argv;
      Object.assign(hash, {
        access_token: accessToken,
        token_type: tokenType,
        expires_at: expiresAt,
        obtained_at: obtainedAt,
        scope,
        generation,
        fingerprint,
        client_id: clientId,
      });
      published.push(message!);
      return Promise.resolve(['written']);
    },
  };
  return { redis: redis as unknown as Redis, hash, published };
}

const fieldValue = fc.oneof(
  anyText,
  fc.nat().map(String),
  fc.constantFrom('', ' 7', '0x10', '1e3', '-3', '9007199254740993', String(NOW + 60_000), String(NOW - 1)),
);

describe('TokenStore.read', () => {
  test('any hash yields a token, null, or a MalformedStoredTokenError that does not hold the token', async () => {
    await fc.assert(
      fc.asyncProperty(
        secretArbitrary,
        fc.record(
          Object.fromEntries(HASH_FIELDS.map((field) => [field, fieldValue])) as Record<(typeof HASH_FIELDS)[number], typeof fieldValue>,
          {
            requiredKeys: [],
          },
        ),
        fc.boolean(),
        async (secret, hash, withToken) => {
          const { redis } = fakeRedis({ ...hash, ...(withToken && { access_token: secret }) });
          const store = new TokenStore(redis, { now: () => NOW });
          try {
            const token = await store.read('orders');
            if (token === null) return;
            expect(token.expiresAt).toBeGreaterThan(NOW);
            for (const field of ['generation', 'obtainedAt', 'expiresAt'] as const) expect(Number.isSafeInteger(token[field])).toBe(true);
          } catch (error) {
            expect(error).toBeInstanceOf(MalformedStoredTokenError);
            expect(errorText(error)).not.toContain(secret);
          }
          try {
            await store.readMetadata('orders');
          } catch (error) {
            expect(error).toBeInstanceOf(MalformedStoredTokenError);
            expect(errorText(error)).not.toContain(secret);
          }
        },
      ),
      propertyOptions,
    );
  });

  test('a written token is read back exactly, and its announcement parses to it', async () => {
    const storedToken = fc.record({
      accessToken: fc.stringMatching(/^[\x21-\x7E]{1,200}$/),
      clientId: fc.stringMatching(/^[\x21-\x7e]{1,50}$/),
      tokenType: fc.constant('Bearer'),
      scope: fc.string({ maxLength: 50 }),
      generation: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      obtainedAt: fc.integer({ min: 1, max: NOW }),
      expiresAt: fc.integer({ min: NOW + 1, max: 8_640_000_000_000_000 }),
      fingerprint: fc.stringMatching(/^[0-9a-f]{16}$/),
    });
    await fc.assert(
      fc.asyncProperty(storedToken, async (token: StoredToken) => {
        const { redis, published } = fakeRedis({});
        const store = new TokenStore(redis, { now: () => NOW });
        expect(await store.write(token)).toStrictEqual({ written: true });
        expect(await store.read(token.clientId)).toEqual(token);
        expect(published).toHaveLength(1);
        expect(parseTokenUpdated(published[0]!)).toStrictEqual({
          clientId: token.clientId,
          generation: token.generation,
          fingerprint: token.fingerprint,
          expiresAt: token.expiresAt,
        });
        // A short token may occur in the JSON by chance; a long one only if it was put there.
        if (token.accessToken.length >= 20) expect(published[0]).not.toContain(token.accessToken);
      }),
      propertyOptions,
    );
  });
});

describe('parseTokenUpdated', () => {
  test('any text yields undefined or an update with a string client and a safe-integer generation', () => {
    const objectish = fc
      .record(
        {
          clientId: fc.oneof(fc.string(), fc.jsonValue()),
          generation: fc.oneof(fc.integer(), fc.double(), fc.jsonValue()),
          fingerprint: fc.jsonValue(),
          expiresAt: fc.oneof(fc.integer(), fc.jsonValue()),
        },
        { requiredKeys: [] },
      )
      .map((value) => JSON.stringify(value));
    fc.assert(
      fc.property(
        fc.oneof(
          anyText,
          objectish,
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        (text) => {
          const update = parseTokenUpdated(text);
          if (update === undefined) return;
          expect(typeof update.clientId).toBe('string');
          expect(Number.isSafeInteger(update.generation)).toBe(true);
          if (update.fingerprint !== undefined) expect(typeof update.fingerprint).toBe('string');
          if (update.expiresAt !== undefined) expect(Number.isSafeInteger(update.expiresAt) && update.expiresAt > 0).toBe(true);
        },
      ),
      propertyOptions,
    );
  });

  test('formatTokenUpdated round-trips', () => {
    const message = fc.record({
      clientId: fc.string({ minLength: 1, maxLength: 60 }),
      generation: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      fingerprint: fc.stringMatching(/^[0-9a-f]{16}$/),
      expiresAt: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    });
    fc.assert(
      fc.property(message, (m: TokenUpdatedMessage) => {
        expect(parseTokenUpdated(formatTokenUpdated(m))).toEqual(m);
      }),
      propertyOptions,
    );
  });
});
