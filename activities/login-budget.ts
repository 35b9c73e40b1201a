/**
 * The failed-login budget per IAM host (docs/design.md, "The failed-login budget"): requests with
 * unproven credentials go one at a time per host, and only while it has budget left; proven ones
 * never wait. All state is in Redis, shared by every worker; every script call touches one key
 * (Redis Cluster).
 */
import { createHmac, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_KEY_PREFIX, loginBudgetKey, loginProofKey } from '../shared/redis-layout.js';
import { RequestHeldBackError } from './errors.js';
import { Redacted } from '../shared/redacted.js';
import { positiveInteger } from '../shared/positive-integer.js';

/** The key of the proofs' MAC. Prints as `[redacted]`. */
export class LoginProofKey extends Redacted {}

/** What a client sends to authenticate, as far as its proof is concerned. */
export interface LoginCredentials {
  clientId: string;
  /** The token endpoint: the same secret at another IAM is not proven there. */
  tokenUrl: string;
  authMethod: string;
  /**
   * Which credential is sent: a keyed MAC of its material (`credentialMac` of
   * activities/request-credentials.ts, under the same key), never the material itself.
   */
  material: string;
}

/**
 * The proof that `credentials` were accepted: HMAC-SHA256 under the workers' key, hex. Without the
 * key it says nothing about the secret (no offline guessing); with it, only the workers can
 * compute it.
 */
export function loginProof(key: LoginProofKey, credentials: LoginCredentials): string {
  const { clientId, tokenUrl, authMethod, material } = credentials;
  return createHmac('sha256', key.reveal())
    .update(JSON.stringify([clientId, tokenUrl, authMethod, material]))
    .digest('hex');
}

/**
 * How often a request waiting for its host's turn looks again. An unproven request holds the turn
 * for one token request (milliseconds to a few hundred): waiters should follow within about that.
 */
const TURN_POLL_MS = 20;

/** Options of {@link LoginBudget}. */
export interface LoginBudgetOptions {
  /** Prefix of the keys, the token store's. @default 'oauth:' */
  prefix?: string;
  /** Rejected logins per host in any `windowMs` after which unproven credentials wait. @default 2 */
  maxRejections?: number;
  /** The sliding window of {@link LoginBudgetOptions.maxRejections}. @default 60_000 */
  windowMs?: number;
  /**
   * How long one unproven request may hold its host's turn, when {@link LoginBudget.takeTurn} is
   * not told: longer than the longest token request (50 s). @default 55_000
   */
  turnMs?: number;
  /** The longest wait a held-back request is told while another holds the turn. @default 1_000 */
  followerWaitMs?: number;
  /** How long a proof is kept without a renewal renewing it. @default 30 days */
  proofTtlMs?: number;
}

/**
 * What the budget says about an unproven request:
 * - `granted`: send; this caller holds the host's turn until it reports the outcome;
 * - `exhausted`: `rejections` rejected logins in the window already: wait `retryAfterMs`, until
 *   the oldest leaves the window;
 * - `busy`: another unproven request holds the turn: look again after `retryAfterMs`.
 */
export type LoginTurn =
  { state: 'granted'; rejections: number; owner: string } | { state: 'exhausted' | 'busy'; rejections: number; retryAfterMs: number };

/**
 * KEYS[1] the host's budget hash. ARGV: max rejections, window ms, turn ms, follower wait ms,
 * owner. Returns {state, rejections, retry_after_ms}.
 */
const TAKE_TURN_LUA = `
local key = KEYS[1]
local max_rejections = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HMGET', key, 'rejections', 'turn_owner', 'turn_until')
local recent, seen = {}, 0
for at in string.gmatch(fields[1] or '', '[^,]+') do
  seen = seen + 1
  if tonumber(at) > now - window then table.insert(recent, at) end
end
if #recent < seen then redis.call('HSET', key, 'rejections', table.concat(recent, ',')) end
if #recent >= max_rejections then
  return {'exhausted', #recent, tonumber(recent[1]) + window - now}
end
local turn_until = tonumber(fields[3] or '0')
if turn_until > now and fields[2] ~= ARGV[5] then
  return {'busy', #recent, math.min(turn_until - now, tonumber(ARGV[4]))}
end
redis.call('HSET', key, 'turn_owner', ARGV[5], 'turn_until', tostring(now + tonumber(ARGV[3])))
redis.call('PEXPIRE', key, math.max(window, tonumber(ARGV[3])))
return {'granted', #recent, 0}
`;

