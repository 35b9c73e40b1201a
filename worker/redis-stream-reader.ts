/**
 * A consumer-group reader of one Redis stream, delivering each entry at least once
 * (docs/design.md, "The forced-refresh path"): what to do with an entry is the caller's
 * {@link RedisStreamReaderOptions.handle}; reading, claiming, acknowledging and retrying are here.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Logger } from '@temporalio/common';
import type { Cluster, Redis } from 'ioredis';
import { errorMessage } from '../shared/error-message.js';
import { exponentialDelayMs } from '../workflows/policy.js';

/** One stream entry: its ID and its fields as `[name, value, …]`, or null when its data was deleted. */
export type StreamEntry = [id: string, fields: string[] | null];

/** How a {@link createRedisStreamReader} reads, claims and retries. */
export interface RedisStreamReaderSettings {
  /** Unique per worker process, so a dead worker's pending entries can be told apart and claimed. @default `<hostname>:<pid>:<random>` */
  consumerName?: string;
  /** How long one XREADGROUP waits for new entries. @default 5_000 */
  blockMs?: number;
  /** Entries read (and handled in parallel) at a time. @default 100 */
  batchSize?: number;
  /**
   * How long an entry stays unacknowledged by another consumer before this one claims it, and
   * how often it looks for such entries. Longer than handling an entry may take, so a live
   * worker's entries are rarely handled twice. @default 30_000
   */
  claimMinIdleMs?: number;
  /** Consumers idle this long with nothing pending are removed from the group (dead workers). @default 600_000 */
  forgetIdleConsumersAfterMs?: number;
  /** First and longest wait after a failure. @default { initialMs: 100, maxMs: 5_000 } */
  retry?: { initialMs?: number; maxMs?: number };
}

export interface RedisStreamReaderOptions extends RedisStreamReaderSettings {
  /**
   * A connection for this reader alone: `XREADGROUP … BLOCK` holds it while waiting. The reader
   * closes it when it stops.
   */
  redis: Redis | Cluster;
  stream: string;
  group: string;
  /**
   * Handles one entry. Resolving acknowledges it (XACK, then XDEL to keep the stream small), so
   * resolve also for an entry that can never be handled, once it is logged; rejecting leaves it
   * pending, to be read again after a back-off. It may run more than once for an entry.
   */
  handle: (entry: StreamEntry) => Promise<void>;
  logger: Logger;
}

export interface RedisStreamReader {
  readonly consumerName: string;
  /** Reads the stream until {@link RedisStreamReader.stop}; never rejects. */
  run(): Promise<void>;
  /** Finishes the batch in hand (handling and acknowledgements), stops, and closes the connection. */
  stop(): Promise<void>;
}

/**
 * Reads `stream` as a member of `group`:
 * - on start, and after every error, it creates the group if there is none (Redis restarted
 *   empty), then first re-reads its own pending entries (ID 0);
 * - every `claimMinIdleMs` it claims (XAUTOCLAIM) entries that another consumer read and left
 *   unacknowledged that long: a worker that died, or was killed, before acknowledging;
 * - when Redis or the handler fails it backs off and tries again; it never throws.
 */
