/**
 * A lease in Redis: one key holding its holder's random ID, expiring unless the holder renews it,
 * so that one process of a fleet does a job and another takes it over when that one stops or dies
 * (docs/design.md, "One listing, by one worker").
 *
 * Taking it is `SET key id NX PX ttl`; renewing and releasing are scripts that compare the ID
 * first, so a holder whose lease expired and was taken by another never renews or deletes the
 * other's. Every call touches one key: it works on standalone Redis, Sentinel and Redis Cluster.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../shared/redis-connection.js';
import { positiveInteger } from '../shared/positive-integer.js';

/** KEYS[1] the lease, ARGV[1] the holder's ID, ARGV[2] the TTL in ms. 1 if renewed, 0 if not held by ARGV[1]. */
const RENEW_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`;

/** KEYS[1] the lease, ARGV[1] the holder's ID. 1 if deleted, 0 if not held by ARGV[1]. */
const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

const RENEW_COMMAND = 'tokenLifecycleRenewLease';
const RELEASE_COMMAND = 'tokenLifecycleReleaseLease';

type ClientWithLease = RedisClient & {
  [RENEW_COMMAND](key: string, holder: string, ttlMs: string): Promise<unknown>;
  [RELEASE_COMMAND](key: string, holder: string): Promise<unknown>;
};

/** One holder's view of a lease: many instances (one per process) contend for the same key. */
export class RedisLease {
  /** This holder's ID, the value of the key while it holds the lease. */
  readonly holder: string;
  private readonly client: ClientWithLease;

  /**
   * @param redis an ioredis client (standalone, Sentinel or Cluster); the scripts are registered on it.
   * @param key the lease's key (shared/redis-layout.ts).
   * @param ttlMs how long the lease lasts after it is taken or renewed without being renewed again.
   * @param holder this holder's ID. @default a random UUID
   */
  constructor(
    redis: RedisClient,
    readonly key: string,
    readonly ttlMs: number,
    holder: string = randomUUID(),
  ) {
    positiveInteger('RedisLease ttlMs', ttlMs);
    this.holder = holder;
    for (const [name, lua] of [
      [RENEW_COMMAND, RENEW_LUA],
      [RELEASE_COMMAND, RELEASE_LUA],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { lua, numberOfKeys: 1 });
    }
    this.client = redis as ClientWithLease;
  }

  /** Takes the lease if nobody holds it; whether this holder took it. */
  async acquire(): Promise<boolean> {
    return (await this.client.set(this.key, this.holder, 'PX', this.ttlMs, 'NX')) === 'OK';
  }

  /** Extends the lease to `ttlMs` from now if this holder holds it; whether it does. */
  async renew(): Promise<boolean> {
    return (await this.client[RENEW_COMMAND](this.key, this.holder, String(this.ttlMs))) === 1;
  }

  /** Renews the lease if this holder holds it, else takes it if it is free; whether this holder holds it now. */
  async keep(): Promise<boolean> {
    return (await this.renew()) || (await this.acquire());
  }

  /** Gives the lease up if this holder holds it, so another takes it at once; whether it did. */
  async release(): Promise<boolean> {
    return (await this.client[RELEASE_COMMAND](this.key, this.holder)) === 1;
  }
}
