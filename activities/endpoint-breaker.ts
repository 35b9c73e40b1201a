/**
 * The shared breaker of a token endpoint (docs/design.md, "The IAM is never hammered"). After a 429,
 * a connection-level failure or a 5xx, the IAM is down or telling every client behind this egress
 * IP to hold off, not just the one that asked: the breaker records in Redis until when nobody may
 * send to that endpoint. When the wait is over, exactly one request probes; the others wait a
 * little and follow once the probe got a usable answer. A failed probe opens the breaker again,
 * for longer (up to the probe interval's cap).
 *
 * One hash per endpoint, `<prefix>breaker:<endpoint>`, with the fields `kind` (an
 * {@link EndpointDownKind}), `until` (Unix ms, Redis's clock), `openings` (consecutive openings,
 * for the growing wait), `probe_until` and `probe_owner` (the probe lock). Every change is one Lua
 * script on that one key, so it is atomic and works on standalone Redis, Sentinel and Redis
 * Cluster. Beside it, the sorted set `<prefix>breaker:<endpoint>:waiters` of the workflows held
 * back meanwhile (scored by when their token expires), woken when a probe closes the breaker.
 *
 * All times are Redis's: several workers with skewed clocks agree on when the wait is over, and the
 * callers only ever see durations.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { breakerKey, breakerWaitersKey, DEFAULT_KEY_PREFIX } from '../shared/redis-layout.js';
import type { EndpointDownKind } from '../workflows/failures.js';
import { positiveInteger } from '../shared/positive-integer.js';

/** The failure kinds that open the breaker. */
export type BreakerKind = EndpointDownKind;

/**
 * The endpoint a breaker guards: the token URL's origin and path. The query, the fragment and
 * letter case of the host do not make another endpoint.
 */
export function breakerEndpoint(tokenUrl: string): string {
  const url = new URL(tokenUrl);
  return `${url.origin}${url.pathname}`;
}

/**
 * What the breaker says about sending a request now:
 * - `closed`: send;
 * - `probe`: the wait is over and this caller is the one that probes: send, then report with
 *   {@link EndpointBreaker.probeSucceeded} or {@link EndpointBreaker.open} (or release the probe
 *   with {@link EndpointBreaker.releaseProbe} if nothing was sent);
 * - `open`: do not send for `retryAfterMs`;
 * - `probing`: another caller probes; do not send, look again after `retryAfterMs`.
 *
 * `openings` counts the consecutive openings so far, to make the next wait longer.
 */
export type BreakerCheck =
  | { state: 'closed'; openings: 0 }
  | { state: 'probe'; kind: BreakerKind; openings: number; probeId: string }
  | { state: 'open' | 'probing'; kind: BreakerKind; openings: number; retryAfterMs: number };

/** Options of {@link EndpointBreaker}. */
export interface EndpointBreakerOptions {
  /** Prefix of the breaker keys, the token store's. @default 'oauth:' */
  prefix?: string;
  /**
   * How long one probe may take before another caller may probe instead (its worker may have
   * died). Longer than the longest token request (50 s, see `policy.requestTimeoutMs`), shorter
   * than the IAM activity's 60 s.
   * @default 55_000
   */
  probeLockMs?: number;
  /**
   * How long the others wait while a probe is in flight before they look again. Token requests
   * take milliseconds, so they follow a successful probe about this much later.
   * @default 1_000
   */
  followerWaitMs?: number;
  /**
   * How long a breaker whose wait is over stays half-open, waiting for a probe, before it is
   * forgotten (a breaker that nobody probes should not outlive its endpoint's clients).
   * @default 600_000
   */
  halfOpenMs?: number;
}

/**
 * KEYS[1] the breaker hash. ARGV: probe lock ms, follower wait ms, half-open ms, probe id.
 * Returns {state, kind, openings, retry_after_ms}. The holder of the probe (same probe id) is
 * told `probe` again: it looks once more right before it sends.
 */
const CHECK_LUA = `
local key = KEYS[1]
local fields = redis.call('HMGET', key, 'kind', 'until', 'openings', 'probe_until', 'probe_owner')
if not fields[2] then
  return {'closed', '', '0', '0'}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local kind = fields[1] or 'rate_limited'
local openings = fields[3] or '1'
local until_ms = tonumber(fields[2])
if now < until_ms then
  return {'open', kind, openings, tostring(until_ms - now)}
end
local probe_until = tonumber(fields[4] or '0')
if now < probe_until and fields[5] == ARGV[4] then
  return {'probe', kind, openings, '0'}
end
if now < probe_until then
  return {'probing', kind, openings, tostring(math.min(probe_until - now, tonumber(ARGV[2])))}
end
-- The wait is over and nobody probes: this caller does, for at most the probe lock's time.
redis.call('HSET', key, 'probe_until', tostring(now + tonumber(ARGV[1])), 'probe_owner', ARGV[4])
local keep = tonumber(ARGV[1]) + tonumber(ARGV[3])
if redis.call('PTTL', key) < keep then
  redis.call('PEXPIRE', key, keep)
end
return {'probe', kind, openings, '0'}
`;

