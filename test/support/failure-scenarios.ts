/**
 * Helpers of the failure-semantics tests: reading the IAM emulator's request log as timings, and
 * waiting for what a token workflow shows.
 */
import type { Redis } from 'ioredis';
import { tokenKey } from '../../shared/redis-layout.js';
import type { RequestLogEntry } from '../../dev/iam-emulator/emulator.js';
import type { TokenStatus } from '../../workflows/messages.js';
import { eventually, type TokenStack } from './token-stack.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The stored token hash of `clientId`, or undefined when Redis holds none. */
export async function storedToken(redis: Redis, clientId: string): Promise<Record<string, string> | undefined> {
  const hash = await redis.hgetall(tokenKey('oauth:', clientId));
  return Object.keys(hash).length === 0 ? undefined : hash;
}

/** Waits until Redis holds a token of `clientId` with a generation above `generation`. */
export async function tokenWithGenerationAbove(
  redis: Redis,
  clientId: string,
  generation: number,
  timeoutMs = 30_000,
): Promise<Record<string, string>> {
  return eventually(
    async () => {
      const token = await storedToken(redis, clientId);
      return token !== undefined && Number(token.generation) > generation ? token : undefined;
    },
    timeoutMs,
    `${clientId} generation > ${generation}`,
  );
}

/** Waits until the workflow's `status` query satisfies `predicate`, and returns that status. */
export async function statusWhere(
  stack: TokenStack,
  clientId: string,
  predicate: (status: TokenStatus) => boolean,
  timeoutMs = 30_000,
  what = 'status',
): Promise<TokenStatus> {
  let last: TokenStatus | undefined;
  try {
    return await eventually(
      async () => {
        last = await stack.admin.status(clientId);
        return predicate(last) ? last : undefined;
      },
      timeoutMs,
      `${clientId}: ${what}`,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last status: ${JSON.stringify(last)}`, { cause: error });
  }
}

/** Milliseconds between consecutive requests of the log, in order. */
export function gapsBetween(requests: readonly RequestLogEntry[]): number[] {
  return requests.slice(1).map((entry, i) => entry.at - requests[i]!.at);
}

/**
 * Waits until the workflow itself has taken in its token of `generation` (state `active`). Redis
 * holds a token a moment before the workflow knows of it, and a forced refresh signalled in that
 * moment is coalesced into the request in flight, so tests that refresh wait for this first.
 */
export async function activeAt(stack: TokenStack, clientId: string, generation: number, timeoutMs = 30_000): Promise<TokenStatus> {
  return statusWhere(
    stack,
    clientId,
    (s) => s.state === 'active' && s.generation >= generation,
    timeoutMs,
    `active at generation ${generation}`,
  );
}
