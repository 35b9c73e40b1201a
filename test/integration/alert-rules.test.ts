/**
 * The shipped alert rules (deploy/helm/token-lifecycle-worker/files/alert-rules.yml) under the
 * pinned promtool: they load, each alert fires and stays quiet as test/alerts/alert-rules.test.yml
 * says, each has its runbook entry, and they query only metrics the worker exports.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { PROJECT_METRIC_NAMES, TEMPORAL_WORKER_METRIC_NAMES } from '../../worker/metrics.js';
import { promtool } from '../support/prometheus.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const RULES_FILE = join(ROOT, 'deploy', 'helm', 'token-lifecycle-worker', 'files', 'alert-rules.yml');
const UNIT_TESTS = join(ROOT, 'test', 'alerts', 'alert-rules.test.yml');
const RUNBOOK = join(ROOT, 'docs', 'runbook.md');
const RUNBOOK_URL = 'https://github.com/token-lifecycle-worker/token-lifecycle-worker/blob/main/docs/runbook.md';

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface UnitTests {
  rule_files: string[];
  tests: Array<{ name: string; alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
}

let alerts: AlertRule[];
let unitTests: UnitTests;
let scratch: string;

beforeAll(async () => {
  const rules = parse(await readFile(RULES_FILE, 'utf8')) as { groups: Array<{ rules: AlertRule[] }> };
  alerts = rules.groups.flatMap((group) => group.rules);
  unitTests = parse(await readFile(UNIT_TESTS, 'utf8')) as UnitTests;
  scratch = await mkdtemp(join(tmpdir(), 'alert-rules-'));
});

afterAll(async () => {
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

describe('the shipped alert rules', () => {
  test('promtool check rules accepts the file, with the alerts this test knows', async () => {
    const checked = await promtool(['check', 'rules', RULES_FILE]);
    expect(checked.output).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(checked.code).toBe(0);
    expect(alerts.map((rule) => rule.alert).sort()).toEqual([
      'TokenCredentialsRejected',
      'TokenEndpointBreakerOpen',
      'TokenExpiringWithoutRenewal',
      'TokenLoginBudgetSpent',
      'TokenLostTokensRewritten',
      'TokenRefreshRequestsRefused',
      'TokenRenewalOverdue',
      'TokenWorkerNotPolling',
    ]);
  });

  test('promtool test rules passes test/alerts/alert-rules.test.yml', async () => {
    const run = await promtool(['test', 'rules', UNIT_TESTS]);
    expect(run.output).toContain('SUCCESS');
    expect(run.code).toBe(0);
  });

  test('the unit tests make every alert fire once at least, and stay quiet once at least', () => {
    const checks = unitTests.tests.flatMap((unitTest) => unitTest.alert_rule_test ?? []);
    for (const { alert } of alerts) {
      const own = checks.filter((check) => check.alertname === alert);
      expect(
        own.some((check) => check.exp_alerts.length > 0),
        `${alert} fires in a unit test`,
      ).toBe(true);
      expect(
        own.some((check) => check.exp_alerts.length === 0),
        `${alert} stays quiet in a unit test`,
      ).toBe(true);
    }
  });

  test('promtool test rules fails when an expectation is wrong, so the passing run means something', async () => {
    // The same tests with every firing expectation emptied: each would then have to stay quiet.
    const broken: UnitTests = {
      ...unitTests,
      rule_files: [join(scratch, 'alert-rules.yml')],
      tests: unitTests.tests.map((unitTest) => ({
        ...unitTest,
        alert_rule_test: unitTest.alert_rule_test?.map((check) => ({ ...check, exp_alerts: [] })),
      })),
    };
    await copyFile(RULES_FILE, join(scratch, 'alert-rules.yml'));
    await writeFile(join(scratch, 'broken.test.yml'), stringify(broken));
    const run = await promtool(['test', 'rules', join(scratch, 'broken.test.yml')]);
    expect(run.code).not.toBe(0);
    for (const { alert } of alerts) expect(run.output).toContain(`alertname: ${alert}`);
  });

  test('every alert has a severity, a summary, a description and a runbook entry', async () => {
    const runbook = await readFile(RUNBOOK, 'utf8');
    // GitHub's anchor of a heading that is one word: the word in lower case.
    const anchors = new Set([...runbook.matchAll(/^#{2,3} (\w+)$/gm)].map((heading) => heading[1]!.toLowerCase()));
    for (const rule of alerts) {
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      expect(rule.annotations?.runbook_url, rule.alert).toBe(`${RUNBOOK_URL}#${rule.alert.toLowerCase()}`);
      expect(anchors, `docs/runbook.md has a heading ${rule.alert}`).toContain(rule.alert.toLowerCase());
    }
  });

  test('every metric the rules query is one the worker exports', () => {
    const exported = new Set<string>([
      ...PROJECT_METRIC_NAMES.counters,
      ...PROJECT_METRIC_NAMES.gauges,
      ...TEMPORAL_WORKER_METRIC_NAMES.gauges,
      ...TEMPORAL_WORKER_METRIC_NAMES.counters,
    ]);
    const queried = new Set(alerts.flatMap((rule) => [...rule.expr.matchAll(/\b(token_[a-z_]+|temporal_[a-z_]+)\b/g)].map((m) => m[1]!)));
    expect(queried.size).toBeGreaterThan(0);
    expect([...queried].filter((name) => !exported.has(name))).toEqual([]);
  });
});
