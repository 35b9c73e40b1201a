/**
 * A real Redis Cluster for integration tests: N masters on free ports of 127.0.0.1, no replicas.
 *
 * Always stop it in `afterAll`, so it is cleaned up even when a test fails:
 *
 * ```ts
 * let redisCluster: RedisCluster;
 * beforeAll(async () => { redisCluster = await startRedisCluster({ nodes: 3 }); });
 * afterAll(async () => { await redisCluster?.stop(); });
 * ```
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { findFreePorts } from '../../dev/free-port.js';
import { redisCli, REDIS_CLI_BIN, startRedisServer, type RedisServer } from './redis-server.js';

const execFileAsync = promisify(execFile);

/** How long the nodes may take to agree that every slot is served. */
const CLUSTER_READY_TIMEOUT_MS = 15_000;

/** A running Redis Cluster owned by a test. */
export interface RedisCluster {
  /** The masters, as ioredis `Cluster` startup nodes. */
  readonly nodes: { host: string; port: number }[];
  /** Stops every node (SIGTERM, waiting for exit) and removes their directories. */
  stop(): Promise<void>;
}

/** Options of {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /** Number of masters; Redis Cluster needs at least 3. @default 3 */
  nodes?: number;
}

/** Starts the nodes, joins them with `redis-cli --cluster create`, and resolves once every node says `cluster_state:ok`. */
export async function startRedisCluster({ nodes: nodeCount = 3 }: RedisClusterOptions = {}): Promise<RedisCluster> {
  // Each node needs a client port and a cluster-bus port. The bus would default to port + 10000,
  // which may be taken or above 65535, so both come from the kernel.
  const ports = await findFreePorts(nodeCount * 2);
  const servers: RedisServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((server) => server.stop()));
  };

  try {
    for (let index = 0; index < nodeCount; index++) {
      servers.push(
        await startRedisServer({
          port: ports[index * 2]!,
          extraArgs: [
            '--cluster-enabled',
            'yes',
            '--cluster-port',
            String(ports[index * 2 + 1]),
            // Relative to the node's own --dir, so nodes never share a config file.
            '--cluster-config-file',
            `nodes-${index}.conf`,
          ],
        }),
      );
    }
    await execFileAsync(REDIS_CLI_BIN, [
      '--cluster',
      'create',
      ...servers.map((server) => `127.0.0.1:${server.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    await waitUntilClusterStateOk(servers.map((server) => server.port));
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    nodes: servers.map((server) => ({ host: '127.0.0.1', port: server.port })),
    stop,
  };
}

async function waitUntilClusterStateOk(ports: number[]): Promise<void> {
  const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
  for (;;) {
    const infos = await Promise.all(ports.map((port) => redisCli(port, 'CLUSTER', 'INFO')));
    if (infos.every((info) => /^cluster_state:ok\r?$/m.test(info))) return;
    if (Date.now() > deadline) {
      throw new Error(`Redis Cluster on ports ${ports.join(', ')} not ok after ${CLUSTER_READY_TIMEOUT_MS} ms:\n${infos.join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
