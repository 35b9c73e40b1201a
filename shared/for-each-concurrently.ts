/**
 * Runs an action over many items with a bound on how many are in flight: the fleet-wide calls of
 * the admin API and the worker, which must not all reach Temporal or Redis at once.
 */

/**
 * Calls `action` for each item, at most `concurrency` at a time: each lane takes the next item as
 * soon as its last one settled. After a failure no lane takes another item, and the promise
 * rejects with it.
 */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, action: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < items.length) {
      await action(items[next++]!).catch((err: unknown) => {
        failed = true;
        throw err;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane));
}
