/**
 * The consumer's view of the token store (docs/design.md, "The consumer library"): a backend
 * service reads the current token of a client from Redis, optionally through an in-process cache,
 * asks for a refresh when an API refused it, and waits for its replacement.
 */
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_KEY_PREFIX, tokenKey, tokenUpdatedChannel } from './redis-layout.js';
import { MalformedStoredTokenError, readStoredToken, type StoredToken } from './stored-token.js';
import type { ReceivedTokenUpdate } from './token-updated-message.js';
import { RedisUnavailableError, TokenReaderClosedError, TokenUnavailableError, TokenWaitTimeoutError } from './errors.js';
import { requestRefresh, type RefreshRequest, type RefreshRequestReceipt } from './refresh-request.js';
import { TokenUpdates } from './token-updates.js';

/** A client's current token, as the worker stored it. Times are Unix milliseconds. */
export interface CurrentToken {
  /** The token to send, e.g. in `Authorization: Bearer <accessToken>` (RFC 6750 §2.1). Never log it. */
  accessToken: string;
  /** `token_type` of the IAM's answer, normally `Bearer` (RFC 6749 §7.1). */
  tokenType: string;
  /** The token is unusable from this instant; it is never returned after it. */
  expiresAt: number;
  /** When the worker received it from the IAM. */
  obtainedAt: number;
  /** Increases with every token the worker obtains for this client: the higher, the newer. */
  generation: number;
  /** First 16 hex digits of SHA-256 of the token: name a token in refresh requests and logs with it. */
  fingerprint: string;
  /** Space-delimited scope the IAM granted (RFC 6749 §3.3); may be empty. */
  scope: string;
  clientId: string;
}

/** Options of {@link TokenReader}. */
export interface TokenReaderOptions {
  /**
   * An ioredis client (standalone, Sentinel or Cluster) for reads and stream entries. The reader
   * does not close it. Do not give it an ioredis `keyPrefix`: use {@link TokenReaderOptions.prefix}.
   * Subscriptions use a dedicated connection duplicated from it, which {@link TokenReader.close} closes.
   */
  redis: Redis | Cluster;
  /** The key prefix (`TOKEN_KEY_PREFIX`). @default 'oauth:' */
  prefix?: string;
  /**
   * Keep each client's token in memory, so {@link TokenReader.getToken} usually costs no round
   * trip. An entry is dropped when `<prefix>token-updated` announces a newer one (through a
   * dedicated subscriber connection), when that connection drops, and never served past its
   * `expiresAt`. @default false
   */
  cache?: boolean;
  /** How often {@link TokenReader.waitForToken} reads the key, besides listening for announcements (in case one is missed). @default 1_000 */
  waitPollIntervalMs?: number;
  /** The clock that decides whether a token has expired. @default Date.now */
  now?: () => number;
}

/** Options of {@link TokenReader.getToken}. */
export interface GetTokenOptions {
  /** Read Redis even when the cache holds a token (the result still refreshes the cache). @default false */
  skipCache?: boolean;
}

/** Options of {@link TokenReader.waitForToken}. */
export interface WaitForTokenOptions {
  /** Resolve with the first token whose generation is above this one (0: any token). */
  newerThan: number;
  /** Give up after this long with a {@link TokenWaitTimeoutError}. */
  timeoutMs: number;
}

/** Options of {@link TokenReader.replaceRejectedToken}. */
export interface ReplaceRejectedTokenOptions {
  /** For operators: why the token was refused, e.g. `401 invalid_token from api.example.com`. */
  reason?: string;
  /** How long to wait for the replacement. */
  timeoutMs: number;
}

/**
 * Reads tokens from Redis in the layout of docs/design.md, "Redis layout", and asks for new ones.
 *
 * ```ts
 * const reader = new TokenReader({ redis: new Redis(process.env.REDIS_URL), cache: true });
 * const token = await reader.getToken('orders-service');
 * await fetch(url, { headers: { authorization: `Bearer ${token.accessToken}` } });
 * await reader.close();
 * ```
 */
export class TokenReader {
  readonly prefix: string;
  private readonly redis: Redis | Cluster;
  private readonly updates: TokenUpdates;
  private readonly cacheEnabled: boolean;
  private readonly waitPollIntervalMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, CurrentToken>();
  /** Per client, a count of announcements: a read that started before one must not fill the cache. */
  private readonly announcements = new Map<string, number>();
  private readonly waiters = new Map<string, Set<(message: ReceivedTokenUpdate) => void>>();
  private readonly replacements = new Map<string, Promise<CurrentToken | undefined>>();
  private readonly closers = new Set<() => void>();
  private closed = false;

