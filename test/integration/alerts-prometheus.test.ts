/**
 * The shipped alert rules against a real Prometheus (dev/prometheus, pinned) scraping a real worker
 * process: a client registered with a wrong secret makes TokenCredentialsRejected fire, and
 * `tokenctl reconfigure` with the right secret resolves it; the worker stopped, TokenWorkerNotPolling
 * fires.
 *
 * The rules Prometheus evaluates are the shipped file's, expressions unchanged (checked below),
 * with every `for:` shortened to 2 s so the test does not wait five minutes; scrape and evaluation
 * run every second. The client-state gauge lists the workflows every 30 s (its default), which
 * bounds how long firing and resolving may take.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { TokenAdmin } from '../../client/admin.js';
import { findFreePort } from '../../dev/free-port.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { startPrometheus, type PrometheusAlert, type PrometheusServer } from '../support/prometheus.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { terminateRunning } from '../support/terminate-running.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RULES_FILE = join(ROOT, 'deploy', 'helm', 'token-lifecycle-worker', 'files', 'alert-rules.yml');
const CLIENT = 'alerts-e2e';
const RIGHT_SECRET = 'alerts-right-secret';
const WRONG_SECRET = 'alerts-wrong-secret';
/** The client-state gauge lists every 30 s; then a scrape, an evaluation and `for: 2s`. */
const ALERT_WITHIN_MS = 90_000;

interface RulesFile {
  groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; for?: string }> }>;
}

let iam: IamEmulator;
let redisServer: RedisServer;
let worker: WorkerProcess;
let prometheus: PrometheusServer;
let connection: Connection;
let admin: TokenAdmin;
const taskQueue = `test-alerts-${randomUUID()}`;

/** The shipped rules with every `for:` at 2 s; the expressions stay as shipped. */
function withShortFor(shipped: RulesFile): RulesFile {
  return {
    groups: shipped.groups.map((group) => ({
      ...group,
      rules: group.rules.map((rule) => (rule.for === undefined ? rule : { ...rule, for: '2s' })),
    })),
  };
}

beforeAll(async () => {
  iam = await startIamEmulator({ clients: [{ clientId: CLIENT, clientSecret: RIGHT_SECRET }] });
  redisServer = await startRedisServer();
  const metricsPort = await findFreePort();
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue,
    redisUrl: redisServer.url,
    workflowBundlePath: inject('workflowBundlePath'),
    env: { METRICS_PORT: String(metricsPort), RIGHT_SECRET, WRONG_SECRET },
  });
  const shipped = parse(await readFile(RULES_FILE, 'utf8')) as RulesFile;
  prometheus = await startPrometheus({ rules: stringify(withShortFor(shipped)), targets: [`127.0.0.1:${metricsPort}`] });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  admin = new TokenAdmin(new Client({ connection }), { taskQueue });
});

afterAll(async () => {
  if (connection !== undefined) {
    const client = new Client({ connection });
    await terminateRunning(client, taskQueue, 'test finished');
    await connection.close();
  }
  await prometheus?.stop();
  await worker?.stop();
  await redisServer?.stop();
  await iam?.close();
});

function tokenctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_TASK_QUEUE: taskQueue,
    REDIS_URL: redisServer.url,
  };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'cli/tokenctl.ts', ...args],
      { cwd: ROOT, env, timeout: 60_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
      },
    );
  });
}

const firing = async (): Promise<PrometheusAlert[]> => (await prometheus.alerts()).filter((alert) => alert.state === 'firing');

