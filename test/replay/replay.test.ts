/**
 * Determinism guard: the histories recorded from real runs (`test/fixtures/histories/*.json`,
 * written by `npx tsx test/support/record-histories.ts`) are replayed against the current workflow
 * code. Workflows in production sleep for minutes between tasks and are replayed by whichever
 * worker picks them up next; a change that makes the code issue different commands for the same
 * history (a reordered activity, a new timer) would stall every running workflow with a
 * nondeterminism error. Such a change must be made behind `patched()`, or fail here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import proto from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker, type ReplayResult } from '@temporalio/worker';
import { beforeAll, describe, expect, inject, test } from 'vitest';

const HISTORIES_DIR = join(import.meta.dirname, '..', 'fixtures', 'histories');
const { History } = proto.temporal.api.history.v1;
const { EventType } = proto.temporal.api.enums.v1;

/** The fixtures, by name; each is a `History` in protobuf JSON (`History.toJSON()`). */
const fixtures = readdirSync(HISTORIES_DIR)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => ({
    name: basename(file, '.json'),
    json: JSON.parse(readFileSync(join(HISTORIES_DIR, file), 'utf8')) as Record<string, unknown>,
  }));

/** `History.fromObject` gives Long event IDs, which the replayer takes as they are. */
const historyOf = (json: Record<string, unknown>) => History.fromObject(json);

const replayOptions = () => ({ workflowBundle: { codePath: inject('workflowBundlePath') } });

beforeAll(() => {
  try {
    // Replay logs every activation at INFO; only problems matter here.
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // Another file in this process installed it already.
  }
});

test('the recorded scenarios are all there', () => {
  expect(fixtures.map((f) => f.name)).toEqual(
    expect.arrayContaining([
      'renewals',
      'forced-refresh',
      'rate-limited-backoff',
      'server-error-backoff',
      'credentials-rejected-reconfigure',
      'credentials-rejected-resume',
      'stop',
      'continue-as-new-first-run',
      'continue-as-new-next-run',
      'issuer-reconfigure',
      'many-cycles',
      'renewals-lean-cycles',
      'forced-refresh-lean-cycles',
      'renewals-active-without-times',
      'rate-limited-backoff-active-without-times',
      'forced-refresh-during-attempt',
      'forced-refresh-during-attempt-outlives-attempt',
      'renewals-local-renewals',
      'forced-refresh-local-renewals',
    ]),
  );
});

describe('every recorded history replays on the current workflow code without nondeterminism', () => {
  const results = new Map<string, ReplayResult>();

  beforeAll(async () => {
    const histories: HistoryAndWorkflowId[] = fixtures.map((f) => ({ workflowId: f.name, history: historyOf(f.json) }));
    for await (const result of Worker.runReplayHistories(replayOptions(), histories)) results.set(result.workflowId, result);
  });

  test.each(fixtures.map((f) => f.name))('%s', (name) => {
    const result = results.get(name);
    expect(result, `no replay result for ${name}`).toBeDefined();
    expect(result!.error, `${name}: ${String(result!.error)}`).toBeUndefined();
  });
});

describe('every recorded history replays on the traced bundle too: turning tracing on needs no patch (docs/design.md, "Traces")', () => {
  const results = new Map<string, ReplayResult>();

  beforeAll(async () => {
    const histories: HistoryAndWorkflowId[] = fixtures.map((f) => ({ workflowId: f.name, history: historyOf(f.json) }));
    const options = {
      workflowBundle: { codePath: inject('tracedWorkflowBundlePath') },
      // The interceptors' sink: its calls are not made during replay, but the worker wants it declared.
      sinks: { exporter: { export: { fn: () => undefined } } },
    };
    for await (const result of Worker.runReplayHistories(options, histories)) results.set(result.workflowId, result);
  });

  test.each(fixtures.map((f) => f.name))('%s', (name) => {
    const result = results.get(name);
    expect(result, `no replay result for ${name}`).toBeDefined();
    expect(result!.error, `${name}: ${String(result!.error)}`).toBeUndefined();
  });
});

test('a history the code would not produce fails the replay (the guard can fail)', async () => {
  const renewals = fixtures.find((f) => f.name === 'renewals');
  expect(renewals).toBeDefined();
  const history = historyOf(renewals!.json);
  const scheduled = history.events.filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
  expect(scheduled.length).toBeGreaterThan(1);
  // As if an older version of the workflow had called another activity at this point.
  scheduled.at(-1)!.activityTaskScheduledEventAttributes!.activityType!.name = 'someOtherActivity';
  await expect(Worker.runReplayHistory(replayOptions(), history, 'tampered-renewals')).rejects.toThrow(/nondetermin/i);
});
