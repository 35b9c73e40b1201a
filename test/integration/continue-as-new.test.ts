/**
 * Bounded history without losing anything (docs/design.md, "Continue-as-new"): continue-as-new when
 * Temporal suggests it and after `policy.maxCyclesPerRun` cycles, carrying generation, pending
 * forced refresh and the minimum interval; and generations that keep increasing across remove and
 * register again.
 *
 * The suggestion comes from the server's history-length threshold, so this file starts its own
 * dev server with `limit.historyCount.suggestContinueAsNew` lowered.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTemporalDevServer, type TemporalDevServer } from '../../dev/temporal-dev-server.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { refreshRequestsStream, tokenKey } from '../../shared/redis-layout.js';
import { refreshRequestProof } from 'token-lifecycle/contract';
import { forceRefreshSignal, workflowIdFor, type ForceRefreshRequest } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { storedToken as storedTokenIn, tokenWithGenerationAbove as tokenWithGenerationAboveIn } from '../support/failure-scenarios.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { issuedTokenMetadata, tokenRequests } from '../support/workflow-history.js';

const SECRET = 'continue-as-new-secret';
/** History events after which this server suggests continue-as-new (the default is thousands). */
const SUGGEST_CONTINUE_AS_NEW_AT = 60;

let temporal: TemporalDevServer;
let iam: IamEmulator;
let stack: TokenStack;