  constructor(options: TokenReaderOptions) {
    this.redis = options.redis;
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.now = options.now ?? Date.now;
    this.updates = new TokenUpdates(options.redis, tokenUpdatedChannel(this.prefix));
    this.cacheEnabled = options.cache ?? false;
    this.waitPollIntervalMs = options.waitPollIntervalMs ?? 1_000;
    this.updates.listen({
      onUpdate: (message) => this.onAnnouncement(message),
      onConnectionLost: () => this.cache.clear(),
    });
  }

  /**
   * The current token of `clientId`: from the cache when enabled and still valid, else from the
   * hash `<prefix>token:<clientId>`. Never a token whose `expiresAt` has passed.
   *
   * @throws {@link TokenUnavailableError} when Redis holds no unexpired token for the client.
   * @throws {@link RedisUnavailableError} when Redis did not answer.
   * @throws {@link MalformedStoredTokenError} when the key holds something other than the worker's layout.
   */
  async getToken(clientId: string, options: GetTokenOptions = {}): Promise<CurrentToken> {
    this.assertOpen();
    if (this.cacheEnabled) {
      await this.fromRedis(clientId, () => this.updates.start());
      const cached = this.cache.get(clientId);
      if (cached !== undefined && cached.expiresAt > this.now()) {
        if (!options.skipCache) return cached;
      } else if (cached !== undefined) {
        this.cache.delete(clientId);
      }
    }
    const token = await this.fromRedis(clientId, () => this.read(clientId));
    if (token === undefined) throw new TokenUnavailableError(clientId, tokenKey(this.prefix, clientId));
    return token;
  }

  /**
   * Asks the worker for a new token for `clientId` (see {@link requestRefresh}): an entry on the
   * stream `<prefix>refresh-requests`. Name the refused token's fingerprint, so that requests
   * about a token already replaced are ignored.
   *
   * @throws {@link RefreshRequestError} when the request could not be delivered.
   */
  async requestRefresh(clientId: string, request: RefreshRequest = {}): Promise<RefreshRequestReceipt> {
    this.assertOpen();
    return requestRefresh({ redis: this.redis, prefix: this.prefix }, clientId, request);
  }

