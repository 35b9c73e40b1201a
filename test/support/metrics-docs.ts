/**
 * docs/deployment.md's metrics table against what `/metrics` exports: every `token_*` family and
 * every documented one must have the documented type, help text and label names, so that an alert
 * written from the docs means what the series count.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const DEPLOYMENT_MD = join(import.meta.dirname, '..', '..', 'docs', 'deployment.md');

/** One metric family: its type, `# HELP` text and the label names its series carry. */
export interface MetricFamily {
  type: string;
  help: string;
  labels: string[];
}

/** The rows of the table under docs/deployment.md's "Monitoring", by metric name. */
export function documentedMetrics(markdown = readFileSync(DEPLOYMENT_MD, 'utf8')): Map<string, MetricFamily> {
  const section = markdown.slice(markdown.indexOf('## Monitoring'));
  const documented = new Map<string, MetricFamily>();
  for (const line of section.split('\n')) {
    const cells = /^\| `([a-z_]+)` \| ([^|]+) \| ([^|]+) \| (.+) \|$/.exec(line);
    if (cells === null) continue;
    const [, name, type, labels, help] = cells;
    documented.set(name!, {
      type: type!.trim().split(' ')[0]!,
      help: help!.trim(),
      labels: [...labels!.matchAll(/`([a-zA-Z_]+)`/g)].map((label) => label[1]!).sort(),
    });
  }
  return documented;
}

/** The families of a Prometheus text exposition, histogram series (`_bucket`, …) under their family. */
export function exportedMetrics(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const family = (name: string) => {
    let found = families.get(name);
    if (found === undefined) families.set(name, (found = { type: '', help: '', labels: [] }));
    return found;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta !== null) {
      family(meta[2]!)[meta[1] === 'HELP' ? 'help' : 'type'] = meta[3]!;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+$/.exec(line);
    if (sample === null) continue;
    const base = sample[1]!.replace(/_(bucket|sum|count)$/, '');
    const name = families.get(base)?.type === 'histogram' ? base : sample[1]!;
    const labels = family(name).labels;
    for (const [, label] of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) {
      if (label !== 'le' && !labels.includes(label!)) labels.push(label!);
    }
  }
  for (const { labels } of families.values()) labels.sort();
  return families;
}

/**
 * Every difference between the docs and `/metrics`: a `token_*` family the docs omit, and for each
 * documented family that is exported, a type, help text or label set that differs. Empty when
 * they agree. `mustExport` names documented families the run made sure to produce.
 */
export function metricsDocsDifferences(text: string, mustExport: readonly string[] = []): string[] {
  const documented = documentedMetrics();
  const exported = exportedMetrics(text);
  const differences: string[] = [];
  for (const name of mustExport) if (!exported.has(name)) differences.push(`${name}: documented, not exported by this run`);
  for (const [name, family] of exported) {
    const documentation = documented.get(name);
    if (documentation === undefined) {
      if (name.startsWith('token_')) differences.push(`${name}: exported, not in docs/deployment.md`);
      continue;
    }
    for (const field of ['type', 'help', 'labels'] as const) {
      const [docs, actual] = [String(documentation[field]), String(family[field])];
      if (docs !== actual) differences.push(`${name}: ${field} is "${actual}", docs/deployment.md says "${docs}"`);
    }
  }
  return differences;
}