/**
 * KEYS[1] the breaker hash. ARGV: kind, wait ms, openings, half-open ms.
 * Opens (or re-opens) the breaker until now + wait, never shortening a longer wait already set,
 * and ends any probe. Returns {wait ms from now, openings}.
 */
const OPEN_LUA = `
local key = KEYS[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HMGET', key, 'kind', 'until', 'openings')
local kind = ARGV[1]
local until_ms = now + tonumber(ARGV[2])
local stored_until = tonumber(fields[2] or '0')
if stored_until > until_ms then
  until_ms = stored_until
  kind = fields[1] or kind
end
local openings = math.max(tonumber(fields[3] or '0'), tonumber(ARGV[3]))
redis.call('HSET', key, 'kind', kind, 'until', tostring(until_ms), 'openings', tostring(openings))
redis.call('HDEL', key, 'probe_until', 'probe_owner')
redis.call('PEXPIRE', key, until_ms - now + tonumber(ARGV[4]))
return {tostring(until_ms - now), tostring(openings)}
`;

/**
 * KEYS[1] the breaker hash. ARGV: probe id, 'close' or 'release'. Acts only if the caller still
 * holds the probe: if the breaker was opened again meanwhile (another request got a 429), that
 * newer opening stands. Returns 1 when it acted.
 */
const END_PROBE_LUA = `
local key = KEYS[1]
if redis.call('HGET', key, 'probe_owner') ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'close' then
  redis.call('DEL', key)
else
  redis.call('HDEL', key, 'probe_until', 'probe_owner')
end
return 1
`;

const CHECK_COMMAND = 'oauthEndpointBreakerCheck';
const OPEN_COMMAND = 'oauthEndpointBreakerOpen';
const END_PROBE_COMMAND = 'oauthEndpointBreakerEndProbe';

/**
 * KEYS[1] the waiters' sorted set. ARGV: member, score, ttl ms. Adds or updates a waiter; the set
 * outlives the breaker a little, not forever.
 */
const ADD_WAITER_LUA = `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** KEYS[1] the waiters' sorted set. Takes every waiter, lowest score first, and empties the set. */
const TAKE_WAITERS_LUA = `
local waiters = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return waiters
`;

/**
 * KEYS[1] the breaker hash. ARGV: probe lock ms, half-open ms, probe id. A closed breaker (no hash)
 * becomes half-open with this caller's request as its probe: nobody else sends until it answers.
 * Returns 1 when it did, 0 when the breaker was not closed.
 */
const SUSPECT_LUA = `
local key = KEYS[1]
if redis.call('HGET', key, 'until') then
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', key, 'kind', 'blocked', 'until', tostring(now), 'openings', '0',
  'probe_until', tostring(now + tonumber(ARGV[1])), 'probe_owner', ARGV[3])