  /**
   * Resolves with the first unexpired token of `clientId` whose generation is above `newerThan`.
   * It subscribes to `<prefix>token-updated` first and then reads the key, so a token stored in
   * between is not missed; it reads the key again on every announcement for the client and every
   * {@link TokenReaderOptions.waitPollIntervalMs}.
   *
   * @throws {@link TokenWaitTimeoutError} after `timeoutMs` without such a token.
   * @throws {@link RedisUnavailableError} when Redis did not answer the subscription.
   */
  async waitForToken(clientId: string, { newerThan, timeoutMs }: WaitForTokenOptions): Promise<CurrentToken> {
    this.assertOpen();
    await this.fromRedis(clientId, () => this.updates.start());
    return new Promise<CurrentToken>((resolve, reject) => {
      let settled = false;
      const waiters = this.waiters.get(clientId) ?? new Set();
      this.waiters.set(clientId, waiters);
      const finish = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timeout);
        clearInterval(poll);
        waiters.delete(onAnnouncement);
        if (waiters.size === 0) this.waiters.delete(clientId);
        this.closers.delete(onClose);
        outcome();
      };
      const check = () => {
        this.read(clientId).then(
          (token) => {
            if (token !== undefined && token.generation > newerThan) finish(() => resolve(token));
          },
          // A failed read is retried by the poll; the timeout ends the wait if Redis stays away.
          () => undefined,
        );
      };
      const onAnnouncement = (message: ReceivedTokenUpdate) => {
        if (message.generation > newerThan) check();
      };
      const onClose = () => finish(() => reject(new TokenReaderClosedError()));
      const timeout = setTimeout(() => finish(() => reject(new TokenWaitTimeoutError(clientId, newerThan, timeoutMs))), timeoutMs);
      const poll = setInterval(check, this.waitPollIntervalMs);
      waiters.add(onAnnouncement);
      this.closers.add(onClose);
      check();
    });
  }

  /**
   * After an API refused `rejected` (RFC 6750 §3.1 `invalid_token`): the token that replaces it,
   * asking for one only if it has not been replaced already. Concurrent calls about the same
   * refused token share one refresh request and one wait, so a burst of refusals in this process
   * sends one request. Resolves with `undefined` when no newer token arrived within `timeoutMs`
   * (for example because the workflow holds forced refreshes to its minimum interval).
   *
   * @throws {@link RefreshRequestError} when the request could not be delivered.
   */
  replaceRejectedToken(
    clientId: string,
    rejected: Pick<CurrentToken, 'fingerprint' | 'generation'>,
    options: ReplaceRejectedTokenOptions,
  ): Promise<CurrentToken | undefined> {
    const key = `${clientId}\u0000${rejected.fingerprint}`;
    let replacement = this.replacements.get(key);
    if (replacement === undefined) {
      replacement = this.replace(clientId, rejected, options).finally(() => this.replacements.delete(key));
      this.replacements.set(key, replacement);
    }
    return replacement;
  }

  /** Closes the subscriber connection and ends pending waits with {@link TokenReaderClosedError}. The Redis client given in the options stays open. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const close of [...this.closers]) close();
    this.cache.clear();
    this.updates.close();
    return Promise.resolve();
  }

  private async replace(
    clientId: string,
    rejected: Pick<CurrentToken, 'fingerprint' | 'generation'>,
    options: ReplaceRejectedTokenOptions,
  ): Promise<CurrentToken | undefined> {
    // A caller whose request was in flight while the token rotated needs no new refresh.
    const current = await this.getToken(clientId, { skipCache: true }).catch((error: unknown) => {
      if (error instanceof TokenUnavailableError) return undefined;
      throw error;
    });
    if (current !== undefined && current.generation > rejected.generation) return current;

    await this.requestRefresh(clientId, {
      rejectedFingerprint: rejected.fingerprint,
      ...(options.reason !== undefined && { reason: options.reason }),
      // The refused token is still the one Redis holds: it proves the stream entry's origin.
      ...(current !== undefined && current.fingerprint === rejected.fingerprint && { accessToken: current.accessToken }),
    });
    try {
      return await this.waitForToken(clientId, { newerThan: rejected.generation, timeoutMs: options.timeoutMs });
    } catch (error) {
      if (error instanceof TokenWaitTimeoutError) return undefined;
      throw error;
    }
  }

  /** `call`, with a Redis failure as a {@link RedisUnavailableError} (a malformed record stays what it is). */
  private async fromRedis<T>(clientId: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof MalformedStoredTokenError) throw error;
      throw new RedisUnavailableError(clientId, { cause: error });
    }
  }

  /** Reads the key, and caches what it read unless an announcement arrived meanwhile (it may name a newer token). */
  private async read(clientId: string): Promise<CurrentToken | undefined> {
    const announcementsBefore = this.announcements.get(clientId) ?? 0;
    const stored = await readStoredToken(this.redis, tokenKey(this.prefix, clientId), this.now);
    if (stored === null) return undefined;
    const token = toCurrentToken(stored);
    if ((this.announcements.get(clientId) ?? 0) === announcementsBefore) this.remember(token);
    return token;
  }

  private onAnnouncement(message: ReceivedTokenUpdate): void {
    this.announcements.set(message.clientId, (this.announcements.get(message.clientId) ?? 0) + 1);
    const cached = this.cache.get(message.clientId);
    if (cached !== undefined && cached.generation < message.generation) this.cache.delete(message.clientId);
    for (const waiter of this.waiters.get(message.clientId) ?? []) waiter(message);
  }

  /** Caches `token` unless the cache is off, announcements cannot be trusted, or it holds a newer one. */
  private remember(token: CurrentToken): void {
    if (!this.cacheEnabled || !this.updates.isLive) return;
    const cached = this.cache.get(token.clientId);
    if (cached === undefined || cached.generation < token.generation) this.cache.set(token.clientId, token);
  }

  private assertOpen(): void {
    if (this.closed) throw new TokenReaderClosedError();
  }
}

/**
 * The scheme to send for a `token_type`. Token types are case-insensitive (RFC 6749 §5.1) but
 * some servers compare the scheme byte for byte, so `bearer` is sent as RFC 6750 §2.1 spells it.
 */
export function authScheme(tokenType: string): string {
  return tokenType.toLowerCase() === 'bearer' ? 'Bearer' : tokenType;
}

function toCurrentToken(stored: StoredToken): CurrentToken {
  return {
    accessToken: stored.accessToken,
    tokenType: stored.tokenType,
    expiresAt: stored.expiresAt,
    obtainedAt: stored.obtainedAt,
    generation: stored.generation,
    fingerprint: stored.fingerprint,
    scope: stored.scope,
    clientId: stored.clientId,
  };
}
