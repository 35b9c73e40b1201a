/** shared/for-each-concurrently.ts: every item once, never more than the bound in flight, no new item after a failure. */
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, test } from 'vitest';
import { forEachConcurrently } from '../../shared/for-each-concurrently.js';

const ITEMS = Array.from({ length: 25 }, (_, i) => i);

test('calls the action once per item, with at most `concurrency` in flight', async () => {
  const seen: number[] = [];
  let inFlight = 0;
  let most = 0;
  await forEachConcurrently(ITEMS, 4, async (item) => {
    most = Math.max(most, ++inFlight);
    await sleep(item % 3);
    seen.push(item);
    inFlight--;
  });
  expect(seen.toSorted((a, b) => a - b)).toEqual(ITEMS);
  expect(most).toBe(4);
});

test('takes no item after a failure, and rejects with it', async () => {
  const started: number[] = [];
  const failure = new Error('item 5 failed');
  await expect(
    forEachConcurrently(ITEMS, 3, async (item) => {
      started.push(item);
      await sleep(1);
      if (item === 5) throw failure;
    }),
  ).rejects.toBe(failure);
  // Item 5 fails while at most two others are in flight: none after them is started.
  expect(Math.max(...started)).toBeLessThanOrEqual(7);
  expect(started.length).toBeLessThan(ITEMS.length);
});

test('does nothing for no items', async () => {
  let called = false;
  await forEachConcurrently([], 8, () => Promise.resolve(void (called = true)));
  expect(called).toBe(false);
});
