/**
 * Reading the token hash `<prefix>token:<clientId>` (docs/redis-contract.md; docs/design.md, "Redis
 * layout"): its fields, how each is parsed, and the expiry rule (docs/design.md, "No expired token
 * served"). The worker's token store writes the hash and reads it back through these functions.
 */
import type { Cluster, Redis } from 'ioredis';

/** A token as stored in Redis, without the token itself. Times are Unix milliseconds. */
export interface StoredTokenMetadata {
  clientId: string;
  tokenType: string;
  /** Space-delimited scope the IAM granted (RFC 6749 §3.3); may be empty. */
  scope: string;
  /** Increases with every token the worker obtains for this client; the newest wins. */
  generation: number;
  obtainedAt: number;
  /** The token is unusable from this instant; the Redis key expires then too. */
  expiresAt: number;
  /** First 16 hex digits of SHA-256 of the access token. */
  fingerprint: string;
}

/** A token as stored in Redis. Times are Unix milliseconds. */
export interface StoredToken extends StoredTokenMetadata {
  accessToken: string;
}

/** The hash fields read back, in the order of {@link StoredTokenMetadata}, without `access_token`. */
export const STORED_TOKEN_METADATA_FIELDS = [
  'client_id',
  'token_type',
  'scope',
  'generation',
  'obtained_at',
  'expires_at',
  'fingerprint',
] as const;

/**
 * A Redis record that does not follow the layout of docs/redis-contract.md (something other than
 * the worker wrote it). The message names the key and the problem, never the token.
 */
export class MalformedStoredTokenError extends Error {
  readonly code = 'malformed_stored_token';
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(`Redis record ${key} ${problem}`);
    this.name = 'MalformedStoredTokenError';
  }
}

/**
 * The token stored under `key` (`HMGET` of every field), or null when there is none or it has
 * expired by `now`: Redis expires the key itself, and this covers a reader whose clock runs ahead
 * of Redis's.
 *
 * @throws {@link MalformedStoredTokenError} when the key holds something other than the layout.
 */
export async function readStoredToken(redis: Redis | Cluster, key: string, now: () => number): Promise<StoredToken | null> {
  const [accessToken, ...metadataValues] = await redis
    .hmget(key, 'access_token', ...STORED_TOKEN_METADATA_FIELDS)
    .catch((error: unknown) => {
      if (error instanceof Error && error.message.startsWith('WRONGTYPE')) throw new MalformedStoredTokenError(key, 'is not a hash');
      throw error;
    });
  if (accessToken === null || accessToken === undefined) return null;
  const metadata = parseStoredTokenMetadata(key, metadataValues, now);
  return metadata && { ...metadata, accessToken };
}

/**
 * The metadata of the values of {@link STORED_TOKEN_METADATA_FIELDS} (as `HMGET` returns them), or
 * null when there is none (`expires_at` missing) or it has expired by `now`.
 *
 * @throws {@link MalformedStoredTokenError} naming the first field that is missing or not an integer.
 */
export function parseStoredTokenMetadata(
  key: string,
  values: readonly (string | null | undefined)[],
  now: () => number,
): StoredTokenMetadata | null {
  const [clientId, tokenType, scope, generation, obtainedAt, expiresAt, fingerprint] = values;
  if (expiresAt === null || expiresAt === undefined) return null;
  const metadata: StoredTokenMetadata = {
    clientId: requireField(key, 'client_id', clientId),
    tokenType: requireField(key, 'token_type', tokenType),
    scope: requireField(key, 'scope', scope),
    generation: parseIntegerField(key, 'generation', requireField(key, 'generation', generation)),
    obtainedAt: parseIntegerField(key, 'obtained_at', requireField(key, 'obtained_at', obtainedAt)),
    expiresAt: parseIntegerField(key, 'expires_at', expiresAt),
    fingerprint: requireField(key, 'fingerprint', fingerprint),
  };
  return metadata.expiresAt <= now() ? null : metadata;
}

function requireField(key: string, field: string, value: string | null | undefined): string {
  if (value === null || value === undefined) throw new MalformedStoredTokenError(key, `has no "${field}" field`);
  return value;
}

/**
 * The worker writes integers as plain decimal digits. Anything else (`""`, `" 7"`, `"0x10"`,
 * `"1e3"`, `"-3"`) is refused rather than read the way `Number` reads it, so that readers in every
 * language agree (docs/redis-contract.md, test/contract/vectors.json).
 */
const DECIMAL_DIGITS = /^[0-9]+$/;

/**
 * `value`, the hash field `field` of `key`, as an integer.
 *
 * @throws {@link MalformedStoredTokenError} when it is not plain decimal digits of a safe integer.
 */
export function parseIntegerField(key: string, field: string, value: string): number {
  const parsed = DECIMAL_DIGITS.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed))
    throw new MalformedStoredTokenError(key, `field "${field}" must be an integer, got ${JSON.stringify(value)}`);
  return parsed;
}
