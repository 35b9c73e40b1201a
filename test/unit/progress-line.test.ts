/** The progress line of `tokenctl apply` (cli/progress-line.ts): on a terminal only, rewritten in place, erased at the end. */
import { expect, test } from 'vitest';
import { progressLine } from '../../cli/progress-line.js';

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; written: string[] } {
  const written: string[] = [];
  const stream = { isTTY, write: (text: string) => written.push(text) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, written };
}

test('on a terminal: the line is rewritten with \\r, the last count always shown, and erased at the end', () => {
  const { stream, written } = fakeStream(true);
  const progress = progressLine('applied', { stream });
  for (let done = 1; done <= 1000; done++) progress.update(done, 1000);
  progress.end();
  expect(written[0]).toBe('\rapplied 1/1000');
  // Redrawn at most every 100 ms, not once per client; the final count is never skipped.
  expect(written.length).toBeLessThan(1000);
  expect(written.at(-2)).toBe('\rapplied 1000/1000');
  expect(written.at(-1)).toBe('\r\x1b[2K');
});

test('off a terminal, or quiet (beside --json), nothing is written', () => {
  for (const [isTTY, quiet] of [
    [false, false],
    [true, true],
  ] as const) {
    const { stream, written } = fakeStream(isTTY);
    const progress = progressLine('applied', { stream, quiet });
    progress.update(1, 2);
    progress.update(2, 2);
    progress.end();
    expect(written).toEqual([]);
  }
});