redis.call('PEXPIRE', key, tonumber(ARGV[1]) + tonumber(ARGV[2]))
return 1
`;

const SUSPECT_COMMAND = 'oauthEndpointBreakerSuspect';
const ADD_WAITER_COMMAND = 'oauthEndpointBreakerAddWaiter';
const TAKE_WAITERS_COMMAND = 'oauthEndpointBreakerTakeWaiters';

/** The client once the scripts are registered: ioredis adds their methods at runtime. */
type ClientWithBreakerCommands = (Redis | Cluster) & {
  [CHECK_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [OPEN_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [END_PROBE_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [SUSPECT_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [ADD_WAITER_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [TAKE_WAITERS_COMMAND](key: string): Promise<unknown>;
};

/**
 * The breakers of all token endpoints, in Redis. Safe to share between activities and workers: all
 * state is in Redis.
 */
export class EndpointBreaker {
  readonly prefix: string;
  readonly probeLockMs: number;
  readonly followerWaitMs: number;
  readonly halfOpenMs: number;
  private readonly client: ClientWithBreakerCommands;

  /**
   * @param redis an ioredis client (standalone, Sentinel or Cluster); the breaker registers its
   * scripts on it (`defineCommand`: EVALSHA with a fallback to EVAL after a Redis restart).
   */
  constructor(redis: Redis | Cluster, options: EndpointBreakerOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.probeLockMs = positiveInteger('EndpointBreakerOptions.probeLockMs', options.probeLockMs ?? 55_000);
    this.followerWaitMs = positiveInteger('EndpointBreakerOptions.followerWaitMs', options.followerWaitMs ?? 1_000);
    this.halfOpenMs = positiveInteger('EndpointBreakerOptions.halfOpenMs', options.halfOpenMs ?? 600_000);
    for (const [name, lua] of [
      [CHECK_COMMAND, CHECK_LUA],
      [OPEN_COMMAND, OPEN_LUA],
      [END_PROBE_COMMAND, END_PROBE_LUA],
      [SUSPECT_COMMAND, SUSPECT_LUA],
      [ADD_WAITER_COMMAND, ADD_WAITER_LUA],
      [TAKE_WAITERS_COMMAND, TAKE_WAITERS_LUA],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { lua, numberOfKeys: 1 });
    }
    this.client = redis as ClientWithBreakerCommands;
  }

  /**
   * Whether a request to `endpoint` may be sent now; see {@link BreakerCheck}. `probeId` is the
   * probe this caller already holds, if any: it is then told `probe` again, unless the breaker was
   * opened again meanwhile.
   */
  async check(endpoint: string, probeId: string = randomUUID()): Promise<BreakerCheck> {
    const reply = await this.client[CHECK_COMMAND](
      breakerKey(this.prefix, endpoint),
      String(this.probeLockMs),
      String(this.followerWaitMs),
      String(this.halfOpenMs),
      probeId,
    );
    const [state, kind, openings, retryAfterMs] = stringReply(reply, 4, 'check');
    if (state === 'closed') return { state, openings: 0 };
    const breakerKind = parseKind(kind);
    if (state === 'probe') return { state, kind: breakerKind, openings: Number(openings), probeId };
    if (state === 'open' || state === 'probing') {
      return { state, kind: breakerKind, openings: Number(openings), retryAfterMs: Number(retryAfterMs) };
    }
    throw new Error(`Unexpected reply from the endpoint breaker's check script: ${JSON.stringify(reply)}`);
  }

  /**
   * Opens the breaker of `endpoint` for `waitMs` from now (Redis's clock), or keeps a longer wait
   * already set, and ends any probe. `openings` is the count of consecutive openings including
   * this one (the check's `openings` + 1). Resolves to the wait now in force.
   */
  async open(endpoint: string, kind: BreakerKind, waitMs: number, openings: number): Promise<{ waitMs: number; openings: number }> {
    const reply = await this.client[OPEN_COMMAND](
      breakerKey(this.prefix, endpoint),
      kind,
      String(Math.max(0, Math.round(waitMs))),
      String(Math.max(1, Math.round(openings))),
      String(this.halfOpenMs),
    );
    const [wait, count] = stringReply(reply, 2, 'open');
    return { waitMs: Number(wait), openings: Number(count) };
  }

  /** The probe got a usable answer: the breaker closes, unless it was opened again meanwhile. */
  async probeSucceeded(endpoint: string, probeId: string): Promise<boolean> {
    return (await this.client[END_PROBE_COMMAND](breakerKey(this.prefix, endpoint), probeId, 'close')) === 1;
  }

  /** The probe sent nothing (or was cancelled): another caller may probe at once. */
  async releaseProbe(endpoint: string, probeId: string): Promise<boolean> {
    return (await this.client[END_PROBE_COMMAND](breakerKey(this.prefix, endpoint), probeId, 'release')) === 1;
  }

  /**
   * A request to `endpoint` let through a closed breaker has not answered for a while (a hang is
   * seen only when its timeout ends it): it becomes the endpoint's probe, so nobody else sends
   * until it answers, or `lockMs` passed (its worker may have died). Report its outcome as a
   * probe's, with `probeId`. Resolves to false when the breaker was no longer closed (another
   * request saw a failure first): nothing changed.
   */
  async suspect(endpoint: string, probeId: string, lockMs: number): Promise<boolean> {
    const reply = await this.client[SUSPECT_COMMAND](
      breakerKey(this.prefix, endpoint),
      String(Math.max(1, Math.round(lockMs))),
      String(this.halfOpenMs),
      probeId,
    );
    return reply === 1;
  }

  /**
   * Records that `waiter` (a workflow ID) waits for `endpoint`: held back by its breaker, or
   * failed and opened it. `expiresAt` (Unix ms; 0 without a token) orders the wake-up: the
   * soonest-expiring first.
   */
  async addWaiter(endpoint: string, waiter: string, expiresAt: number): Promise<void> {
    await this.client[ADD_WAITER_COMMAND](
      breakerWaitersKey(this.prefix, endpoint),
      waiter,
      String(Math.max(0, Math.round(expiresAt))),
      String(this.probeLockMs + this.halfOpenMs),
    );
  }

  /** Every waiter of `endpoint`, soonest-expiring first; the list is emptied (each is woken once). */
  async takeWaiters(endpoint: string): Promise<string[]> {
    const reply = await this.client[TAKE_WAITERS_COMMAND](breakerWaitersKey(this.prefix, endpoint));
    if (Array.isArray(reply) && reply.every((item) => typeof item === 'string')) return reply;
    throw new Error(`Unexpected reply from the endpoint breaker's take-waiters script: ${JSON.stringify(reply)}`);
  }
}

function stringReply(reply: unknown, length: number, script: string): string[] {
  if (Array.isArray(reply) && reply.length === length && reply.every((item) => typeof item === 'string')) return reply;
  throw new Error(`Unexpected reply from the endpoint breaker's ${script} script: ${JSON.stringify(reply)}`);
}

function parseKind(kind: string | undefined): BreakerKind {
  if (kind === 'rate_limited' || kind === 'blocked' || kind === 'server_error') return kind;
  throw new Error(`Unexpected endpoint breaker kind in Redis: ${JSON.stringify(kind)}`);
}
