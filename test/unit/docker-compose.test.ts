/**
 * docker-compose.yml and the Dockerfile, as far as they can be checked without a Docker engine:
 * `docker-compose config` must accept the file, and the resolved configuration must hold the
 * services, the demo profile, the worker's environment (README, "Settings") and the health-gated start order.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';

const execFileAsync = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const COMPOSE = process.env.DOCKER_COMPOSE_BIN ?? 'docker-compose';
const composeMissing = spawnSync(COMPOSE, ['version'], { stdio: 'ignore' }).error !== undefined;

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  profiles?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  secrets?: (string | { source: string })[];
  command?: string[] | string;
}
interface ComposeConfig {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
}

/** `docker-compose config` with only PATH and HOME from this process, plus `env`. */
async function composeConfig(args: string[] = [], env: Record<string, string> = {}): Promise<ComposeConfig> {
  const { stdout } = await execFileAsync(COMPOSE, [...args, 'config'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
  });
  return parseYaml(stdout) as ComposeConfig;
}

describe.skipIf(composeMissing)(`docker-compose.yml (skipped when ${COMPOSE} is not installed: it validates the file)`, () => {
  test('docker-compose config accepts it, with and without the demo profile', async () => {
    await expect(execFileAsync(COMPOSE, ['config', '-q'], { cwd: root })).resolves.toBeDefined();
    await expect(execFileAsync(COMPOSE, ['--profile', 'demo', 'config', '-q'], { cwd: root })).resolves.toBeDefined();
  });

  test('runs PostgreSQL-backed Temporal, its UI, Redis and the worker; the emulator and demo registrations only in the demo profile', async () => {
    const { services } = await composeConfig(['--profile', 'demo']);
    expect(Object.keys(services).sort()).toEqual([
      'iam-emulator',
      'postgresql',
      'redis',
      'register-demo-clients',
      'temporal',
      'temporal-ui',
      'worker',
    ]);
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 'redis', 'worker']) expect(services[name]!.profiles, name).toBeUndefined();
    for (const name of ['iam-emulator', 'register-demo-clients']) expect(services[name]!.profiles, name).toEqual(['demo']);

    expect(services.temporal!.image).toMatch(/^temporalio\/auto-setup:\d+\.\d+\.\d+$/);
    expect(services.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services.temporal!.depends_on).toEqual({ postgresql: { condition: 'service_healthy' } });
    expect(services['temporal-ui']!.image).toMatch(/^temporalio\/ui:/);
    expect(services['temporal-ui']!.environment).toMatchObject({ TEMPORAL_ADDRESS: 'temporal:7233' });
    expect(services.postgresql!.image).toMatch(/^postgres:/);
    expect(services.redis!.image).toMatch(/^redis:/);
  });

  test('the worker is built from the Dockerfile, configured by the environment of the README settings table, and holds secrets only as files', async () => {
    const { services, secrets } = await composeConfig();
    const worker = services.worker!;
    expect(worker.build).toEqual({ context: root, dockerfile: 'Dockerfile' });
    expect(worker.environment).toEqual({
      TEMPORAL_ADDRESS: 'temporal:7233',
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: 'token-lifecycle',
      REDIS_URL: 'redis://redis:6379',
      TOKEN_KEY_PREFIX: 'oauth:',
      IAM_MAX_RPS: '40',
      METRICS_PORT: '9464',
      LOG_LEVEL: 'INFO',
      LOG_FORMAT: 'json',
    });
    expect(worker.depends_on).toEqual({ temporal: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
    expect(worker.healthcheck?.test).toEqual(['CMD', 'node', 'dist/worker/healthcheck.js']);

    const mounted = (worker.secrets ?? []).map((secret) => (typeof secret === 'string' ? secret : secret.source));
    expect(mounted.sort()).toEqual(['billing-service', 'orders-service', 'shipping-service']);
    for (const name of mounted) expect(existsSync(secrets[name]!.file), secrets[name]!.file).toBe(true);
  });

  test('IAM_MAX_RPS and the secrets folder come from the caller’s environment', async () => {
    const { services, secrets } = await composeConfig([], { IAM_MAX_RPS: '12', TOKEN_SECRETS_DIR: '/etc/token-secrets' });
    expect(services.worker!.environment!.IAM_MAX_RPS).toBe('12');
    expect(secrets['orders-service']!.file).toBe('/etc/token-secrets/orders-service');
  });

  test('every health-gated dependency has a health check, and the demo registers on the worker’s task queue with file secrets', async () => {
    const { services } = await composeConfig(['--profile', 'demo']);
    for (const [name, service] of Object.entries(services)) {
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(services[dependency], `${name} depends on ${dependency}`).toBeDefined();
        if (condition === 'service_healthy') expect(services[dependency]!.healthcheck, `${dependency} (awaited by ${name})`).toBeDefined();
      }
    }
    const demo = services['register-demo-clients']!;
    expect(demo.environment!.TEMPORAL_TASK_QUEUE).toBe(services.worker!.environment!.TEMPORAL_TASK_QUEUE);
    expect(demo.depends_on).toMatchObject({ worker: { condition: 'service_healthy' }, 'iam-emulator': { condition: 'service_healthy' } });
    const script = [demo.command ?? []].flat().join('\n');
    const refs = [...script.matchAll(/--secret (\S+)/g)].map((match) => match[1]);
    expect(refs).toEqual(['file:/run/secrets/orders-service', 'file:/run/secrets/billing-service', 'file:/run/secrets/shipping-service']);
    expect(services['iam-emulator']!.command).toEqual(expect.arrayContaining(['dist/dev/iam-emulator/main.js', '--host', '0.0.0.0']));
  });
});

describe('the Dockerfile', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const instructions = dockerfile.split('\n').filter((line) => /^[A-Z]+\s/.test(line));

  test('builds on Node 24 in two stages, prebuilds the workflow bundle, and runs the build as the non-root node user', () => {
    expect(instructions.filter((line) => line.startsWith('FROM '))).toEqual([
      'FROM node:24-bookworm-slim AS build',
      'FROM node:24-bookworm-slim AS runtime',
    ]);
    expect(dockerfile).toMatch(/RUN npm ci\b/);
    expect(dockerfile).toMatch(/npm run build/);
    expect(dockerfile).toMatch(/test -s dist\/workflow-bundle\.js/);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    const runtime = instructions.slice(instructions.indexOf('FROM node:24-bookworm-slim AS runtime'));
    expect(runtime).toContain('USER node');
    expect(runtime.at(-1)).toBe('CMD ["node", "dist/worker/main.js"]');
  });

  test('its health check runs the compiled worker/healthcheck.ts', () => {
    expect(dockerfile).toMatch(/HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "dist\/worker\/healthcheck\.js"\]/);
    expect(existsSync(join(root, 'worker', 'healthcheck.ts'))).toBe(true);
  });
});