beforeAll(async () => {
  [temporal, iam] = await Promise.all([
    startTemporalDevServer({ uiPort: false, dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': SUGGEST_CONTINUE_AS_NEW_AT } }),
    startIamEmulator({
      tokenLifetimeSeconds: 30,
      clients: ['signalled', 'cycles', 'again'].map((clientId) => ({ clientId, clientSecret: SECRET })),
    }),
  ]);
  stack = await startTokenStack({ env: { SECRET }, temporalAddress: temporal.address });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
  await temporal?.stop();
});

function registration(clientId: string, policy: ClientRegistration['policy']): ClientRegistration {
  return { clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:SECRET', policy };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

const storedToken = (clientId: string) => storedTokenIn(stack.redis, clientId);
const tokenWithGenerationAbove = (clientId: string, generation: number, timeoutMs = 20_000) =>
  tokenWithGenerationAboveIn(stack.redis, clientId, generation, timeoutMs);

const issued = (clientId: string) => iam.requestsFor(clientId).filter((r) => r.outcome === 'issued');

interface Run {
  runId: string;
  forceRefreshReasons: string[];
  tokenRequests: number;
  /** When each successful token request of the run left the worker (its activity's result). */
  tokenRequestsStartedAt: number[];
  /** The generation handed over by continue-as-new (absent in the first run). */
  carriedGeneration: number | undefined;
  continuedAs: string | undefined;
}

/** One run of a workflow, read from its history. */
async function readRun(client: Client, workflowId: string, runId: string): Promise<Run> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const events = history.events ?? [];
  const input = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const started = input && defaultPayloadConverter.fromPayload<{ carried?: { generation: number } }>(input);
  return {
    runId,
    forceRefreshReasons: events.flatMap((event) => {
      const signal = event.workflowExecutionSignaledEventAttributes;
      if (signal?.signalName !== 'forceRefresh') return [];
      return [defaultPayloadConverter.fromPayload<ForceRefreshRequest>(signal.input!.payloads![0] as Payload).reason ?? ''];
    }),
    tokenRequests: tokenRequests(events).length,
    tokenRequestsStartedAt: issuedTokenMetadata(events).map((token) => token.requestStartedAt),
    carriedGeneration: started?.carried?.generation,
    continuedAs: events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined,
  };
}

/** Every run of a workflow ID from `firstRunId`, following each continue-as-new to the next. */
async function runsFrom(client: Client, workflowId: string, firstRunId: string): Promise<Run[]> {
  const runs = [await readRun(client, workflowId, firstRunId)];
  while (runs.at(-1)!.continuedAs !== undefined) runs.push(await readRun(client, workflowId, runs.at(-1)!.continuedAs!));
  return runs;
}

test('continue-as-new suggested by the server while signals arrive: no signal lost, the generation and the minimum interval continue', async () => {
  const clientId = 'signalled';
  const minIntervalMs = 1_500;
  await stack.admin.register(registration(clientId, { minForcedRefreshIntervalMs: minIntervalMs }));
  const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
  const firstRunId = (await handle.describe()).runId;
  await tokenWithGenerationAbove(clientId, 0);

  // For 8 s, every 60 ms, a refresh request naming the token Redis holds: alternately a signal
  // and a refresh-requests stream entry (which the worker turns into a signal).
  const sent: string[] = [];
  const until = Date.now() + 8_000;
  let lastNamed = { generation: 0, fingerprint: '' };
  for (let i = 0; Date.now() < until; i++) {
    const token = (await storedToken(clientId))!;
    lastNamed = { generation: Number(token.generation), fingerprint: token.fingerprint! };
    const reason = `request ${i}`;
    sent.push(reason);
    if (i % 2 === 0) await handle.signal(forceRefreshSignal, { rejectedFingerprint: token.fingerprint!, reason });
    else
      await stack.redis.xadd(
        refreshRequestsStream('oauth:'),
        'MAXLEN',
        '~',
        '10000',
        '*',
        'clientId',
        clientId,
        'rejectedFingerprint',
        token.fingerprint!,
        'reason',
        reason,
        'proof',
        refreshRequestProof(token.access_token!, clientId, token.fingerprint),
      );
    await sleep(60);
  }
  // The last request named a current token: it is answered, even if a continue-as-new came between.
  const final = await tokenWithGenerationAbove(clientId, lastNamed.generation, minIntervalMs + 10_000);
  await eventually(async () => ((await stack.redis.xlen(refreshRequestsStream('oauth:'))) === 0 ? true : undefined));
  await sleep(500);

  const runs = await runsFrom(stack.client, workflowIdFor(clientId), firstRunId);
  expect(runs.length).toBeGreaterThanOrEqual(3);
  // Every request reached a run, exactly once.
  const received = runs.flatMap((run) => run.forceRefreshReasons);
  // Every signal reached a run exactly once; so did every stream entry, except those the worker
  // read after the token they name was replaced, which it drops as stale (docs/design.md, "The
  // forced-refresh path"): none twice, none unknown.
  expect(new Set(received).size).toBe(received.length);
  expect(received.filter((reason) => !sent.includes(reason))).toEqual([]);
  const signalled = sent.filter((_, i) => i % 2 === 0);
  expect(signalled.filter((reason) => !received.includes(reason))).toEqual([]);
  // Generations continue across runs: each run starts from the last run's generation, and every
  // token issued has the next one.
  const tokens = issued(clientId);
  expect(Number(final.generation)).toBeGreaterThanOrEqual(4);
  expect((await stack.admin.status(clientId)).generation).toBe(tokens.length);
  expect(Number((await storedToken(clientId))!.generation)).toBe(tokens.length);
  for (let i = 1; i < runs.length; i++) expect(runs[i]!.carriedGeneration).toBeGreaterThanOrEqual(runs[i - 1]!.carriedGeneration ?? 1);
  // The minimum interval holds across runs (it is carried too): no two requests left the worker
  // closer than it. (Their arrival times at the IAM also carry each request's own transit time.)
  const startedAt = runs.flatMap((run) => run.tokenRequestsStartedAt);
  expect(startedAt).toHaveLength(tokens.length);
  const gaps = startedAt.slice(1).map((at, i) => at - startedAt[i]!);
  expect(Math.min(...gaps)).toBeGreaterThanOrEqual(minIntervalMs);
  const arrivalGaps = tokens.slice(1).map((token, i) => token.at - tokens[i]!.at);
  console.log(
    `continue-as-new under signals: ${sent.length} requests, ${runs.length} runs, ${tokens.length} token requests, smallest gap ${Math.min(...gaps)} ms between sends, ${Math.min(...arrivalGaps)} ms between arrivals`,
  );
});

test('continue-as-new after maxCyclesPerRun cycles: the run changes, the generation continues', async () => {
  const clientId = 'cycles';
  iam.setTokenLifetime(2);
  try {
    await stack.admin.register(registration(clientId, { maxCyclesPerRun: 2 }));
    const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
    const firstRunId = (await handle.describe()).runId;
    await tokenWithGenerationAbove(clientId, 5, 30_000);
    const currentRunId = (await handle.describe()).runId;
    expect(currentRunId).not.toBe(firstRunId);

    const runs = await runsFrom(stack.client, workflowIdFor(clientId), firstRunId);
    expect(runs.length).toBeGreaterThanOrEqual(3);
    // The chain from the first run leads to the current one (which may have moved on since).
    expect(runs.map((run) => run.runId)).toContain(currentRunId);
    // Every finished run made exactly two token requests and handed over its generation.
    for (const run of runs.slice(0, -1)) expect(run.tokenRequests).toBe(2);
    expect(runs.slice(1).map((run) => run.carriedGeneration)).toEqual(runs.slice(1).map((_, i) => 2 * (i + 1)));
    const status = await stack.admin.status(clientId);
    expect(status.generation).toBe(issued(clientId).length);
    console.log(`maxCyclesPerRun 2: ${runs.length} runs for ${issued(clientId).length} tokens`);
  } finally {
    iam.setTokenLifetime(30);
  }
});

test('generations keep increasing across remove and register again: without purge, after the token expired, with purge', async () => {
  const clientId = 'again';
  const register = () => stack.admin.register(registration(clientId, {}));
  iam.setTokenLifetime(2);
  try {
    await register();
    await tokenWithGenerationAbove(clientId, 0);
    const removed = await stack.admin.remove(clientId);
    expect(removed.state).toBe('stopped');

    // Registered again while the last token is still in Redis.
    await register();
    const afterRemove = await tokenWithGenerationAbove(clientId, removed.generation);
    expect(Number(afterRemove.generation)).toBe(removed.generation + 1);

    // Removed, and registered again only once the token key has expired.
    const removedAgain = await stack.admin.remove(clientId);
    await eventually(
      async () => ((await stack.redis.exists(tokenKey('oauth:', clientId))) === 0 ? true : undefined),
      30_000,
      'the token key to expire',
    );
    await register();
    const afterExpiry = await tokenWithGenerationAbove(clientId, removedAgain.generation);
    expect(Number(afterExpiry.generation)).toBe(removedAgain.generation + 1);

    // Removed with purge: the token is deleted at once, the numbering is not.
    const purged = await stack.admin.remove(clientId, { purge: true });
    expect(await storedToken(clientId)).toBeUndefined();
    await register();
    const afterPurge = await tokenWithGenerationAbove(clientId, 0);
    expect(Number(afterPurge.generation)).toBe(purged.generation + 1);

    // Terminated (no workflow code runs at all), then registered again.
    const beforeTerminate = await stack.admin.status(clientId);
    await stack.client.workflow.getHandle(workflowIdFor(clientId)).terminate('test');
    await stack.redis.del(tokenKey('oauth:', clientId));
    await register();
    const afterTerminate = await tokenWithGenerationAbove(clientId, 0);
    expect(Number(afterTerminate.generation)).toBeGreaterThan(beforeTerminate.generation);
  } finally {
    iam.setTokenLifetime(30);
  }
});
