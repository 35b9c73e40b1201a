/**
 * The exact cap on token requests per IAM host (docs/design.md, "The IAM is never hammered"): at
 * most `limit` requests in any window of one second, counted in Redis, so every worker of the fleet
 * shares it. Temporal's task-queue limit (`IAM_MAX_RPS`) is a token bucket, which lets a burst
 * exceed it within one second (docs/deployment.md, "`IAM_MAX_RPS` and egress IPs"); the provider's
 * edge counts any one-second window. A request that would be the `limit + 1`-th of the last second
 * waits until the oldest one leaves the window.
 *
 * One sorted set per host, `<prefix>rate:<origin>`: a member per request sent, scored with the
 * time it was let through (Redis's clock, so workers with skewed clocks agree). One Lua script on
 * that one key, so it is atomic and works on standalone Redis, Sentinel and Redis Cluster.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_KEY_PREFIX, rateWindowKey } from '../shared/redis-layout.js';
import { RequestHeldBackError } from './errors.js';

/**
 * KEYS[1] the window's sorted set. ARGV: limit, window ms, member.
 * Returns 0 when the request may be sent (it is counted), else the ms until a slot frees.
 */
const TAKE_LUA = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now + 1)
`;

const TAKE_COMMAND = 'oauthRateWindowTake';

/**
 * The oldest a granted slot may be when its request leaves (from asking Redis to reading its
 * answer). Redis answers in milliseconds; more than this means the process was stalled meanwhile.
 */
export const MAX_SLOT_AGE_MS = 250;

type ClientWithRateWindow = (Redis | Cluster) & {
  [TAKE_COMMAND](key: string, ...args: string[]): Promise<unknown>;
};

/** Options of {@link EndpointRateWindow}. */
export interface EndpointRateWindowOptions {
  /** Prefix of the window keys, the token store's. @default 'oauth:' */
  prefix?: string;
  /** Requests allowed per host in any one-second window: `IAM_MAX_RPS`. */
  limit: number;
}

/** The one-second windows of all IAM hosts, in Redis. Safe to share between activities and workers. */
export class EndpointRateWindow {
  readonly prefix: string;
  readonly limit: number;
  private readonly client: ClientWithRateWindow;

  /** @param redis an ioredis client (standalone, Sentinel or Cluster); the script is registered on it. */
  constructor(redis: Redis | Cluster, options: EndpointRateWindowOptions) {
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    if (!Number.isFinite(options.limit) || options.limit <= 0) {
      throw new RangeError(`EndpointRateWindowOptions.limit must be a positive number, got ${options.limit}`);
    }
    // A fractional IAM_MAX_RPS (0.5/s) still allows one request per window: the task-queue limit
    // paces such slow rates; this window only guards the edge's per-second count.
    this.limit = Math.max(1, Math.floor(options.limit));
    if (!(TAKE_COMMAND in redis)) redis.defineCommand(TAKE_COMMAND, { lua: TAKE_LUA, numberOfKeys: 1 });
    this.client = redis as ClientWithRateWindow;
  }

  /** Counts a request to `tokenUrl`'s host if the window has room: resolves to 0, else to the ms until it may. */
  async tryTake(tokenUrl: string): Promise<number> {
    const reply = await this.client[TAKE_COMMAND](rateWindowKey(this.prefix, tokenUrl), String(this.limit), '1000', randomUUID());
    if (typeof reply !== 'number') throw new Error(`Unexpected reply from the rate window script: ${JSON.stringify(reply)}`);
    return reply;
  }

  /**
   * Waits until a request to `tokenUrl`'s host fits into the window and counts it. Throws
   * {@link RequestHeldBackError} (`rate_limited`) when that would take longer than `maxWaitMs`
   * (many more requests than the limit queued up, e.g. several deployments sharing the host), so
   * the workflow waits durably instead; rejects with an `AbortError` when the signal aborts.
   */
  async take(tokenUrl: string, { maxWaitMs, signal }: { maxWaitMs: number; signal?: AbortSignal }): Promise<void> {
    const deadline = Date.now() + maxWaitMs;
    let staleSlots = 0;
    for (;;) {
      const askedAt = performance.now();
      const waitMs = await this.tryTake(tokenUrl);
      // A slot is counted when Redis grants it, but the edge counts the request when it arrives.
      // A reply that sat unread while this process was stalled (GC, a starved CPU) is an old slot:
      // sent now, its request would bunch up with those of slots granted since. Take one fresh
      // slot; the old one stays counted, which errs on the side of fewer requests. Only one: a
      // Redis that is slow to answer every time must not keep a request from ever leaving.
      if (waitMs === 0 && (performance.now() - askedAt <= MAX_SLOT_AGE_MS || staleSlots > 0)) return;
      if (waitMs === 0) {
        staleSlots++;
        continue;
      }
      if (Date.now() + waitMs > deadline) {
        const host = new URL(tokenUrl).origin;
        throw new RequestHeldBackError(
          'rate_limited',
          `No request sent: ${host} stayed at ${this.limit} requests per second for ${maxWaitMs} ms; next try in ${waitMs} ms`,
          waitMs,
        );
      }
      await delay(waitMs, undefined, signal === undefined ? {} : { signal });
    }
  }
}
