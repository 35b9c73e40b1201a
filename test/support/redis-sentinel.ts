/**
 * Redis with Sentinel for integration tests: a master and a replica (`redis-server`, see
 * redis-server.ts) and three Sentinels (Debian's `redis-sentinel`), all on free ports of 127.0.0.1,
 * quorum 2, with a short `down-after-milliseconds` so a crashed master is failed over in seconds.
 *
 * ```ts
 * const sentinel = await startRedisSentinel();
 * process.env.REDIS_URL = sentinel.url; // redis+sentinel://127.0.0.1:p1,…/<master name>
 * await sentinel.failover();            // SENTINEL FAILOVER: the replica becomes the master
 * await sentinel.kill9Master();         // a crash: the Sentinels promote the replica
 * await sentinel.stop();
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitDescription, hasExited, stopChild } from '../../dev/child-process.js';
import { findFreePorts } from '../../dev/free-port.js';
import { eventually } from './token-stack.js';
import { redisCli, startRedisServer, type RedisServer } from './redis-server.js';

/** Override with `REDIS_SENTINEL_BIN`. */
export const REDIS_SENTINEL_BIN = process.env.REDIS_SENTINEL_BIN ?? 'redis-sentinel';

export const SENTINEL_MASTER_NAME = 'token-lifecycle';
/** How long a master may not answer before a Sentinel thinks it down. */
export const DOWN_AFTER_MS = 2000;
/** How long a failover waits (and states settle) before Sentinel tries again. */
const FAILOVER_TIMEOUT_MS = 10_000;
/** Bounds of the waits below: many times what they take on an idle machine. */
const SETTLE_TIMEOUT_MS = 60_000;

export interface RedisSentinel {
  /** `redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/<master name>` */
  readonly url: string;
  readonly sentinelPorts: readonly number[];
  /** The port of the current master, as the Sentinels name it. */
  masterPort(): Promise<number>;
  /** The data node on `port` (master or replica). */
  node(port: number): RedisServer;
  /** The port of the node that is not the master (the replica), while both run. */
  replicaPort(): Promise<number>;
  /**
   * `SENTINEL FAILOVER`; resolves once every Sentinel names the new master, it is writable, and the
   * old master replicates from it. Until the Sentinels convert it (at their next INFO of it, up to
   * 10 s), the old master still takes the writes of clients connected to it, and loses them then.
   */
  failover(): Promise<Promotion & { oldMasterConvertedAfterMs: number }>;
  /** Kills the master with SIGKILL; resolves once the Sentinels promoted the replica and it is writable. */
  kill9Master(): Promise<Promotion>;
  /**
   * Makes the replica miss what `writes` writes, as asynchronous replication can: the replica is
   * frozen (SIGSTOP) and cut off from the master, `writes` runs against the master, then the master
   * is killed (SIGKILL) and the replica thawed, and the Sentinels promote it without those writes.
   */
  loseWritesInFailover(writes: () => Promise<void>): Promise<Promotion>;
  /** Stops the Sentinels and the data nodes and removes their files. Idempotent. */
  stop(): Promise<void>;
}

/** Until the replica on `port` has its link to the master up (it has synchronised). */
function replicaInSync(port: number): Promise<true> {
  return eventually(
    async () => ((await redisCli(port, 'INFO', 'replication')).includes('master_link_status:up') ? true : undefined),
    SETTLE_TIMEOUT_MS,
    `the replica on ${port} in sync`,
  );
}