/**
 * KEYS[1] the host's budget hash. ARGV: 'rejected' or 'done', owner ('' when no turn is held),
 * window ms, max kept. Records a rejection (when 'rejected') and ends the owner's turn. Returns the
 * rejections now in the window.
 */
const REPORT_LUA = `
local key = KEYS[1]
local window = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local recent = {}
for at in string.gmatch(redis.call('HGET', key, 'rejections') or '', '[^,]+') do
  if tonumber(at) > now - window then table.insert(recent, at) end
end
if ARGV[1] == 'rejected' then
  table.insert(recent, tostring(now))
  while #recent > tonumber(ARGV[4]) do table.remove(recent, 1) end
end
redis.call('HSET', key, 'rejections', table.concat(recent, ','))
if ARGV[2] ~= '' and redis.call('HGET', key, 'turn_owner') == ARGV[2] then
  redis.call('HDEL', key, 'turn_owner', 'turn_until')
end
if redis.call('PTTL', key) < window then redis.call('PEXPIRE', key, window) end
return #recent
`;

const TAKE_TURN_COMMAND = 'oauthLoginBudgetTakeTurn';
const REPORT_COMMAND = 'oauthLoginBudgetReport';

type ClientWithLoginBudget = (Redis | Cluster) & {
  [TAKE_TURN_COMMAND](key: string, ...args: string[]): Promise<unknown>;
  [REPORT_COMMAND](key: string, ...args: string[]): Promise<unknown>;
};

/**
 * A token request let through by {@link LoginBudget.admit}: report how the IAM answered, once.
 * `proven` says whether its credentials were proven (it then holds no turn).
 */
export interface LoginTicket {
  readonly proven: boolean;
  /** The IAM issued a token: these credentials are proven from now on. */
  accepted(): Promise<void>;
  /** The IAM rejected the credentials: the budget is spent, the proof gone. Resolves to the rejections now in the window. */
  rejected(): Promise<number>;
  /** Another outcome, or nothing was sent after all: the budget is unchanged. */
  released(): Promise<void>;
}

/** Told when an unproven request must wait, for metrics. */
export type LoginBudgetObserver = (host: string, reason: 'exhausted' | 'busy') => void;

/** The failed-login budgets of all IAM hosts and the proofs of all clients, in Redis. Safe to share. */
export class LoginBudget {
  readonly prefix: string;
  readonly maxRejections: number;
  readonly windowMs: number;
  readonly turnMs: number;
  readonly followerWaitMs: number;
  readonly proofTtlMs: number;
  private readonly client: ClientWithLoginBudget;

  /** @param redis an ioredis client (standalone, Sentinel or Cluster); the scripts are registered on it. */
  constructor(redis: Redis | Cluster, options: LoginBudgetOptions = {}) {
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.maxRejections = positiveInteger('LoginBudgetOptions.maxRejections', options.maxRejections ?? 2);
    this.windowMs = positiveInteger('LoginBudgetOptions.windowMs', options.windowMs ?? 60_000);
    this.turnMs = positiveInteger('LoginBudgetOptions.turnMs', options.turnMs ?? 55_000);
    this.followerWaitMs = positiveInteger('LoginBudgetOptions.followerWaitMs', options.followerWaitMs ?? 1_000);
    this.proofTtlMs = positiveInteger('LoginBudgetOptions.proofTtlMs', options.proofTtlMs ?? 30 * 24 * 60 * 60 * 1000);
    for (const [name, lua] of [
      [TAKE_TURN_COMMAND, TAKE_TURN_LUA],
      [REPORT_COMMAND, REPORT_LUA],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { lua, numberOfKeys: 1 });
    }
    this.client = redis as ClientWithLoginBudget;
  }

