/**
 * ORY Hydra v2.3.0 (dev/hydra/ensure.sh), a second real IAM for the tests: a fresh PostgreSQL
 * database per start (`hydra migrate sql up`), then `hydra serve all --dev` on free loopback
 * ports, its request log kept so a test can say which requests Hydra saw. {@link HydraServer.destroy}
 * stops it and drops the database.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild, waitUntilAnswering } from '../../dev/child-process.js';
import { findFreePorts } from '../../dev/free-port.js';

const execFileAsync = promisify(execFile);

export interface HydraOptions {
  /** Lifetime of the access tokens Hydra issues (its `ttl.access_token`). @default '1h' */
  accessTokenTtl?: string;
}

/** One request as Hydra logged it (its `http_request` and `http_response` log fields). */
export interface HydraRequest {
  method: string;
  path: string;
  status: number;
}

export interface HydraServer {
  /** The issuer: `http://127.0.0.1:<public port>` (its discovery document is under it). */
  readonly issuer: string;
  /** `<issuer>/oauth2/token`. */
  readonly tokenUrl: string;
  /** The admin API: `http://127.0.0.1:<admin port>`. */
  readonly adminUrl: string;
  /** The PostgreSQL database it stores its data in, dropped by {@link HydraServer.destroy}. */
  readonly database: string;
  /** What Hydra's introspection (its admin API, RFC 7662) says of a token. */
  introspect(token: string): Promise<Record<string, unknown>>;
  /** A request to the admin API with a JSON body; throws, with Hydra's answer, unless it is 2xx. */
  admin(method: string, path: string, body?: unknown): Promise<unknown>;
  /** The requests the public port served, in order. */
  publicRequests(): HydraRequest[];
  /** Stops Hydra and drops its database. Idempotent. */
  destroy(): Promise<void>;
}

/** The Hydra binary, built once by dev/hydra/ensure.sh (`make hydra`). */
async function hydraBinary(): Promise<string> {
  const ensure = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dev', 'hydra', 'ensure.sh');
  const { stdout } = await execFileAsync('bash', [ensure], { timeout: 900_000 });
  return stdout.trim();
}

/** libpq's variables, else 127.0.0.1:5432 as `postgres` (dev/postgresql/ensure.sh sets it up so). */
function postgres() {
  return {
    host: process.env.PGHOST ?? '127.0.0.1',
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? 'postgres',
    password: process.env.PGPASSWORD ?? '',
  };
}

async function psql(sql: string): Promise<void> {
  const pg = postgres();
  // The password through the environment: a command line is visible to every local user.
  await execFileAsync('psql', ['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    timeout: 60_000,
    env: { ...process.env, PGPASSWORD: pg.password },
  });
}

/** Starts Hydra on a database of its own and waits until its admin API says it is ready. */
export async function startHydra(options: HydraOptions = {}): Promise<HydraServer> {
  const binary = await hydraBinary();
  const pg = postgres();
  const database = `hydra_${randomBytes(5).toString('hex')}`;
  await psql(`CREATE DATABASE ${database}`);
  const dropDatabase = () => psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);

  const [publicPort, adminPort] = await findFreePorts(2);
  const issuer = `http://127.0.0.1:${publicPort}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const credentials =
    pg.password === '' ? encodeURIComponent(pg.user) : `${encodeURIComponent(pg.user)}:${encodeURIComponent(pg.password)}`;
  const env = {
    ...process.env,
    DSN: `postgres://${credentials}@${pg.host}:${pg.port}/${database}?sslmode=disable`,
    SERVE_PUBLIC_HOST: '127.0.0.1',
    SERVE_PUBLIC_PORT: String(publicPort),
    SERVE_ADMIN_HOST: '127.0.0.1',
    SERVE_ADMIN_PORT: String(adminPort),
    URLS_SELF_ISSUER: issuer,
    URLS_SELF_PUBLIC: issuer,
    SECRETS_SYSTEM: randomBytes(24).toString('hex'),
    TTL_ACCESS_TOKEN: options.accessTokenTtl ?? '1h',
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'info',
    // No telemetry: the tests talk to loopback only.
    SQA_OPT_OUT: 'true',
  };

  let child: ChildProcess | undefined;
  const publicLog: HydraRequest[] = [];
  let output = '';
  try {
    await execFileAsync(binary, ['migrate', 'sql', 'up', '-e', '--yes'], { env, timeout: 300_000 });
    child = spawn(binary, ['serve', 'all', '--dev', '--sqa-opt-out'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    const read = (chunk: Buffer) => {
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        output = `${output}${line}\n`.slice(-20_000);
        const request = publicRequestOf(line, publicPort!);
        if (request !== undefined) publicLog.push(request);
      }
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', read);
    await waitUntilAnswering([`${adminUrl}/health/ready`], { what: 'Hydra', child, output: () => output });
  } catch (err) {
    if (child !== undefined) await stopChild(child, { signal: 'SIGKILL' });
    await dropDatabase().catch(() => undefined);
    throw err;
  }

  let destroyed: Promise<void> | undefined;
  return {
    issuer,
    tokenUrl: `${issuer}/oauth2/token`,
    adminUrl,
    database,
    async admin(method, path, body) {
      const response = await fetch(`${adminUrl}${path}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`Hydra admin ${method} ${path} answered ${response.status}: ${text}`);
      return text === '' ? undefined : (JSON.parse(text) as unknown);
    },
    async introspect(token) {
      const response = await fetch(`${adminUrl}/admin/oauth2/introspect`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
      return (await response.json()) as Record<string, unknown>;
    },
    publicRequests: () => [...publicLog],
    destroy() {
      destroyed ??= (async () => {
        await stopChild(child);
        await dropDatabase();
      })();
      return destroyed;
    },
  };
}

/** A request to the public port, from a line of Hydra's JSON log; undefined for any other line. */
function publicRequestOf(line: string, publicPort: number): HydraRequest | undefined {
  let entry: { msg?: string; http_request?: { method?: string; path?: string; host?: string }; http_response?: { status?: number } };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return undefined;
  }
  const request = entry.http_request;
  const status = entry.http_response?.status;
  if (entry.msg !== 'completed handling request' || request?.method === undefined || request.path === undefined) return undefined;
  if (status === undefined || request.host !== `127.0.0.1:${publicPort}`) return undefined;
  return { method: request.method, path: request.path, status };
}
