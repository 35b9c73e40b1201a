/**
 * The most of `times` (Unix ms, in any order) that fall into any one-second window: what an edge
 * that limits requests per second counts (e.g. the provider's 50 per second per IP).
 */
export function busiestSecond(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let start = 0, end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= 1000) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}