  /**
   * Lets a token request with `credentials` through, or throws {@link RequestHeldBackError}
   * (`login_budget`) without sending it: proven credentials always pass; unproven ones pass when
   * the host's budget has room and no other unproven request is in flight there. While another
   * one is, this waits for the turn (it comes within the time of one request) up to `maxWaitMs`;
   * when the budget is spent, it does not wait here: the workflow waits durably instead.
   *
   * `owner` names the request across retries of its activity (the workflow and activity IDs): a
   * retry after its worker died takes back the turn that worker held. `turnMs` is how long the
   * turn may be held: a little more than the request's own time budget.
   */
  async admit(
    credentials: LoginCredentials,
    key: LoginProofKey,
    { owner, turnMs, maxWaitMs, onWait }: { owner: string; turnMs: number; maxWaitMs: number; onWait?: LoginBudgetObserver },
  ): Promise<LoginTicket> {
    const proof = loginProof(key, credentials);
    const { origin, host } = new URL(credentials.tokenUrl);
    const ticket = (holder?: string): LoginTicket => ({
      proven: holder === undefined,
      accepted: () => this.accepted(credentials.clientId, proof, origin, holder),
      rejected: () => this.rejected(credentials.clientId, origin, holder),
      released: async () => {
        if (holder !== undefined) await this.release(origin, holder);
      },
    });
    if (await this.isProven(credentials.clientId, proof)) return ticket();
    const deadline = Date.now() + maxWaitMs;
    let waited = false;
    for (;;) {
      const turn = await this.takeTurn(origin, owner, turnMs);
      if (turn.state === 'granted') return ticket(owner);
      if (!waited) onWait?.(host, turn.state);
      waited = true;
      if (turn.state === 'busy' && Date.now() + TURN_POLL_MS < deadline) {
        await delay(TURN_POLL_MS);
        continue;
      }
      const why =
        turn.state === 'exhausted'
          ? `${turn.rejections} rejected logins at ${host} in the last ${describeWindow(this.windowMs)}; unproven credentials wait`
          : `another client's unproven credentials are being tried at ${host}; unproven credentials go one at a time`;
      throw new RequestHeldBackError('login_budget', `No request sent: ${why}; next try in ${turn.retryAfterMs} ms`, turn.retryAfterMs);
    }
  }

  /** Whether `proof` is what the IAM accepted the last time `clientId` logged in. */
  async isProven(clientId: string, proof: string): Promise<boolean> {
    return (await this.client.get(loginProofKey(this.prefix, clientId))) === proof;
  }

  /**
   * Asks for `origin`'s turn for an unproven request, held for `turnMs` at most; see
   * {@link LoginTurn}. `owner` already holding it takes it again.
   */
  async takeTurn(origin: string, owner: string = randomUUID(), turnMs = this.turnMs): Promise<LoginTurn> {
    const reply = await this.client[TAKE_TURN_COMMAND](
      loginBudgetKey(this.prefix, origin),
      String(this.maxRejections),
      String(this.windowMs),
      String(turnMs),
      String(this.followerWaitMs),
      owner,
    );
    if (!Array.isArray(reply) || reply.length !== 3)
      throw new Error(`Unexpected reply from the login budget script: ${JSON.stringify(reply)}`);
    const [state, rejections, retryAfterMs] = reply as [unknown, unknown, unknown];
    if (state === 'granted') return { state, rejections: Number(rejections), owner };
    if (state === 'exhausted' || state === 'busy')
      return { state, rejections: Number(rejections), retryAfterMs: Math.max(1, Number(retryAfterMs)) };
    throw new Error(`Unexpected reply from the login budget script: ${JSON.stringify(reply)}`);
  }

  /** The IAM accepted the credentials: they are proven from now on, and the turn (if held) ends. */
  async accepted(clientId: string, proof: string, origin: string, owner?: string): Promise<void> {
    await this.client.set(loginProofKey(this.prefix, clientId), proof, 'PX', this.proofTtlMs);
    if (owner !== undefined) await this.report(origin, 'done', owner);
  }

  /**
   * The IAM rejected the login: it spends the host's budget, the client's proof is gone (those
   * credentials are known to be refused now), and the turn (if held) ends. Resolves to the
   * rejections now in the window.
   */
  async rejected(clientId: string, origin: string, owner?: string): Promise<number> {
    await this.client.del(loginProofKey(this.prefix, clientId));
    return this.report(origin, 'rejected', owner ?? '');
  }

  /** The request got another outcome (or none): the turn ends, the budget is unchanged. */
  async release(origin: string, owner: string): Promise<void> {
    await this.report(origin, 'done', owner);
  }

  private async report(origin: string, outcome: 'rejected' | 'done', owner: string): Promise<number> {
    const reply = await this.client[REPORT_COMMAND](
      loginBudgetKey(this.prefix, origin),
      outcome,
      owner,
      String(this.windowMs),
      // Only the last few matter to the budget; the list must not grow with a flood of rejections.
      String(this.maxRejections + 8),
    );
    return Number(reply);
  }
}

function describeWindow(ms: number): string {
  return ms === 60_000 ? 'minute' : `${ms / 1000} s`;
}
