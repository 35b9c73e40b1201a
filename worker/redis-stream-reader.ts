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
  return new ConsumerGroupReader(options);
}

class ConsumerGroupReader implements RedisStreamReader {
  readonly consumerName: string;
  private readonly redis: Redis | Cluster;
  private readonly stream: string;
  private readonly group: string;
  private readonly logger: Logger;
  private readonly handleEntry: (entry: StreamEntry) => Promise<void>;
  private readonly blockMs: number;
  private readonly batchSize: number;
  private readonly claimMinIdleMs: number;
  private readonly forgetAfterMs: number;
  private readonly retry: { baseMs: number; capMs: number };

  private stopping = false;
  private blocking = false;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;

  constructor(options: RedisStreamReaderOptions) {
    ({ redis: this.redis, stream: this.stream, group: this.group, logger: this.logger, handle: this.handleEntry } = options);
    this.consumerName = options.consumerName ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.blockMs = options.blockMs ?? 5_000;
    this.batchSize = options.batchSize ?? 100;
    this.claimMinIdleMs = options.claimMinIdleMs ?? 30_000;
    this.forgetAfterMs = options.forgetIdleConsumersAfterMs ?? 600_000;
    this.retry = { baseMs: options.retry?.initialMs ?? 100, capMs: options.retry?.maxMs ?? 5_000 };
    // Errors surface through the commands; this keeps ioredis from printing each reconnect.
    this.redis.on('error', () => undefined);
  }

  run(): Promise<void> {
    this.running ??= this.loop().finally(() => this.redis.disconnect());
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    // A blocked XREADGROUP holds no entry yet: closing the connection loses nothing.
    if (this.blocking) this.redis.disconnect();
    this.wake?.();
    if (this.running === null) this.redis.disconnect();
    await this.running;
  }

  private call(command: string, ...args: (string | number)[]): Promise<unknown> {
    return this.redis.call(command, ...args);
  }

  private async ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: entries added before any worker ever ran are not lost.
      await this.call('XGROUP', 'CREATE', this.stream, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err;
    }
  }

  /** Handles each entry; acknowledges those handled; throws if any must be retried. */
  private async handleBatch(entries: StreamEntry[]): Promise<void> {
    const outcomes = await Promise.allSettled(entries.map((entry) => this.handleEntry(entry)));
    const done = entries.filter((_, i) => outcomes[i]!.status === 'fulfilled').map(([id]) => id);
    if (done.length > 0) {
      const replies = await this.redis
        .multi()
        .xack(this.stream, this.group, ...done)
        .xdel(this.stream, ...done)
        .exec();
      const failed = replies?.find(([err]) => err !== null)?.[0];
      if (replies === null || failed) throw failed ?? new Error(`XACK/XDEL on ${this.stream} was aborted`);
    }
    const retryable = outcomes.find((outcome) => outcome.status === 'rejected');
    if (retryable !== undefined) throw retryable.reason;
  }

  /** Entries this consumer read earlier and has not acknowledged (after an error or a reconnect). */
  private async drainOwnPending(): Promise<void> {
    let after = '0';
    for (;;) {
      const entries = entriesOf(
        await this.call('XREADGROUP', 'GROUP', this.group, this.consumerName, 'COUNT', this.batchSize, 'STREAMS', this.stream, after),
      );
      if (entries.length === 0 || this.stopping) return;
      await this.handleBatch(entries);
      after = entries.at(-1)![0];
    }
  }

  /** Entries other consumers read and left unacknowledged for `claimMinIdleMs`: their worker died. */
  private async claimAbandoned(): Promise<void> {
    let cursor = '0-0';
    do {
      const reply = (await this.call(
        'XAUTOCLAIM',
        this.stream,
        this.group,
        this.consumerName,
        this.claimMinIdleMs,
        cursor,
        'COUNT',
        this.batchSize,
      )) as [string, StreamEntry[] | null];
      cursor = reply[0];
      const entries = reply[1] ?? [];
      if (entries.length > 0) {
        this.logger.info(`Claimed ${entries.length} unacknowledged entries of a stopped worker on ${this.stream}`, {
          stream: this.stream,
          consumer: this.consumerName,
        });
        await this.handleBatch(entries);
      }
    } while (cursor !== '0-0' && !this.stopping);
    await this.forgetIdleConsumers();
  }

  /** Keeps the group's consumer list from growing with every worker restart. */
  private async forgetIdleConsumers(): Promise<void> {
    const consumers = (await this.call('XINFO', 'CONSUMERS', this.stream, this.group)) as unknown[][];
    for (const row of consumers) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < row.length; i += 2) info.set(String(row[i]), row[i + 1]);
      const name = String(info.get('name'));
      if (name !== this.consumerName && Number(info.get('pending')) === 0 && Number(info.get('idle')) > this.forgetAfterMs) {
        await this.call('XGROUP', 'DELCONSUMER', this.stream, this.group, name);
      }
    }
  }

  private async readNew(): Promise<void> {
    if (this.stopping) return;
    this.blocking = true;
    let reply: unknown;
    try {
      reply = await this.call(
        'XREADGROUP',
        'GROUP',
        this.group,
        this.consumerName,
        'COUNT',
        this.batchSize,
        'BLOCK',
        this.blockMs,
        'STREAMS',
        this.stream,
        '>',
      );
    } finally {
      this.blocking = false;
    }
    const entries = entriesOf(reply);
    if (entries.length > 0) await this.handleBatch(entries);
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let ready = false;
    let nextClaimAt = 0;
    while (!this.stopping) {
      try {
        if (!ready) {
          await this.ensureGroup();
          await this.drainOwnPending();
          ready = true;
        }
        if (Date.now() >= nextClaimAt) {
          await this.claimAbandoned();
          nextClaimAt = Date.now() + this.claimMinIdleMs;
        }
        await this.readNew();
        failures = 0;
      } catch (err) {
        if (this.stopping) break;
        // The group may be gone (Redis restarted empty), entries may be half done: start over.
        ready = false;
        failures++;
        const delayMs = exponentialDelayMs(this.retry, failures);
        this.logger.warn(`Reading ${this.stream}: ${errorMessage(err)}; trying again in ${delayMs} ms`, {
          stream: this.stream,
          consumer: this.consumerName,
          failures,
        });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    }
  }
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