/** A failover: the old and the new master's ports, and how long the Sentinels took to promote it. */
export interface Promotion {
  from: number;
  to: number;
  promotedAfterMs: number;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startRedisSentinel(): Promise<RedisSentinel> {
  const nodes = new Map<number, RedisServer>();
  const sentinels: ChildProcess[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'redis-sentinel-'));
  const sentinelPorts = await findFreePorts(3);
  const cli = (port: number, ...args: string[]) => redisCli(port, ...args).then((out) => out.trim());
  const stop = async () => {
    for (const child of sentinels) await stopChild(child, { signal: 'SIGKILL' });
    for (const node of nodes.values()) await node.stop();
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const master = await startRedisServer();
    nodes.set(master.port, master);
    const replica = await startRedisServer({ extraArgs: ['--replicaof', '127.0.0.1', String(master.port)] });
    nodes.set(replica.port, replica);
    await replicaInSync(replica.port);

    for (const port of sentinelPorts) {
      const sentinelDir = join(dir, String(port));
      await mkdir(sentinelDir);
      const config = join(sentinelDir, 'sentinel.conf');
      // Sentinel rewrites its config file with what it learns: it must be its own and writable.
      await writeFile(
        config,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${sentinelDir}`,
          `logfile ${join(sentinelDir, 'sentinel.log')}`,
          'sentinel resolve-hostnames no',
          `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${DOWN_AFTER_MS}`,
          `sentinel failover-timeout ${SENTINEL_MASTER_NAME} ${FAILOVER_TIMEOUT_MS}`,
          `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
          '',
        ].join('\n'),
      );
      const child = spawn(REDIS_SENTINEL_BIN, [config], { stdio: 'ignore' });
      running.add(child);
      child.once('exit', () => running.delete(child));
      const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
      sentinels.push(child);
      await Promise.race([
        spawnError.then((error) => {
          throw new Error(
            `Could not start ${REDIS_SENTINEL_BIN} (apt-get install redis-sentinel; make system-deps does): ${error.message}`,
          );
        }),
        eventually(
          async () => {
            if (hasExited(child))
              throw new Error(
                `redis-sentinel on port ${port} exited (${exitDescription(child)}):\n${await readFile(join(sentinelDir, 'sentinel.log'), 'utf8').catch(() => '')}`,
              );
            return (await cli(port, 'PING').catch(() => '')) === 'PONG' ? true : undefined;
          },
          SETTLE_TIMEOUT_MS,
          `redis-sentinel on port ${port}`,
        ),
      ]);
    }
    // Each Sentinel must know the two others (quorum, election) and the replica (a candidate).
    await eventually(
      async () => {
        for (const port of sentinelPorts) {
          const others = await cli(port, 'SENTINEL', 'SENTINELS', SENTINEL_MASTER_NAME);
          const replicas = await cli(port, 'SENTINEL', 'REPLICAS', SENTINEL_MASTER_NAME);
          if ((others.match(/^name$/gm) ?? []).length < 2 || !replicas.includes(String(replica.port))) return undefined;
        }
        return true;
      },
      SETTLE_TIMEOUT_MS,
      'three Sentinels that know each other and the replica',
    ).catch(async (error: unknown) => {
      // What each one knew, for the next time this happens.
      const views = await Promise.all(
        sentinelPorts.map(async (port) => {
          const others = await cli(port, 'SENTINEL', 'SENTINELS', SENTINEL_MASTER_NAME).catch((e: unknown) => String(e));
          const replicas = await cli(port, 'SENTINEL', 'REPLICAS', SENTINEL_MASTER_NAME).catch((e: unknown) => String(e));
          return `Sentinel ${port} knows ${(others.match(/^name$/gm) ?? []).length} others; replicas: ${replicas.replaceAll('\n', ' ')}`;
        }),
      );
      throw new Error(`${String(error)}\n${views.join('\n')}`);
    });
  } catch (error) {
    await stop();
    throw error;
  }

  const masterPort = async (): Promise<number> => {
    const answers = await Promise.all(
      sentinelPorts.map((port) => cli(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME).catch(() => '')),
    );
    const port = Number(answers[0]!.split('\n')[1]);
    if (!Number.isInteger(port) || answers.some((answer) => Number(answer.split('\n')[1]) !== port))
      throw new Error(`The Sentinels disagree on the master: ${JSON.stringify(answers)}`);
    return port;
  };
  const otherNode = (port: number): number => {
    const other = [...nodes.keys()].find((p) => p !== port);
    if (other === undefined) throw new Error('No other data node');
    return other;
  };
  /** Until every Sentinel names `to` and `to` is a master (`since`: when the failover began). */
  const promoted = async (from: number, to: number, since: number): Promise<Promotion> => {
    await eventually(
      async () => {
        const named = await masterPort().catch(() => undefined);
        const role = await cli(to, 'ROLE').catch(() => '');
        return named === to && role.startsWith('master') ? true : undefined;
      },
      SETTLE_TIMEOUT_MS,
      `the Sentinels to promote ${to} in place of ${from}`,
    );
    return { from, to, promotedAfterMs: Date.now() - since };
  };
  const processId = async (port: number) => Number(/process_id:(\d+)/.exec(await cli(port, 'INFO', 'server'))![1]);

  return {
    url: `redis+sentinel://${sentinelPorts.map((port) => `127.0.0.1:${port}`).join(',')}/${SENTINEL_MASTER_NAME}`,
    sentinelPorts,
    masterPort,
    node(port) {
      const node = nodes.get(port);
      if (node === undefined) throw new Error(`No data node on port ${port}`);
      return node;
    },
    replicaPort: async () => otherNode(await masterPort()),
    async failover() {
      const from = await masterPort();
      const to = otherNode(from);
      await replicaInSync(to);
      const startedAt = Date.now();
      const answer = await cli(sentinelPorts[0]!, 'SENTINEL', 'FAILOVER', SENTINEL_MASTER_NAME);
      if (answer !== 'OK') throw new Error(`SENTINEL FAILOVER answered ${answer}`);
      const promotion = await promoted(from, to, startedAt);
      await replicaInSync(from);
      return { ...promotion, oldMasterConvertedAfterMs: Date.now() - startedAt };
    },
    async kill9Master() {
      const from = await masterPort();
      const killedAt = Date.now();
      await nodes.get(from)!.kill9();
      return promoted(from, otherNode(from), killedAt);
    },
    async loseWritesInFailover(writes) {
      const from = await masterPort();
      const to = otherNode(from);
      await replicaInSync(to);
      const replicaPid = await processId(to);
      process.kill(replicaPid, 'SIGSTOP');
      let killedAt: number;
      try {
        // Cut the link, so nothing of `writes` is on its way to the replica either.
        await cli(from, 'CLIENT', 'KILL', 'TYPE', 'replica');
        await writes();
        killedAt = Date.now();
        await nodes.get(from)!.kill9();
      } finally {
        process.kill(replicaPid, 'SIGCONT');
      }
      return promoted(from, to, killedAt);
    },
    stop,
  };
}
