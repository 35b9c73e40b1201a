/**
 * Ends what a test or benchmark left running on its task queue, so its Temporal server can stop
 * without workflows retrying against workers that are gone.
 */
import type { Client } from '@temporalio/client';

/** Terminates every running workflow of `taskQueue`; one already ended is skipped. */
export async function terminateRunning(client: Client, taskQueue: string, reason: string): Promise<void> {
  for await (const execution of client.workflow.list({ query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'` })) {
    await client.workflow
      .getHandle(execution.workflowId)
      .terminate(reason)
      .catch(() => undefined);
  }
}
