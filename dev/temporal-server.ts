/**
 * A real Temporal server (the production server, all services in one process) on PostgreSQL:
 * what production runs, unlike the CLI's dev server (SQLite). Built once from the pinned Go module
 * `dev/temporal-server/` (the same server version as the dev server), it
 * 1. creates the default and visibility databases on PostgreSQL and loads the module's own schema
 *    files into them (`temporal-sql-tool create-database`, `setup-schema`, `update-schema`:
 *    idempotent, so a kept database is migrated, not recreated),
 * 2. writes a config for PostgreSQL persistence and SQL visibility, every service on its own free
 *    port of 127.0.0.1 (frontend, history, matching, worker; their membership ports too),
 * 3. starts the server, registers the `default` namespace, and waits until it serves it.
 * Search attributes are left to the worker, which registers them at start
 * (worker/search-attribute-registration.ts).
 *
 * `npm run temporal-server` runs it in the foreground on the usual port 7233 with the databases
 * `temporal` and `temporal_visibility` (kept); the topology test starts one per run with databases
 * of its own, and drops them at the end.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Connection, isGrpcServiceError } from '@temporalio/client';
import { stringify } from 'yaml';
import { toProtoDuration } from '../client/temporal-internals.js';
import { exitDescription, hasExited, stopChild } from './child-process.js';
import { findFreePorts, findFreePortsInRange } from './free-port.js';

const execFileAsync = promisify(execFile);

/** Where PostgreSQL is; the defaults read libpq's variables, then 127.0.0.1:5432 as `postgres`. */
export interface PostgresLocation {
  /** @default PGHOST, else 127.0.0.1 */
  host?: string;
  /** @default PGPORT, else 5432 */
  port?: number;
  /** @default PGUSER, else postgres */
  user?: string;
  /** @default PGPASSWORD, else none (trust authentication) */
  password?: string;
}

export interface TemporalServerOptions {
  postgres?: PostgresLocation;
  /**
   * Names of the two databases: `<database>` (history, tasks, namespaces) and
   * `<database>_visibility` (workflow lists and search attributes). Named here, they are kept at the
   * end; by default they are dropped.
   * @default a name unique to this start, `temporal_<random>`, so parallel runs never share one
   */
  database?: string;
  /** The frontend's gRPC port (`TEMPORAL_ADDRESS`). @default a free port */
  port?: number;
  /** The namespace to register. @default 'default' */
  namespace?: string;
  /** History shards: fixed for the life of the databases. @default 4 */
  numHistoryShards?: number;
  /** Dynamic config values, e.g. `{ 'limit.maxIDLength': 255 }`. */
  dynamicConfig?: Record<string, unknown>;
  /** Where the server's output goes (appended across restarts). @default discarded */
  logFile?: string;
  /** @default 'warn' */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** How long a start may take until the namespace is served. @default 180_000 */
  readyTimeoutMs?: number;
}

export interface TemporalServer {
  /** `127.0.0.1:<port>`, for `TEMPORAL_ADDRESS`. */
  readonly address: string;
  /** The two databases on PostgreSQL. */
  readonly databases: { readonly main: string; readonly visibility: string };
  /** The running server's process ID, or null while it is stopped. */
  pid(): number | null;
  /** Starts it again (after {@link TemporalServer.stop} or {@link TemporalServer.kill9}) on the same ports and databases, and waits until it serves the namespace. */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after 20 s; waits until the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: nothing is flushed) and waits until the process is gone. */
  kill9(): Promise<void>;
  /**
   * Stops it, drops both databases (unless `keepDatabases`, the default for databases named in
   * {@link TemporalServerOptions.database}) and removes its config folder. Idempotent.
   */
  destroy(options?: { keepDatabases?: boolean }): Promise<void>;
}

/** What dev/temporal-server/ensure.sh built: the two commands and the module's schema files. */
export interface TemporalServerBuild {
  server: string;
  sqlTool: string;
  /** `schema/postgresql/v12` of the go.temporal.io/server module. */
  postgresSchemaDir: string;
}

/**
 * The pinned server build (built once if needed; about 5 minutes the first time). Asynchronous, so
 * a test process stays responsive while Go builds.
 */
