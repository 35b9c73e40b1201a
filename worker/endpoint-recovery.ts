/**
 * Wakes the workflows that waited for a token endpoint once a probe closed its breaker
 * (docs/design.md, "The IAM is never hammered"): one `endpointRecovered` signal each, soonest-
 * expiring token first. The signal names the endpoint only. A workflow that is gone (removed
 * meanwhile) is skipped; a lost signal costs that client at most the rest of its wait, which the
 * breaker bounds.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from '@temporalio/worker';
import { errorMessage } from '../shared/error-message.js';
import { endpointRecoveredSignal } from '../workflows/messages.js';

/** Signals sent at once: enough to wake hundreds of clients in a moment, few enough to keep the order. */
const CONCURRENT_SIGNALS = 10;

/** Builds `AcquireTokenDeps.onEndpointRecovered` on a Temporal client. */
export function endpointRecoveryWaker(client: Client, logger: Logger): (endpoint: string, workflowIds: readonly string[]) => Promise<void> {
  return async (endpoint, workflowIds) => {
    let woken = 0;
    for (let i = 0; i < workflowIds.length; i += CONCURRENT_SIGNALS) {
      const batch = workflowIds.slice(i, i + CONCURRENT_SIGNALS);
      await Promise.all(
        batch.map(async (workflowId) => {
          try {
            await client.workflow.getHandle(workflowId).signal(endpointRecoveredSignal, { endpoint });
            woken++;
          } catch (err) {
            if (err instanceof WorkflowNotFoundError) return;
            logger.warn('Could not wake a client waiting for its endpoint', { endpoint, workflowId, error: errorMessage(err) });
          }
        }),
      );
    }
    logger.info('Endpoint recovered: woke the clients that waited for it', { endpoint, woken, waiting: workflowIds.length });
  };
}
