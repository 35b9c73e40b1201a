/**
 * The gauges `token_seconds_until_expiry{client_id}` (how long each client's stored token stays
 * valid) and `token_renewal_overdue_seconds{client_id}` (how long it is past its renewal point,
 * its `refresh_at`; 0 before it: the SDK's gauges take no negative value), updated every second, so a dashboard or an alert sees
 * a token running out, or a renewal that did not happen, before any service does.
 *
 * Every worker of a fleet learns every client's expiry, not only its own: it listens to
 * `<prefix>token-updated` (announced by the store's script after each accepted write, whichever
 * worker made it) and, at start and then every minute, scans the token keys, which also covers
 * announcements missed while the subscriber was reconnecting (Redis pub/sub delivers at most once).
 * Prometheus queries should therefore aggregate over workers, e.g. `max by (client_id) (…)`.
 *
 * Only metadata is read (`client_id`, `expires_at`, `refresh_at`, `generation`), never the token.
 */
import type { MetricGauge, MetricMeter } from '@temporalio/common';
import { Cluster, type Redis } from 'ioredis';
import { tokenKey, tokenKeysGlob, tokenUpdatedChannel } from '../shared/redis-layout.js';
import { parseTokenUpdated } from 'token-lifecycle/contract';
import { duplicateConnection, watchConnection, type RedisClient } from '../shared/redis-connection.js';
import { TOKEN_RENEWAL_OVERDUE_SECONDS, TOKEN_SECONDS_UNTIL_EXPIRY } from './metrics.js';

/** Options of {@link startTokenExpiryGauge}. */
export interface TokenExpiryGaugeOptions {
  /** The worker's Redis client; a duplicate of it subscribes to the channel. */
  redis: RedisClient;
  /** The key prefix (`TOKEN_KEY_PREFIX`). */
  prefix: string;
  /** Where the gauge is created: `Runtime.instance().metricMeter`. */
  meter: MetricMeter;
  /** How often the gauge is set. @default 1000 */
  updateIntervalMs?: number;
  /** How often the token keys are scanned again. @default 60_000 */
  resyncIntervalMs?: number;
  /** Told about Redis errors; the gauge keeps going with what it knows. @default ignore */
  onError?: (error: Error) => void;
  /** Unix milliseconds. @default Date.now */
  now?: () => number;
}

/** A running gauge. */
export interface TokenExpiryGauge {
  /** The expiry (Unix ms) known for each client. */
  knownExpiries(): ReadonlyMap<string, number>;
  /** The renewal point (`refresh_at`, Unix ms) known for each client whose token has one. */
  knownRenewals(): ReadonlyMap<string, number>;
  /** Sets the gauge from what is known now (the timer calls it every second). */
  update(): void;
  /** Scans the token keys and learns every expiry stored now. */
  resync(): Promise<void>;
  /** Stops the timers and the subscription. */
  stop(): void;
}

/** Redis pub/sub is fire-and-forget: a message can be lost, so the scan backs it up. */
const DEFAULT_RESYNC_INTERVAL_MS = 60_000;
const SCAN_BATCH = 200;
/** Until the first subscription succeeds (the connection's own failure is reported once). */
const SUBSCRIBE_RETRY_MS = 1000;