export async function temporalServerBuild(): Promise<TemporalServerBuild> {
  // This file runs from dev/ (tsx, vitest) and from dist/dev/ (the build): find the script upwards.
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const ensure = join(dir, 'dev', 'temporal-server', 'ensure.sh');
    if (!existsSync(ensure)) continue;
    const child = spawn('bash', [ensure], { stdio: ['ignore', 'pipe', 'inherit'] });
    let folder = '';
    child.stdout.on('data', (chunk: Buffer) => (folder += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`${ensure} failed (${exitDescription(child)}): see its output above`);
    folder = folder.trim();
    return {
      server: join(folder, 'temporal-server'),
      sqlTool: join(folder, 'temporal-sql-tool'),
      postgresSchemaDir: join(folder, 'schema', 'postgresql', 'v12'),
    };
  }
  throw new Error('dev/temporal-server/ensure.sh not found: run from a checkout of the project');
}

/** Retention of closed workflows in the registered namespace. */
const RETENTION = '3 days';
/** gRPC ALREADY_EXISTS: the namespace was registered by an earlier start on the same databases. */
const GRPC_ALREADY_EXISTS = 6;

export async function startTemporalServer(options: TemporalServerOptions = {}): Promise<TemporalServer> {
  const build = await temporalServerBuild();
  const postgres = {
    host: options.postgres?.host ?? process.env.PGHOST ?? '127.0.0.1',
    port: options.postgres?.port ?? Number(process.env.PGPORT ?? 5432),
    user: options.postgres?.user ?? process.env.PGUSER ?? 'postgres',
    password: options.postgres?.password ?? process.env.PGPASSWORD ?? '',
  };
  /** Databases this start named itself are dropped at the end; ones the caller named are kept. */
  const ownDatabases = options.database === undefined;
  const main = options.database ?? `temporal_${randomBytes(5).toString('hex')}`;
  if (!/^[a-z_][a-z0-9_]{0,50}$/.test(main))
    throw new Error(`database must be a lowercase PostgreSQL identifier of at most 51 characters (got ${JSON.stringify(main)})`);
  const databases = { main, visibility: `${main}_visibility` };
  const namespace = options.namespace ?? 'default';

  const sqlTool = async (database: string, ...args: string[]) => {
    const connect = [
      '--plugin',
      'postgres12',
      '--endpoint',
      postgres.host,
      '--port',
      String(postgres.port),
      '--user',
      postgres.user,
      '--database',
      database,
    ];
    try {
      // The password through the environment: a command line is visible to every local user.
      await execFileAsync(build.sqlTool, [...connect, ...args], {
        timeout: 120_000,
        env: { ...process.env, SQL_PASSWORD: postgres.password },
      });
    } catch (err) {
      const { stderr = '', stdout = '' } = err as { stderr?: string; stdout?: string };
      throw new Error(
        `temporal-sql-tool ${args[0]} on database ${database} (PostgreSQL ${postgres.user}@${postgres.host}:${postgres.port}) failed: ${(stderr || stdout || String(err)).trim()}`,
        { cause: err },
      );
    }
  };
  // Each step leaves what exists alone, so a kept database is migrated, not recreated.
  const createDatabase = async (database: string, schema: 'temporal' | 'visibility') => {
    await sqlTool(database, 'create-database');
    await sqlTool(database, 'setup-schema', '--version', '0.0');
    await sqlTool(database, 'update-schema', '--schema-dir', join(build.postgresSchemaDir, schema, 'versioned'));
  };
  const dropDatabases = () =>
    Promise.all([databases.main, databases.visibility].map((database) => sqlTool(database, 'drop-database', '--force')));

  const dir = await mkdtemp(join(tmpdir(), 'temporal-server-'));
  let child: ChildProcess | null = null;
  try {
    await Promise.all([createDatabase(databases.main, 'temporal'), createDatabase(databases.visibility, 'visibility')]);
  } catch (err) {
    if (ownDatabases) await dropDatabases().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  const ports = await findFreePorts(5);
  // Membership ports go into a smallint column of cluster_membership.
  const membershipPorts = await findFreePortsInRange(4, 20_000, 32_767);
  const frontendPort = options.port ?? ports[4]!;
  const address = `127.0.0.1:${frontendPort}`;
  const rpc = (grpcPort: number, membershipPort: number) => ({ rpc: { grpcPort, membershipPort, bindOnIP: '127.0.0.1' } });
  const datastore = (databaseName: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: `${postgres.host}:${postgres.port}`,
      connectProtocol: 'tcp',
      user: postgres.user,
      password: postgres.password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const config = {
    log: { stdout: true, level: options.logLevel ?? 'warn' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: options.numHistoryShards ?? 4,
      datastores: { 'postgres-default': datastore(databases.main, 20), 'postgres-visibility': datastore(databases.visibility, 10) },
    },
    global: { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' } },
    services: {
      frontend: { rpc: { ...rpc(frontendPort, membershipPorts[0]!).rpc, httpPort: ports[0]! } },
      history: rpc(ports[1]!, membershipPorts[1]!),
      matching: rpc(ports[2]!, membershipPorts[2]!),
      worker: rpc(ports[3]!, membershipPorts[3]!),
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: address } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: join(dir, 'dynamicconfig.yaml'), pollInterval: '10s' },
  };
  const dynamicConfig = Object.fromEntries(
    Object.entries(options.dynamicConfig ?? {}).map(([key, value]) => [key, [{ value, constraints: {} }]]),
  );
  await mkdir(join(dir, 'config'));
  // It holds the database password.
  await writeFile(join(dir, 'config', 'production.yaml'), stringify(config), { mode: 0o600 });
  // An empty file is not a valid dynamic config; a comment-only document is.
  await writeFile(join(dir, 'dynamicconfig.yaml'), Object.keys(dynamicConfig).length === 0 ? '# none\n' : stringify(dynamicConfig));

  const readyTimeoutMs = options.readyTimeoutMs ?? 180_000;
  const start = async () => {
    if (child !== null && !hasExited(child)) return;
    const proc = spawn(build.server, ['--root', dir, '--config', 'config', '--env', 'production', '--allow-no-auth', 'start'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = options.logFile === undefined ? null : createWriteStream(options.logFile, { flags: 'a' });
    let tail = '';
    for (const stream of [proc.stdout, proc.stderr]) {
      stream.on('data', (chunk: Buffer) => {
        log?.write(chunk);
        tail = (tail + chunk.toString()).slice(-4000);
      });
    }
    child = proc;
    await waitUntilServing(address, namespace, proc, readyTimeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}\nIts last output:\n${tail}`);
    });
  };
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child !== null) await stopChild(child, { signal, graceMs: 20_000 });
  };
  process.once('exit', () => child?.kill('SIGKILL'));

  let destroyed = false;
  const server: TemporalServer = {
    address,
    databases,
    pid: () => (child === null || hasExited(child) ? null : child.pid!),
    start,
    stop: () => stopWith('SIGTERM'),
    kill9: () => stopWith('SIGKILL'),
    async destroy({ keepDatabases = !ownDatabases } = {}) {
      if (destroyed) return;
      destroyed = true;
      await stopWith('SIGTERM');
      if (!keepDatabases) await dropDatabases();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await start();
  } catch (err) {
    await server.destroy().catch(() => undefined);
    throw err;
  }
  return server;
}

/**
 * Waits until the frontend answers, registers `namespace` if it is missing, and waits until the
 * server serves it: a namespace reaches the services' namespace caches some seconds after it was
 * registered, and until then they answer "namespace not found".
 */
async function waitUntilServing(address: string, namespace: string, proc: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let registered = false;
  while (Date.now() < deadline) {
    if (hasExited(proc)) throw new Error(`Temporal server exited (${exitDescription(proc)}) before it was ready`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2000 });
      try {
        const service = connection.workflowService;
        if (!registered) {
          await service
            .registerNamespace({
              namespace,
              workflowExecutionRetentionPeriod: toProtoDuration(RETENTION),
              description: 'token-lifecycle-worker',
            })
            .catch((err: unknown) => {
              if (!(isGrpcServiceError(err) && (err.code as number) === GRPC_ALREADY_EXISTS)) throw err;
            });
          registered = true;
        }
        // Served through the namespace cache, unlike DescribeNamespace, which reads the database.
        await service.listWorkflowExecutions({ namespace, pageSize: 1 });
        await service.describeTaskQueue({ namespace, taskQueue: { name: 'temporal-server-readiness' } });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  proc.kill('SIGKILL');
  throw new Error(`Temporal server at ${address} did not serve namespace ${namespace} within ${timeoutMs} ms: ${String(lastError)}`);
}

/** `npm run temporal-server`: the server in the foreground until Ctrl-C, on kept databases. */
async function runInForeground(): Promise<void> {
  const server = await startTemporalServer({
    database: process.env.TEMPORAL_DATABASE ?? 'temporal',
    port: Number(process.env.TEMPORAL_PORT ?? 7233),
    logFile: '/dev/stdout',
    logLevel: 'info',
  });
  console.log(
    `Temporal server on ${server.address} (PostgreSQL databases ${server.databases.main}, ${server.databases.visibility}); Ctrl-C stops it`,
  );
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      void server.destroy().then(() => process.exit(0));
    });
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  runInForeground().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
