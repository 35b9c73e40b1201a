/**
 * The token store: where the worker publishes tokens and where consumers read them, in the Redis
 * layout that docs/design.md, "Redis layout", fixes as a contract (consumers in any language depend
 * on it).
 *
 * - Key `<prefix>token:<clientId>`: a hash of `access_token`, `token_type`, `expires_at` (Unix ms),
 *   `obtained_at` (Unix ms), `scope`, `generation`, `fingerprint`, `client_id`, and the worker's
 *   own `refresh_at` (Unix ms, consumers ignore it), expiring (PEXPIREAT) at `expires_at`.
 * - Channel `<prefix>token-updated`: a {@link TokenUpdatedMessage} after each accepted write.
 * - Sorted set `<prefix>generations`: the highest generation ever written per client, kept when
 *   the token key expires or is purged (see {@link generationsKey}).
 *
 * Works on standalone Redis, Sentinel and Redis Cluster: every script call touches one key. The
 * read side (fields, parsing, expiry rule) is the consumer package's (consumers/node/src/stored-token.ts).
 */
import type { Cluster, Redis } from 'ioredis';
import {
  formatTokenUpdated,
  MalformedStoredTokenError,
  parseIntegerField,
  parseStoredTokenMetadata,
  readStoredToken,
  STORED_TOKEN_METADATA_FIELDS,
  type StoredToken,
  type StoredTokenMetadata,
  type TokenUpdatedMessage,
} from 'token-lifecycle/contract';
import { DEFAULT_KEY_PREFIX, generationsKey, tokenKey, tokenUpdatedChannel } from './redis-layout.js';

export { MalformedStoredTokenError, type StoredToken, type StoredTokenMetadata };

/** What the worker writes: a token and, when it knows it, its renewal point. */
export interface TokenToWrite extends StoredToken {
  /**
   * When the worker renews the token (Unix ms), for `tokenctl list` (docs/design.md, "Redis
   * layout"). Not part of the consumers' contract; absent from hashes older workers wrote.
   */
  refreshAt?: number;
}

/** When a stored token expires and, when its hash says, when the worker renews it. Unix ms. */
export interface StoredTokenTimes {
  expiresAt: number;
  refreshAt: number | null;
}

/** What Redis held when a write was refused as stale. */
export interface StoredGeneration {
  generation: number;
  fingerprint: string;
  expiresAt: number;
}

/**
 * The outcome of {@link TokenStore.write}:
 * - `written`: the token is stored, set to expire at `expiresAt`, and announced;
 * - `stale`: Redis already holds this or a newer generation, described by `stored`; nothing changed;
 * - `expired`: `expiresAt` had already passed by Redis's clock; nothing changed.
 */
export type WriteResult =
  { written: true } | { written: false; reason: 'stale'; stored: StoredGeneration } | { written: false; reason: 'expired' };

/** Options of {@link TokenStore}. */
export interface TokenStoreOptions {
  /**
   * Prefix of every key and channel. Give it here, not as ioredis' own `keyPrefix`, which would
   * be applied a second time to keys but not to the channel.
   * @default 'oauth:'
   */
  prefix?: string;
  /** The clock that decides whether a stored token has expired on read. @default Date.now */
  now?: () => number;
}

/**
 * Why one script: docs/design.md, "No stale overwrite", needs the generation check and the write to
 * be one atomic step on the server. Done as separate commands, two writers could both read
 * generation 4 and the older token could land last; with WATCH/MULTI they would retry under
 * contention. The expiry (docs/design.md, "No expired token served") and the announcement belong to
 * the same step, so a consumer never sees a token without its expiry, nor an announcement of a
 * token that lost the race.
 *
 * KEYS[1] the token hash. ARGV: generation, expires_at, access_token, token_type, obtained_at,
 * scope, fingerprint, client_id, channel, message, refresh_at ('' for none: a field an older
 * token had is removed). Returns {'written'}, {'expired'} or
 * {'stale', generation, fingerprint, expires_at}: never the token.
 */
