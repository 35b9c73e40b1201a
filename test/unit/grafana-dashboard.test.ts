/**
 * The Grafana dashboard (deploy/grafana/token-lifecycle-dashboard.json) imports cleanly and
 * charts only metrics the worker exports: a renamed metric would otherwise leave an empty panel
 * that nobody notices until the day it was needed.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { PROJECT_METRIC_NAMES, TEMPORAL_WORKER_METRIC_NAMES } from '../../worker/metrics.js';

const DASHBOARD_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy', 'grafana', 'token-lifecycle-dashboard.json');

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  __inputs: { name: string; type: string; pluginId: string }[];
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; query: string | { query: string }; datasource?: { uid?: string } }[] };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]).filter((panel) => panel.type !== 'row');

/** PromQL words that look like metric names but are functions, aggregations or keywords. */
const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects: what remains once strings, label matchers,
 * grouping clauses, ranges, variables, numbers, function calls and keywords are taken out.
 */
function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\w+/g, ' ')
    .replace(/(?<![\w:])\d[\w.]*/g, ' '); // numbers and durations such as 0.95 or 5m
  const names = new Set<string>();
  for (const match of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)) {
    const [, word, call] = match;
    if (call === undefined && !PROMQL_WORDS.has(word!.toLowerCase())) names.add(word!);
  }
  return [...names];
}

/** Every name a query may select: each family, and a histogram's `_bucket`, `_sum` and `_count`. */
function selectableNames(lists: { counters: readonly string[]; histograms: readonly string[]; gauges: readonly string[] }): string[] {
  return [...lists.counters, ...lists.gauges, ...lists.histograms.flatMap((name) => [`${name}_bucket`, `${name}_sum`, `${name}_count`])];
}

const EXPORTED = new Set([...selectableNames(PROJECT_METRIC_NAMES), ...selectableNames(TEMPORAL_WORKER_METRIC_NAMES)]);

const queries = [
  ...panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: `panel "${panel.title}"`, expr: target.expr ?? '' }))),
  ...dashboard.templating.list.map((variable) => {
    const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
    // label_values(metric, label): the metric is the first argument.
    const labelValues = /^label_values\(\s*([^,]+),\s*\w+\s*\)$/.exec(query);
    return { where: `variable $${variable.name}`, expr: labelValues === null ? query : labelValues[1]! };
  }),
];

describe('the Grafana dashboard', () => {
  test('names its Prometheus datasource as an import input, used by every panel, query and variable', () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
      for (const target of panel.targets ?? []) expect(target.datasource?.uid, panel.title).toBe('${DS_PROMETHEUS}');
    }
    for (const variable of dashboard.templating.list) expect(variable.datasource?.uid, variable.name).toBe('${DS_PROMETHEUS}');
    expect(new Set(panels.map((panel) => panel.id)).size).toBe(panels.length);
  });

  test('every metric its queries select is one the worker exports (no dangling metric names)', () => {
    expect(queries.length).toBeGreaterThan(10);
    const dangling = queries.flatMap(({ where, expr }) =>
      metricNamesIn(expr)
        .filter((name) => !EXPORTED.has(name))
        .map((name) => `${where}: ${name}`),
    );
    expect(dangling).toEqual([]);
  });

  test('charts each of the project’s metrics and the Temporal worker metrics it lists', () => {
    const used = new Set(queries.flatMap(({ expr }) => metricNamesIn(expr)));
    const charted = (family: string) => used.has(family) || ['_bucket', '_sum', '_count'].some((suffix) => used.has(family + suffix));
    const families = [PROJECT_METRIC_NAMES, TEMPORAL_WORKER_METRIC_NAMES].flatMap((lists) => [
      ...lists.counters,
      ...lists.histograms,
      ...lists.gauges,
    ]);
    expect(families.filter((family) => !charted(family))).toEqual([]);
  });

  test('the metric name extraction finds names and skips functions, labels and keywords', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (le, outcome) (rate(token_endpoint_latency_seconds_bucket{outcome!="issued", client_id=~"$client_id"}[$__rate_interval])))',
      ),
    ).toEqual(['token_endpoint_latency_seconds_bucket']);
    expect(metricNamesIn('min(max by (client_id) (token_seconds_until_expiry)) / on (client_id) group_left up offset 5m')).toEqual([
      'token_seconds_until_expiry',
      'up',
    ]);
    expect(metricNamesIn('sum(rate(tokn_requests_total[5m]))')).toEqual(['tokn_requests_total']);
  });
});
