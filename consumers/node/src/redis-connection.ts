/**
 * An ioredis client from a URL, for standalone Redis, Sentinel and Cluster alike:
 * - `redis://[:password@]host:port[/db]` or `rediss://…` (TLS): standalone;
 * - `redis+sentinel://[:password@]host1:26379,host2:26379/<master name>[/db]`: Sentinel;
 * - `redis+cluster://[:password@]host1:6379,host2:6379`: Cluster (seed nodes);
 * - `rediss+sentinel://…`, `rediss+cluster://…`: the same over TLS, to the Sentinels and to every node.
 *
 * Over TLS, `options.tls` (ioredis's, i.e. Node.js's TLS options) says what to trust and which
 * client certificate to show; without it, Node.js's public CAs and no client certificate.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';

export type RedisClient = Redis | Cluster;

/** A Redis URL {@link createRedisClient} cannot read; the message shows the URL without its password. */
export class RedisUrlError extends Error {
  readonly code = 'invalid_redis_url';
}

/**
 * An ioredis client for `url` (see the module comment for the forms), with `options` (ioredis's)
 * for every connection it opens.
 *
 * @throws {@link RedisUrlError} when `url` has none of the forms.
 */
export function createRedisClient(url: string, options: RedisOptions = {}): RedisClient {
  const match = /^(rediss?)(\+sentinel|\+cluster)?:\/\/(?:([^@/]*)@)?([^/]+)(?:\/(.*))?$/.exec(url);
  if (match === null) {
    throw new RedisUrlError(
      `REDIS_URL must look like redis://host:6379, redis+sentinel://host:26379/master or redis+cluster://host:6379, or the same with rediss for TLS (got ${redactRedisUrl(url)})`,
    );
  }
  const [, base, topology, auth, hostList, path = ''] = match;
  const overTls = base === 'rediss';
  if (topology === undefined) {
    // ioredis turns TLS on for rediss:// itself; options.tls, when given, says how.
    return new Redis(url, overTls ? { ...options, tls: options.tls ?? {} } : options);
  }
  const scheme = `redis${topology}`;
  const tls = overTls ? (options.tls ?? {}) : undefined;

  const password = auth === undefined ? undefined : decodeURIComponent(auth.slice(auth.indexOf(':') + 1));
  const username =
    auth === undefined || !auth.includes(':') ? undefined : decodeURIComponent(auth.slice(0, auth.indexOf(':'))) || undefined;
  const nodes = hostList!.split(',').map((hostPort) => {
    const [host, port] = hostPort.split(':');
    return { host: host!, port: Number(port ?? (scheme === 'redis+sentinel' ? 26379 : 6379)) };
  });
  const credentials = { ...(password !== undefined && { password }), ...(username !== undefined && { username }) };
  if (scheme === 'redis+cluster') {
    return new Cluster(nodes, { redisOptions: { ...options, ...credentials, ...(tls !== undefined && { tls }) } });
  }
  const [name, db] = path.split('/');
  if (!name)
    throw new RedisUrlError(
      `REDIS_URL for Sentinel must name the master: redis+sentinel://host:26379/<master name> (got ${redactRedisUrl(url)})`,
    );
  return new Redis({
    ...options,
    ...credentials,
    sentinels: nodes,
    name,
    ...(db !== undefined && { db: Number(db) }),
    // The same TLS to the Sentinels and to the master and replicas they name.
    ...(tls !== undefined && { tls, sentinelTLS: tls, enableTLSForSentinelMode: true }),
  });
}

/** The URL without its password, for messages and logs. */
export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//[redacted]@');
}

/** A second connection like `redis` (same nodes and options), e.g. for a subscription. */
export function duplicateConnection(redis: RedisClient): RedisClient {
  // Two calls, not one: the union of the two `duplicate` signatures is not callable.
  return redis instanceof Cluster ? redis.duplicate() : redis.duplicate();
}
