/**
 * The worker's activities, built from their clients (Temporal samples' factory pattern), so the
 * workflow proxies them by type only: `proxyActivities<ReturnType<typeof createActivities>>()`.
 */
import { createAcquireToken, type AcquireTokenDeps } from './acquire-token.js';

export function createActivities(deps: AcquireTokenDeps) {
  const { store } = deps;
  return {
    /** Runs on the IAM task queue, under its server-side rate limit. */
    acquireToken: createAcquireToken(deps),
    /** Deletes a client's token from Redis (`stop({ purge: true })`). */
    purgeToken: async (clientId: string): Promise<void> => {
      await store.delete(clientId);
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