const WRITE_IF_NEWER_LUA = `
local key = KEYS[1]
local generation = tonumber(ARGV[1])
local expires_at = tonumber(ARGV[2])

local stored = redis.call('HMGET', key, 'generation', 'fingerprint', 'expires_at')
local stored_generation = tonumber(stored[1])
if stored_generation ~= nil and stored_generation >= generation then
  return {'stale', stored[1], stored[2] or '', stored[3] or ''}
end

-- Redis's own clock decides, the same clock that runs PEXPIREAT.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if expires_at <= now_ms then
  return {'expired'}
end

redis.call('HSET', key,
  'access_token', ARGV[3],
  'token_type', ARGV[4],
  'expires_at', ARGV[2],
  'obtained_at', ARGV[5],
  'scope', ARGV[6],
  'generation', ARGV[1],
  'fingerprint', ARGV[7],
  'client_id', ARGV[8])
if ARGV[11] ~= '' then
  redis.call('HSET', key, 'refresh_at', ARGV[11])
else
  redis.call('HDEL', key, 'refresh_at')
end
redis.call('PEXPIREAT', key, ARGV[2])
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {'written'}
`;

/** The name under which the script is registered on the ioredis client (a method of it). */
const WRITE_IF_NEWER_COMMAND = 'oauthTokenStoreWriteIfNewer';

/** The client once the script is registered: ioredis adds the method at runtime. */
type ClientWithWriteCommand = (Redis | Cluster) & {
  [WRITE_IF_NEWER_COMMAND](key: string, ...args: string[]): Promise<unknown>;
};

/**
 * Reads and writes tokens in Redis (standalone, Sentinel or Cluster) in the contract layout.
 * Writes are guarded by generation: an older or equal generation never replaces a newer one.
 */
export class TokenStore {
  readonly prefix: string;
  private readonly client: ClientWithWriteCommand;
  private readonly now: () => number;

  /**
   * @param redis an ioredis client; the store registers its script on it (`defineCommand`), so
   * ioredis sends EVALSHA and falls back to EVAL when Redis answers NOSCRIPT (after a restart or
   * SCRIPT FLUSH).
   */
  constructor(redis: Redis | Cluster, options: TokenStoreOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.now = options.now ?? Date.now;
    if (!(WRITE_IF_NEWER_COMMAND in redis)) {
      redis.defineCommand(WRITE_IF_NEWER_COMMAND, { lua: WRITE_IF_NEWER_LUA, numberOfKeys: 1 });
    }
    this.client = redis as ClientWithWriteCommand;
  }

  /** The ioredis client the store uses, for what shares its connection (the endpoint breaker). */
  get redis(): Redis | Cluster {
    return this.client;
  }

  /**
   * Stores `token` if its generation is newer than the stored one (or none is stored), sets the
   * key to expire at `token.expiresAt`, and publishes a {@link TokenUpdatedMessage} on
   * {@link tokenUpdatedChannel}: all in one atomic script call.
   */
  async write(token: TokenToWrite): Promise<WriteResult> {
    assertPositiveSafeInteger('generation', token.generation);
    if (token.refreshAt !== undefined) assertPositiveSafeInteger('refreshAt', token.refreshAt);
    assertPositiveSafeInteger('obtainedAt', token.obtainedAt);
    assertPositiveSafeInteger('expiresAt', token.expiresAt);
    assertNonEmptyString('clientId', token.clientId);
    assertNonEmptyString('accessToken', token.accessToken);

    // Reserve the generation first: if the worker dies between the two calls, the record is
    // ahead of Redis's token (a gap in numbering), never behind it (a number used twice). Two
    // calls, not one script, because a script must touch one key to run on Redis Cluster.
    await this.client.zadd(generationsKey(this.prefix), 'GT', token.generation, token.clientId);

    const message: TokenUpdatedMessage = {
      clientId: token.clientId,
      generation: token.generation,
      fingerprint: token.fingerprint,
      expiresAt: token.expiresAt,
    };
    const reply = await this.client[WRITE_IF_NEWER_COMMAND](
      tokenKey(this.prefix, token.clientId),
      String(token.generation),
      String(token.expiresAt),
      token.accessToken,
      token.tokenType,
      String(token.obtainedAt),
      token.scope,
      token.fingerprint,
      token.clientId,
      tokenUpdatedChannel(this.prefix),
      formatTokenUpdated(message),
      token.refreshAt === undefined ? '' : String(token.refreshAt),
    );
    return parseWriteReply(reply);
  }