describe('the shipped alert rules on a real Prometheus scraping a real worker', () => {
  test('the rules Prometheus evaluates have the shipped expressions', async () => {
    const shipped = parse(await readFile(RULES_FILE, 'utf8')) as RulesFile;
    const response = await fetch(`${prometheus.url}/api/v1/rules?type=alert`);
    const { data } = (await response.json()) as { data: { groups: Array<{ rules: Array<{ name: string; query: string }> }> } };
    const loaded = new Map(data.groups.flatMap((group) => group.rules.map((rule) => [rule.name, rule.query] as const)));
    const alerts = shipped.groups.flatMap((group) => group.rules);
    expect([...loaded.keys()].sort()).toEqual(alerts.map((rule) => rule.alert).sort());
    // The rules API prints each parsed expression back: both go through the server's formatter.
    for (const rule of alerts) expect(await formatted(loaded.get(rule.alert)!)).toBe(await formatted(rule.expr));
  });

  test(
    'a client with a wrong secret makes TokenCredentialsRejected fire, and reconfigure with the right one resolves it',
    async () => {
      await admin.register({
        clientId: CLIENT,
        tokenUrl: iam.tokenUrl(),
        authMethod: 'client_secret_basic',
        secretRef: 'env:WRONG_SECRET',
      });

      const fired = await eventually(
        async () => {
          const alerts = await firing();
          return alerts.some((alert) => alert.labels.alertname === 'TokenCredentialsRejected') ? alerts : undefined;
        },
        ALERT_WITHIN_MS,
        'TokenCredentialsRejected firing',
      );
      // That alert alone, for that client: a parked client pages once, not also for its token.
      expect(fired.map((alert) => alert.labels)).toEqual([
        { alertname: 'TokenCredentialsRejected', client_id: CLIENT, severity: 'critical' },
      ]);
      expect(fired[0]!.annotations.summary).toBe(`Client ${CLIENT} is parked in credentials_rejected`);
      expect(fired[0]!.annotations.runbook_url).toMatch(/\/docs\/runbook\.md#tokencredentialsrejected$/);
      expect((await admin.status(CLIENT)).state).toBe('credentials_rejected');

      const reconfigured = await tokenctl(['reconfigure', CLIENT, '--secret', 'env:RIGHT_SECRET']);
      expect(reconfigured).toMatchObject({ code: 0, stderr: '' });
      await eventually(
        async () => ((await prometheus.alerts()).length === 0 ? true : undefined),
        ALERT_WITHIN_MS,
        'no alert pending or firing after reconfigure',
      );
      // Resolved because the client is active now, not because its series went away.
      expect(await prometheus.query(`max by (client_id, state) (token_client_state{client_id="${CLIENT}"})`)).toEqual(
        expect.arrayContaining([
          { metric: { client_id: CLIENT, state: 'active' }, value: 1 },
          { metric: { client_id: CLIENT, state: 'credentials_rejected' }, value: 0 },
        ]),
      );
      expect(iam.requestsFor(CLIENT).map((entry) => entry.outcome)).toEqual(['unauthorized_client', 'issued']);
      // Two listings of the workflows (up to 30 s each) and a reconfigure: past vitest's default 60 s.
    },
    4 * ALERT_WITHIN_MS,
  );

  test('with the worker gone, TokenWorkerNotPolling fires, and nothing else', async () => {
    // While it runs, both of its task queues have pollers under the labels the rule sums by.
    const pollers = await prometheus.query('sum by (task_queue) (temporal_num_pollers{poller_type=~"workflow_task|activity_task"})');
    expect(new Set(pollers.map((sample) => sample.metric.task_queue))).toEqual(new Set([taskQueue, `${taskQueue}-iam`]));
    for (const sample of pollers) expect(sample.value).toBeGreaterThan(0);

    expect(await worker.stop()).toBe('code 0');
    const fired = await eventually(
      async () => {
        const alerts = await firing();
        return alerts.length > 0 ? alerts : undefined;
      },
      ALERT_WITHIN_MS,
      'an alert firing once the worker is gone',
    );
    expect(fired.map((alert) => alert.labels)).toEqual([{ alertname: 'TokenWorkerNotPolling', severity: 'critical' }]);
    expect(fired[0]!.annotations.summary).toBe('No token lifecycle worker is polling Temporal');
  });
});

/** An expression as the server's formatter prints it (`/api/v1/format_query`). */
async function formatted(expr: string): Promise<string> {
  const response = await fetch(`${prometheus.url}/api/v1/format_query?query=${encodeURIComponent(expr)}`);
  const body = (await response.json()) as { data: string };
  return body.data;
}