export function createRedisStreamReader(options: RedisStreamReaderOptions): RedisStreamReader {
  const { redis, stream, group, logger } = options;
  const consumerName = options.consumerName ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const blockMs = options.blockMs ?? 5_000;
  const batchSize = options.batchSize ?? 100;
  const claimMinIdleMs = options.claimMinIdleMs ?? 30_000;
  const forgetAfterMs = options.forgetIdleConsumersAfterMs ?? 600_000;
  const retryInitialMs = options.retry?.initialMs ?? 100;
  const retryMaxMs = options.retry?.maxMs ?? 5_000;

  let stopping = false;
  let blocking = false;
  let wake: (() => void) | null = null;
  let running: Promise<void> | null = null;
  // Errors surface through the commands; this keeps ioredis from printing each reconnect.
  redis.on('error', () => undefined);

  const call = (command: string, ...args: (string | number)[]): Promise<unknown> => redis.call(command, ...args);

  async function ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: entries added before any worker ever ran are not lost.
      await call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
    }
  }

  /** Handles each entry; acknowledges those handled; throws if any must be retried. */
  async function handle(entries: StreamEntry[]): Promise<void> {
    const outcomes = await Promise.allSettled(entries.map((entry) => options.handle(entry)));
    const done = entries.filter((_, i) => outcomes[i]!.status === 'fulfilled').map(([id]) => id);
    if (done.length > 0) {
      const replies = await redis
        .multi()
        .xack(stream, group, ...done)
        .xdel(stream, ...done)
        .exec();
      const failed = replies?.find(([err]) => err !== null)?.[0];
      if (replies === null || failed) throw failed ?? new Error(`XACK/XDEL on ${stream} was aborted`);
    }
    const retryable = outcomes.find((outcome) => outcome.status === 'rejected');
    if (retryable !== undefined) throw retryable.reason;
  }

  /** Entries this consumer read earlier and has not acknowledged (after an error or a reconnect). */
  async function drainOwnPending(): Promise<void> {
    let after = '0';
    for (;;) {
      const entries = entriesOf(await call('XREADGROUP', 'GROUP', group, consumerName, 'COUNT', batchSize, 'STREAMS', stream, after));
      if (entries.length === 0 || stopping) return;
      await handle(entries);
      after = entries.at(-1)![0];
    }
  }

  /** Entries other consumers read and left unacknowledged for `claimMinIdleMs`: their worker died. */
  async function claimAbandoned(): Promise<void> {
    let cursor = '0-0';
    do {
      const reply = (await call('XAUTOCLAIM', stream, group, consumerName, claimMinIdleMs, cursor, 'COUNT', batchSize)) as [
        string,
        StreamEntry[] | null,
      ];
      cursor = reply[0];
      const entries = reply[1] ?? [];
      if (entries.length > 0) {
        logger.info(`Claimed ${entries.length} unacknowledged entries of a stopped worker on ${stream}`, {
          stream,
          consumer: consumerName,
        });
        await handle(entries);
      }
    } while (cursor !== '0-0' && !stopping);
    await forgetIdleConsumers();
  }

  /** Keeps the group's consumer list from growing with every worker restart. */
  async function forgetIdleConsumers(): Promise<void> {
    const consumers = (await call('XINFO', 'CONSUMERS', stream, group)) as unknown[][];
    for (const row of consumers) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < row.length; i += 2) info.set(String(row[i]), row[i + 1]);
      const name = String(info.get('name'));
      if (name !== consumerName && Number(info.get('pending')) === 0 && Number(info.get('idle')) > forgetAfterMs) {
        await call('XGROUP', 'DELCONSUMER', stream, group, name);
      }
    }
  }

  async function readNew(): Promise<void> {
    if (stopping) return;
    blocking = true;
    let reply: unknown;
    try {
      reply = await call('XREADGROUP', 'GROUP', group, consumerName, 'COUNT', batchSize, 'BLOCK', blockMs, 'STREAMS', stream, '>');
    } finally {
      blocking = false;
    }
    const entries = entriesOf(reply);
    if (entries.length > 0) await handle(entries);
  }

  async function loop(): Promise<void> {
    let failures = 0;
    let ready = false;
    let nextClaimAt = 0;
    while (!stopping) {
      try {
        if (!ready) {
          await ensureGroup();
          await drainOwnPending();
          ready = true;
        }
        if (Date.now() >= nextClaimAt) {
          await claimAbandoned();
          nextClaimAt = Date.now() + claimMinIdleMs;
        }
        await readNew();
        failures = 0;
      } catch (err) {
        if (stopping) break;
        // The group may be gone (Redis restarted empty), entries may be half done: start over.
        ready = false;
        failures++;
        const delayMs = exponentialDelayMs({ baseMs: retryInitialMs, capMs: retryMaxMs }, failures);
        logger.warn(`Reading ${stream}: ${errorMessage(err)}; trying again in ${delayMs} ms`, {
          stream,
          consumer: consumerName,
          failures,
        });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    }
  }

  return {
    consumerName,
    run() {
      running ??= loop().finally(() => redis.disconnect());
      return running;
    },
    async stop() {
      stopping = true;
      // A blocked XREADGROUP holds no entry yet: closing the connection loses nothing.
      if (blocking) redis.disconnect();
      wake?.();
      if (running === null) redis.disconnect();
      await running;
    },
  };
}

/**
 * The entries of an XREADGROUP reply for one stream: `[[stream, entries]]`, or null when there
 * are none. ioredis' `call` flattens a single-stream reply to `[stream, entries]`: both are read.
 */
function entriesOf(reply: unknown): StreamEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const streamReply = (typeof reply[0] === 'string' ? reply : reply[0]) as [string, StreamEntry[] | null];
  return Array.isArray(streamReply[1]) ? streamReply[1] : [];
}