  /** The stored token of `clientId`, or null when there is none or it has expired by {@link TokenStoreOptions.now}. */
  read(clientId: string): Promise<StoredToken | null> {
    return readStoredToken(this.client, tokenKey(this.prefix, clientId), this.now);
  }

  /** Like {@link TokenStore.read}, without fetching the token itself (for status and logs). */
  async readMetadata(clientId: string): Promise<StoredTokenMetadata | null> {
    const key = tokenKey(this.prefix, clientId);
    return parseStoredTokenMetadata(key, await this.client.hmget(key, ...STORED_TOKEN_METADATA_FIELDS), this.now);
  }

  /** When the stored token of `clientId` expires and is renewed; null when there is none or it has expired. */
  async readTimes(clientId: string): Promise<StoredTokenTimes | null> {
    const key = tokenKey(this.prefix, clientId);
    const [expiresAt, refreshAt] = await this.client.hmget(key, 'expires_at', 'refresh_at');
    if (expiresAt === null || expiresAt === undefined) return null;
    const times = {
      expiresAt: parseIntegerField(key, 'expires_at', expiresAt),
      refreshAt: refreshAt === null || refreshAt === undefined ? null : parseIntegerField(key, 'refresh_at', refreshAt),
    };
    return times.expiresAt <= this.now() ? null : times;
  }

  /**
   * The stored generation of `clientId`, 0 when none is stored. This is what {@link TokenStore.write}
   * compares against, so it ignores {@link TokenStoreOptions.now}: only Redis expires the key.
   */
  async readGeneration(clientId: string): Promise<number> {
    const key = tokenKey(this.prefix, clientId);
    const generation = await this.client.hget(key, 'generation');
    return generation === null ? 0 : parseIntegerField(key, 'generation', generation);
  }

  /**
   * The highest generation ever stored for `clientId`: the larger of the token key's and the
   * record in {@link generationsKey}, 0 for a client never seen. A workflow starting afresh for a
   * client numbers its tokens from here, so generations keep increasing across remove (with or
   * without purge, or terminate) and register again, however long the client was gone.
   */
  async readHighestGeneration(clientId: string): Promise<number> {
    const [stored, recorded] = await Promise.all([
      this.readGeneration(clientId),
      this.client.zscore(generationsKey(this.prefix), clientId),
    ]);
    const highest = recorded === null ? 0 : Number(recorded);
    if (!Number.isSafeInteger(highest))
      throw new MalformedStoredTokenError(
        generationsKey(this.prefix),
        `holds ${JSON.stringify(recorded)} for "${clientId}", not an integer`,
      );
    return Math.max(stored, highest);
  }

  /**
   * Removes the stored token of `clientId`. Resolves to whether there was one. The client's record
   * in {@link generationsKey} stays, so its generations keep increasing if it comes back.
   */
  async delete(clientId: string): Promise<boolean> {
    return (await this.client.del(tokenKey(this.prefix, clientId))) > 0;
  }
}

function parseWriteReply(reply: unknown): WriteResult {
  if (Array.isArray(reply)) {
    const [outcome, generation, fingerprint, expiresAt] = reply as unknown[];
    if (outcome === 'written') return { written: true };
    if (outcome === 'expired') return { written: false, reason: 'expired' };
    if (outcome === 'stale' && typeof generation === 'string' && typeof fingerprint === 'string' && typeof expiresAt === 'string') {
      return {
        written: false,
        reason: 'stale',
        stored: { generation: Number(generation), fingerprint, expiresAt: Number(expiresAt) },
      };
    }
  }
  throw new Error(`Unexpected reply from the token write script: ${JSON.stringify(reply)}`);
}

function assertPositiveSafeInteger(property: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`"token" "${property}" property must be a positive integer, got ${value}`);
  }
}

function assertNonEmptyString(property: string, value: string): void {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`"token" "${property}" property must be a non-empty string`);
  }
}
