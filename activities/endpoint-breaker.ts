/**
 * The shared breaker of a token endpoint (docs/design.md, "The IAM is never hammered"). After a 429
 * or a connection-level block, the IAM is telling every client behind this egress IP to hold off,
 * not just the one that asked: the breaker records in Redis until when nobody may send to that
 * endpoint. When the wait is over, exactly one request probes; the others wait a little and follow
 * once the probe got a usable answer. A failed probe opens the breaker again, for longer.
 *
 * One hash per endpoint, `<prefix>breaker:<endpoint>`, with the fields `kind` (`rate_limited` or
 * `blocked`), `until` (Unix ms, Redis's clock), `openings` (consecutive openings, for the growing
 * wait), `probe_until` and `probe_owner` (the probe lock). Every change is one Lua script on that
 * one key, so it is atomic and works on standalone Redis, Sentinel and Redis Cluster.
 *
 * All times are Redis's: several workers with skewed clocks agree on when the wait is over, and the
 * callers only ever see durations.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { breakerKey, DEFAULT_KEY_PREFIX } from '../shared/redis-layout.js';

/** The failure kinds that open the breaker. */
export type BreakerKind = 'rate_limited' | 'blocked';

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
 * Returns {state, kind, openings, retry_after_ms}.
 */
const CHECK_LUA = `
local key = KEYS[1]
local fields = redis.call('HMGET', key, 'kind', 'until', 'openings', 'probe_until')
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

/** The client once the scripts are registered: ioredis adds their methods at runtime. */
type ClientWithBreakerCommands = (Redis | Cluster) & {
  [CHECK_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [OPEN_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [END_PROBE_COMMAND](key: string, ...args: string[]): Promise<unknown>;
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
    this.probeLockMs = positiveInteger('probeLockMs', options.probeLockMs ?? 55_000);
    this.followerWaitMs = positiveInteger('followerWaitMs', options.followerWaitMs ?? 1_000);
    this.halfOpenMs = positiveInteger('halfOpenMs', options.halfOpenMs ?? 600_000);
    for (const [name, lua] of [
      [CHECK_COMMAND, CHECK_LUA],
      [OPEN_COMMAND, OPEN_LUA],
      [END_PROBE_COMMAND, END_PROBE_LUA],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { lua, numberOfKeys: 1 });
    }
    this.client = redis as ClientWithBreakerCommands;
  }

  /** Whether a request to `endpoint` may be sent now; see {@link BreakerCheck}. */
  async check(endpoint: string): Promise<BreakerCheck> {
    const probeId = randomUUID();
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
}

function stringReply(reply: unknown, length: number, script: string): string[] {
  if (Array.isArray(reply) && reply.length === length && reply.every((item) => typeof item === 'string')) return reply;
  throw new Error(`Unexpected reply from the endpoint breaker's ${script} script: ${JSON.stringify(reply)}`);
}

function parseKind(kind: string | undefined): BreakerKind {
  if (kind === 'rate_limited' || kind === 'blocked') return kind;
  throw new Error(`Unexpected endpoint breaker kind in Redis: ${JSON.stringify(kind)}`);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new RangeError(`EndpointBreakerOptions.${name} must be a positive integer, got ${value}`);
  return value;
}