/** Starts the gauge: subscribes, scans once, then updates every second. */
export async function startTokenExpiryGauge(options: TokenExpiryGaugeOptions): Promise<TokenExpiryGauge> {
  const { redis, prefix, meter } = options;
  const now = options.now ?? Date.now;
  const onError = options.onError ?? (() => undefined);
  const gauge: MetricGauge = meter.createGauge(
    TOKEN_SECONDS_UNTIL_EXPIRY,
    'float',
    's',
    'Seconds until the stored token of each client expires (0 once it has)',
  );
  const overdueGauge: MetricGauge = meter.createGauge(
    TOKEN_RENEWAL_OVERDUE_SECONDS,
    'float',
    's',
    'Seconds the stored token of each client is past its renewal point (its refresh_at; 0 before it)',
  );

  // Newest generation wins, as in the store: a late message must not roll an expiry back. The
  // announcement carries no refresh_at: a newer generation's is unknown until read from its key.
  const expiries = new Map<string, { expiresAt: number; generation: number; refreshAt?: number }>();
  const learn = (clientId: string, expiresAt: number, generation: number, refreshAt?: number) => {
    const known = expiries.get(clientId);
    if (known === undefined || generation > known.generation) {
      expiries.set(clientId, { expiresAt, generation, ...(refreshAt !== undefined && { refreshAt }) });
    } else if (generation === known.generation) {
      known.expiresAt = expiresAt;
      if (refreshAt !== undefined) known.refreshAt = refreshAt;
    }
  };

  const setGauges = (clientId: string, at: number) => {
    const known = expiries.get(clientId)!;
    gauge.set(Math.max(0, (known.expiresAt - at) / 1000), { client_id: clientId });
    if (known.refreshAt !== undefined) overdueGauge.set(Math.max(0, (at - known.refreshAt) / 1000), { client_id: clientId });
  };
  const update = () => {
    const at = now();
    for (const clientId of expiries.keys()) setGauges(clientId, at);
  };
  /** The renewal point of an announced generation, from its key (absent in a token written without one). */
  const readRenewal = async (clientId: string, generation: number) => {
    const [storedGeneration, refreshAt] = await redis.hmget(tokenKey(prefix, clientId), 'generation', 'refresh_at');
    if (Number(storedGeneration) !== generation || !refreshAt) return;
    const known = expiries.get(clientId);
    if (known?.generation !== generation) return;
    known.refreshAt = Number(refreshAt);
    setGauges(clientId, now());
  };

  const resync = async () => {
    for (const node of scanNodes(redis)) {
      const stream = node.scanStream({ match: tokenKeysGlob(prefix), count: SCAN_BATCH });
      for await (const keys of stream as AsyncIterable<string[]>) {
        // One command per key: keys of a batch may live in different Cluster slots.
        const rows = await Promise.all(keys.map((key) => redis.hmget(key, 'client_id', 'expires_at', 'generation', 'refresh_at')));
        for (const [clientId, expiresAt, generation, refreshAt] of rows) {
          if (clientId && expiresAt && generation)
            learn(clientId, Number(expiresAt), Number(generation), refreshAt ? Number(refreshAt) : undefined);
        }
      }
    }
  };

  // A connection in subscriber mode can send nothing else: the subscription gets its own.
  const subscriber = duplicateConnection(redis);
  watchConnection(subscriber, {
    down: onError,
    // Announcements made while it was away are lost: scan now rather than at the next resync.
    restored: () => void resync().then(update, onError),
  });
  // One renewal, one gauge: setting every client's here made a renewal cost N metric calls (N² for
  // a fleet's renewals); the others are set by the periodic update anyway.
  subscriber.on('message', (_channel: string, text: string) => {
    const message = parseTokenUpdated(text);
    if (message?.expiresAt === undefined) return;
    learn(message.clientId, message.expiresAt, message.generation);
    setGauges(message.clientId, now());
    if (expiries.get(message.clientId)!.refreshAt === undefined) readRenewal(message.clientId, message.generation).catch(onError);
  });
  // A failed first subscription is retried in the background: a worker started while Redis is down
  // still starts (its token requests back off as store_unavailable). Once subscribed, ioredis
  // subscribes again after each reconnection.
  let stopped = false;
  let subscribeRetry: NodeJS.Timeout | undefined;
  const subscribe = async (attempt = 1): Promise<void> => {
    try {
      await subscriber.subscribe(tokenUpdatedChannel(prefix));
      // What was announced before this late subscription is only in the keys.
      if (attempt > 1) void resync().then(update, onError);
    } catch {
      if (!stopped) subscribeRetry = setTimeout(() => void subscribe(attempt + 1), SUBSCRIBE_RETRY_MS).unref();
    }
  };
  await subscribe();
  await resync().catch(onError);
  update();

  const updateTimer = setInterval(update, options.updateIntervalMs ?? 1000);
  const resyncTimer = setInterval(() => {
    resync().then(update, onError);
  }, options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS);
  // The workers keep the process alive; these timers must not hold up a graceful shutdown.
  updateTimer.unref();
  resyncTimer.unref();

  return {
    knownExpiries: () => new Map([...expiries].map(([clientId, { expiresAt }]) => [clientId, expiresAt])),
    knownRenewals: () =>
      new Map([...expiries].flatMap(([clientId, { refreshAt }]) => (refreshAt === undefined ? [] : [[clientId, refreshAt] as const]))),
    update,
    resync,
    stop() {
      stopped = true;
      clearTimeout(subscribeRetry);
      clearInterval(updateTimer);
      clearInterval(resyncTimer);
      subscriber.disconnect();
    },
  };
}

/** A Cluster's keys are spread over its masters, each of which must be scanned. */
function scanNodes(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}
