/**
 * The settings and connections of one tokenctl run, opened on first use and closed at the end.
 * Each command connects to what it needs (Temporal, or Redis for `token`) and nothing else, and
 * loads the code for it only then: `tokenctl --help` loads neither.
 */
import type { Connection } from '@temporalio/client';
import type { TokenAdmin } from '../client/admin.js';
import { innermostMessage } from '../shared/error-message.js';
import type { RedisClient } from '../shared/redis-connection.js';
import type { RedisSettings } from '../shared/redis-settings.js';
import type { Settings } from '../shared/settings.js';
import type { TokenStore } from '../shared/token-store.js';
import { CliError } from './cli-error.js';

/** How long a command waits for Temporal or Redis to answer before it gives up. */
const CONNECT_TIMEOUT_MS = 5_000;

export class Session {
  private cachedSettings: Settings | undefined;
  private cachedRedisSettings: RedisSettings | undefined;
  private connection: Connection | undefined;
  private redis: RedisClient | undefined;

  /** Read on first use, so `--help` and usage errors work whatever the environment holds. */
  async settings(): Promise<Settings> {
    if (this.cachedSettings === undefined) {
      const { readSettings } = await import('../shared/settings.js');
      this.cachedSettings = readSettings();
    }
    return this.cachedSettings;
  }

  /** Only the Redis settings: a command that needs Redis alone (`token`) reads and loads no more. */
  async redisSettings(): Promise<RedisSettings> {
    if (this.cachedRedisSettings === undefined) {
      const { readRedisSettings } = await import('../shared/redis-settings.js');
      this.cachedRedisSettings = readRedisSettings();
    }
    return this.cachedRedisSettings;
  }

  /** The admin API on a Temporal connection (opened once). */
  async admin(): Promise<TokenAdmin> {
    const settings = await this.settings();
    const [{ Client, Connection }, { TokenAdmin }, { TemporalUnreachableError, temporalConnectionOptions }] = await Promise.all([
      import('@temporalio/client'),
      import('../client/admin.js'),
      import('../shared/temporal-connection.js'),
    ]);
    if (this.connection === undefined) {
      // Outside the try: an unreadable TLS file is a settings error, not an unreachable server.
      const options = temporalConnectionOptions(settings);
      try {
        this.connection = await Connection.connect({ ...options, connectTimeout: CONNECT_TIMEOUT_MS });
      } catch (err) {
        throw new TemporalUnreachableError(settings.TEMPORAL_ADDRESS, err);
      }
    }
    return new TokenAdmin(new Client({ connection: this.connection, namespace: settings.TEMPORAL_NAMESPACE }), {
      taskQueue: settings.TEMPORAL_TASK_QUEUE,
    });
  }

  /** The token store on a Redis connection that tries once: a CLI says Redis is down, it does not wait for it. */
  async store(): Promise<TokenStore> {
    const [redis, settings, { TokenStore }] = await Promise.all([
      this.redisClient(),
      this.redisSettings(),
      import('../shared/token-store.js'),
    ]);
    return new TokenStore(redis, { prefix: settings.TOKEN_KEY_PREFIX });
  }

  /** A Redis connection (opened once) that tries once: a CLI says Redis is down, it does not wait for it. */
  async redisClient(): Promise<RedisClient> {
    if (this.redis !== undefined) return this.redis;
    const settings = await this.redisSettings();
    const [{ redactRedisUrl }, { createRedisClientFromSettings, redisTlsProblem }] = await Promise.all([
      import('../shared/redis-connection.js'),
      import('../shared/redis-tls.js'),
    ]);
    const redis = await createRedisClientFromSettings(settings, {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      sentinelRetryStrategy: () => null,
    });
    this.redis = redis;
    // connect() only rejects with "Connection is closed."; the 'error' event says why (and, left
    // unhandled, ioredis would log it).
    let socketError: Error | undefined;
    redis.on('error', (err: Error) => (socketError = err));
    try {
      await redis.connect();
    } catch (err) {
      const cause = socketError ?? err;
      const advice = redisTlsProblem(cause, settings) ?? 'check that it is running, or set REDIS_URL';
      throw new CliError(`cannot connect to Redis at ${redactRedisUrl(settings.REDIS_URL)} (${innermostMessage(cause)}): ${advice}`);
    }
    return redis;
  }

  /** The Temporal address, for messages: only a command that read the settings can have failed on Temporal. */
  temporalAddress(): string {
    return this.cachedSettings?.TEMPORAL_ADDRESS ?? 'TEMPORAL_ADDRESS';
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
    await this.connection?.close();
  }
}
