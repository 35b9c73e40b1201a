/**
 * The worker's Redis connections: the clients and URLs are the consumer package's
 * (consumers/node/src/redis-connection.ts, re-exported here); what the worker adds is how it
 * watches a connection for its logs and metrics.
 */
import type { RedisClient } from 'token-lifecycle';

export { createRedisClient, duplicateConnection, redactRedisUrl, RedisUrlError, type RedisClient } from 'token-lifecycle';

/** What {@link watchConnection} calls: once per outage and once per recovery. */
export interface ConnectionWatcher {
  down(error: Error): void;
  restored?(): void;
}

/**
 * Calls `down` once when the connection fails, not on each of ioredis's reconnection attempts, and
 * `restored` once it is ready again. It also keeps ioredis from printing "Unhandled error event"
 * for every attempt, which it does for a client without an `error` listener.
 */
export function watchConnection(redis: RedisClient, watcher: ConnectionWatcher): void {
  let down = false;
  redis.on('error', (error: Error) => {
    if (down) return;
    down = true;
    watcher.down(error);
  });
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    watcher.restored?.();
  });
}
