/**
 * A workflow's description taken once its history holds every signal it has accepted.
 *
 * Temporal writes a signal that arrives while one of the run's workflow tasks is started into a
 * buffer, and moves it into the history only when that task completes, fails or times out. A read
 * of the history right after a signal (`reconfigure`, then `registration()`) can therefore miss it
 * while the worker is busy with that run, as under a large `apply`. Waiting for the task started at
 * the first look is enough: a signal accepted before it started was written at once or flushed by
 * an earlier task, and only one task of a run is started at a time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { protoTimeToMs } from './temporal-internals.js';

const { PENDING_WORKFLOW_TASK_STATE_STARTED } = proto.temporal.api.enums.v1.PendingWorkflowTaskState;

/** How often the started task is looked at again: a workflow task takes milliseconds. */
const POLL_MS = 50;
/** Temporal's default workflow task timeout, for a description that does not give the run's. */
const DEFAULT_WORKFLOW_TASK_TIMEOUT_MS = 10_000;

/**
 * Describes the workflow of `handle`, waiting while the workflow task that was started at the first
 * look is still started: at most the run's workflow task timeout (after which Temporal times the
 * task out and flushes the buffer), and not for tasks started later.
 */
export async function describeSettled(handle: WorkflowHandle): Promise<WorkflowExecutionDescription> {
  let description = await handle.describe();
  const waitedFor = startedWorkflowTask(description);
  if (waitedFor === undefined) return description;
  const timeoutMs = protoTimeToMs(description.raw.executionConfig?.defaultWorkflowTaskTimeout) ?? DEFAULT_WORKFLOW_TASK_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs + POLL_MS;
  while (Date.now() < deadline) {
    await sleep(POLL_MS);
    description = await handle.describe();
    if (startedWorkflowTask(description) !== waitedFor) break;
  }
  return description;
}

/** The started workflow task of a description (its run and start time), or undefined if none is. */
function startedWorkflowTask(description: WorkflowExecutionDescription): string | undefined {
  const task = description.raw.pendingWorkflowTask;
  if (task?.state !== PENDING_WORKFLOW_TASK_STATE_STARTED) return undefined;
  return `${description.runId}@${protoTimeToMs(task.startedTime)}#${task.attempt}`;
}
