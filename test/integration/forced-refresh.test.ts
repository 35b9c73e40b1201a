/**
 * Forced refreshes that cannot loop (docs/design.md, "One refresh at a time"): coalescing, the
 * fingerprint check, the minimum interval, the `refreshNow` update and its rejections, and the
 * `<prefix>refresh-requests` stream that the worker turns into `forceRefresh` signals. Real dev
 * server, redis-server and emulator.
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { refreshRequestsStream } from '../../shared/redis-layout.js';
import { refreshRequestProof } from 'token-lifecycle/contract';
import { REFRESH_REQUESTS_GROUP } from '../../shared/redis-layout.js';
import { forceRefreshSignal, refreshNowUpdate, stopSignal, workflowIdFor, type ForceRefreshRequest } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { TokenFailures } from '../../workflows/search-attributes.js';
import {
  activeAt,
  storedToken as storedTokenIn,
  tokenWithGenerationAbove as tokenWithGenerationAboveIn,
} from '../support/failure-scenarios.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { historyEvents, tokenRequests } from '../support/workflow-history.js';
import { TokenStore } from '../../shared/token-store.js';
import { tokenFingerprint } from '../../activities/access-token.js';

const SECRET = 'forced-refresh-secret';
/** Long enough that no scheduled renewal happens during a test: every request seen is forced. */
const LIFETIME_SECONDS = 60;
const MIN_INTERVAL_MS = 3_000;
const STREAM = refreshRequestsStream('oauth:');

let iam: IamEmulator;
let stack: TokenStack;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: LIFETIME_SECONDS,
    clients: [
      'burst',
      'refresh-now',
      'during-attempt',
      'during-local-attempt',
      'parked',
      'failing',
      'stopping',
      'restart',
      'stream-ok',
      'proof-a',
      'proof-b',
      'traceparent',
    ].map((clientId) => ({
      clientId,
      clientSecret: SECRET,
    })),
  });
  stack = await startTokenStack({
    env: { SECRET, WRONG_SECRET: 'not-the-secret' },
    // Entries left by a stopped consumer are claimed half a second later, not after 30 s.
    refreshRequests: { claimMinIdleMs: 500, blockMs: 500 },
  });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
});

function registration(clientId: string, overrides: Partial<ClientRegistration> = {}): ClientRegistration {
  return {
    clientId,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:SECRET',
    policy: { minForcedRefreshIntervalMs: MIN_INTERVAL_MS },
    ...overrides,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

const storedToken = (clientId: string) => storedTokenIn(stack.redis, clientId);
const tokenWithGenerationAbove = (clientId: string, generation: number, timeoutMs = 15_000) =>
  tokenWithGenerationAboveIn(stack.redis, clientId, generation, timeoutMs);

const issued = (clientId: string) => iam.requestsFor(clientId).filter((r) => r.outcome === 'issued');

/**
 * A stream entry as a service that holds only Redis credentials adds it (docs/design.md, "The
 * forced-refresh path"): with the origin proof made with `accessToken` when one is given.
 */
function addRefreshRequest(fields: Record<string, string>, accessToken?: string): Promise<string | null> {
  const entry = Object.entries(fields).flat();
  if (accessToken !== undefined) entry.push('proof', refreshRequestProof(accessToken, fields.clientId ?? '', fields.rejectedFingerprint));
  return stack.redis.xadd(STREAM, 'MAXLEN', '~', '10000', '*', ...entry);
}

/** The stream is drained: every entry acknowledged and deleted, nothing pending in the group. */
async function streamDrained(): Promise<void> {
  await eventually(
    async () => {
      const [length, pending] = await Promise.all([stack.redis.xlen(STREAM), stack.redis.xpending(STREAM, REFRESH_REQUESTS_GROUP)]);
      return length === 0 && Number(pending[0]) === 0 ? true : undefined;
    },
    30_000,
    'the refresh-requests stream to be drained',
  );
}

/** The `reason` of every `forceRefresh` signal in the workflow's history, in order. */
async function forceRefreshReasons(clientId: string): Promise<string[]> {
  const history = await stack.client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory();
  return (history.events ?? []).flatMap((event) => {
    const signal = event.workflowExecutionSignaledEventAttributes;
    if (signal?.signalName !== 'forceRefresh') return [];
    const request = defaultPayloadConverter.fromPayload<ForceRefreshRequest>(signal.input!.payloads![0] as Payload);
    return [request.reason ?? ''];
  });
}

/** 200 refresh requests at once naming `token` (a stored hash), half as signals and half as proven stream entries, interleaved. */
async function burst(clientId: string, token: Record<string, string>, label: string): Promise<void> {
  const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
  const fingerprint = token.fingerprint!;
  await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0
        ? handle.signal(forceRefreshSignal, { rejectedFingerprint: fingerprint, reason: `${label} signal ${i}` })
        : addRefreshRequest({ clientId, rejectedFingerprint: fingerprint, reason: `${label} stream ${i}` }, token.access_token),
    ),
  );
}

test('200 simultaneous refresh requests naming the current token send exactly one token request; another burst inside the minimum interval sends none', async () => {
  const clientId = 'burst';
  await stack.admin.register(registration(clientId));
  const first = await tokenWithGenerationAbove(clientId, 0);
  // Let the minimum interval since the first request pass, so the burst's refresh is due at once.
  await sleep(issued(clientId)[0]!.at + MIN_INTERVAL_MS + 200 - Date.now());

  await burst(clientId, first, 'first');
  const second = await tokenWithGenerationAbove(clientId, 1);
  await streamDrained();
  await sleep(500);
  expect(issued(clientId)).toHaveLength(2);
  expect(iam.requestsFor(clientId)).toHaveLength(2);
  expect(second.generation).toBe('2');

  // The second burst names the new, current token, but comes inside the minimum interval.
  const secondRequestAt = issued(clientId)[1]!.at;
  await burst(clientId, second, 'second');
  await streamDrained();
  await sleep(secondRequestAt + MIN_INTERVAL_MS - 500 - Date.now());
  expect(iam.requestsFor(clientId)).toHaveLength(2);

  // When the interval is over, the whole second burst is one refresh: it was not forgotten.
  const third = await tokenWithGenerationAbove(clientId, 2, MIN_INTERVAL_MS + 5_000);
  await sleep(1_000);
  expect(iam.requestsFor(clientId)).toHaveLength(3);
  expect(third.generation).toBe('3');
  expect(issued(clientId)[2]!.at - secondRequestAt).toBeGreaterThanOrEqual(MIN_INTERVAL_MS - 300);

  // Every signal reached the workflow, and no request twice. The second burst's stream entries
  // all did (its token stayed current until they were read); of the first burst's, those read
  // after the refresh had replaced the token they name were dropped by the worker as stale.
  const reasons = await forceRefreshReasons(clientId);
  expect(new Set(reasons).size).toBe(reasons.length);
  expect(reasons.filter((reason) => reason.includes(' signal '))).toHaveLength(200);
  expect(reasons.filter((reason) => reason.startsWith('second stream '))).toHaveLength(100);
  expect(reasons.filter((reason) => reason.startsWith('first stream ')).length).toBeLessThanOrEqual(100);
});

test('refreshNow returns the new status once the token is in Redis, coalescing concurrent calls', async () => {
  const clientId = 'refresh-now';
  await stack.admin.register(registration(clientId, { policy: { minForcedRefreshIntervalMs: 0 } }));
  await activeAt(stack, clientId, 1);
  const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));

  const statuses = await Promise.all(
    Array.from({ length: 5 }, () => handle.executeUpdate(refreshNowUpdate, { args: [{ reason: 'test' }] })),
  );
  // Calls that reached the workflow together share one request; one that arrived while that
  // request was in flight is answered by the next (its caller may have seen the token in flight).
  const generations = new Set(statuses.map((status) => status.generation));
  expect(generations.size).toBeLessThanOrEqual(2);
  for (const status of statuses) expect(status).toMatchObject({ state: 'active' });
  expect(Math.min(...generations)).toBe(2);
  const stored = await storedToken(clientId);
  expect(Number(stored?.generation)).toBe(Math.max(...generations));
  expect(issued(clientId)).toHaveLength(1 + generations.size);
});

test('a refresh asked for while a request is in flight gets a newer token than that request’s, at the minimum interval', async () => {
  const clientId = 'during-attempt';
  // From the IAM task queue, where the signal is handled while the request is out: a local
  // renewal's workflow task holds it until the request ends (the next test).
  await stack.admin.register(registration(clientId, { policy: { minForcedRefreshIntervalMs: MIN_INTERVAL_MS, localRenewals: false } }));
  await tokenWithGenerationAbove(clientId, 0);
  await signalDuringRequest(clientId, { untilHandled: true });
  await expectNewerTokenAtMinimumInterval(clientId);
});

test('a refresh asked for while a local renewal is in flight is handled after it, and still gets a newer token, at the minimum interval', async () => {
  const clientId = 'during-local-attempt';
  await stack.admin.register(registration(clientId));
  await tokenWithGenerationAbove(clientId, 0);
  await signalDuringRequest(clientId, { untilHandled: false });
  await expectNewerTokenAtMinimumInterval(clientId);
  // (A local activity's token is in Redis a moment before its marker is in the history.)
  const shapes = await eventually(
    async () => {
      const requests = tokenRequests(await historyEvents(stack.client, workflowIdFor(clientId)));
      return requests.length === 3 ? requests.map((request) => request.shape) : undefined;
    },
    30_000,
    'the third request in the history',
  );
  expect(shapes).toEqual(['queued', 'local', 'local']);
});

/**
 * Signals `forceRefresh`, holds the request it starts at the IAM, signals again while it is held
 * (with `untilHandled`, until the workflow has handled that signal), then lets the request go.
 */
async function signalDuringRequest(clientId: string, { untilHandled }: { untilHandled: boolean }): Promise<void> {
  const handle = stack.client.workflow.getHandle(workflowIdFor(clientId));
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    iam.inject({ kind: 'hold', release: new Promise<void>((r) => (release = r)), onHeld: resolve }, { clientId, times: 1 });
  });
  await handle.signal(forceRefreshSignal, { reason: 'first' });
  await held;
  await handle.signal(forceRefreshSignal, { reason: 'while in flight' });
  if (untilHandled) {
    await eventually(
      async () => ((await signalHandled(clientId, 'while in flight')) ? true : undefined),
      30_000,
      'the workflow to handle the signal sent while the request was held',
    );
    expect(issued(clientId)).toHaveLength(1);
  }
  release();
}

/**
 * The request in flight brings generation 2; it cannot answer the second signal (its sender may
 * have read that token already), so generation 3 follows, at the minimum interval.
 */
async function expectNewerTokenAtMinimumInterval(clientId: string): Promise<void> {
  expect((await tokenWithGenerationAbove(clientId, 1)).generation).toBe('2');
  expect((await tokenWithGenerationAbove(clientId, 2, MIN_INTERVAL_MS + 30_000)).generation).toBe('3');
  const [, secondRequest, thirdRequest] = issued(clientId);
  expect(thirdRequest!.at - secondRequest!.at).toBeGreaterThanOrEqual(MIN_INTERVAL_MS - 300);
}

/** Whether a workflow task completed after the `forceRefresh` signal with this reason: its handler ran. */
async function signalHandled(clientId: string, reason: string): Promise<boolean> {
  const history = await stack.client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory();
  const events = history.events ?? [];
  const signalled = events.findIndex((event) => {
    const signal = event.workflowExecutionSignaledEventAttributes;
    if (signal?.signalName !== 'forceRefresh') return false;
    return defaultPayloadConverter.fromPayload<ForceRefreshRequest>(signal.input!.payloads![0] as Payload).reason === reason;
  });
  return signalled >= 0 && events.slice(signalled).some((event) => event.workflowTaskCompletedEventAttributes != null);
}

/** The failure a rejected `refreshNow` carries: type and message. */
async function refreshNowFailure(clientId: string): Promise<ApplicationFailure> {
  const error: unknown = await stack.client.workflow
    .getHandle(workflowIdFor(clientId))
    .executeUpdate(refreshNowUpdate, { args: [{ reason: 'test' }] })
    .then(
      () => null,
      (err: unknown) => err,
    );
  expect(error).toBeInstanceOf(WorkflowUpdateFailedError);
  const cause = (error as WorkflowUpdateFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  return cause as ApplicationFailure;
}

test('refreshNow is rejected with a clear reason: rejected credentials, backing off, a failed attempt, a stop', async () => {
  // Rejected credentials: refused at once, nothing sent.
  await stack.admin.register(registration('parked', { secretRef: 'env:WRONG_SECRET' }));
  await eventually(
    async () => ((await stack.admin.status('parked')).state === 'credentials_rejected' ? true : undefined),
    20_000,
    'parked to be credentials_rejected',
  );
  const parked = await refreshNowFailure('parked');
  expect(parked.type).toBe('credentials_rejected');
  expect(parked.message).toMatch(/parked: the IAM rejected the credentials .*; fix them, then resume or reconfigure/);
  expect(iam.requestsFor('parked')).toHaveLength(1);

  // The attempt the update waits for fails: rejected with that failure's kind.
  await stack.admin.register(
    registration('failing', { policy: { minForcedRefreshIntervalMs: 0, backoff: { server_error: { baseMs: 4_000, capMs: 4_000 } } } }),
  );
  await activeAt(stack, 'failing', 1);
  iam.inject({ kind: 'status', status: 503 }, { clientId: 'failing' });
  const failed = await refreshNowFailure('failing');
  expect(failed.type).toBe('server_error');
  expect(failed.message).toMatch(/^Refresh failed: /);
  // Now backing off: refused at once, naming the reason and the time to try again.
  const backingOff = await refreshNowFailure('failing');
  expect(backingOff.type).toBe('backing_off');
  expect(backingOff.message).toMatch(/failing is backing off after server_error until \d{4}-\d\d-\d\dT/);
  expect(iam.requestsFor('failing')).toHaveLength(2);
  iam.clearFaults();

  // A stop while the update waits for the minimum interval: rejected as stopped, nothing sent.
  await stack.admin.register(registration('stopping', { policy: { minForcedRefreshIntervalMs: 10_000 } }));
  await activeAt(stack, 'stopping', 1);
  const handle = stack.client.workflow.getHandle(workflowIdFor('stopping'));
  const waiting = handle.executeUpdate(refreshNowUpdate, { args: [{ reason: 'test' }] }).then(
    () => null,
    (err: unknown) => err,
  );
  await eventually(
    async () => ((await stack.admin.status('stopping')).forcedRefreshAt !== null ? true : undefined),
    20_000,
    'the refreshNow of stopping to be pending',
  );
  await handle.signal(stopSignal, {});
  const stopped = (await waiting) as WorkflowUpdateFailedError;
  expect(stopped).toBeInstanceOf(WorkflowUpdateFailedError);
  expect(stopped.cause).toMatchObject({ type: 'stopped', message: 'stopping was stopped before the refresh' });
  expect(iam.requestsFor('stopping')).toHaveLength(1);
});

test('a stream entry for an unknown client or without a clientId is acknowledged once and not retried', async () => {
  await stack.admin.register(registration('stream-ok', { policy: { minForcedRefreshIntervalMs: 0 } }));
  const first = await tokenWithGenerationAbove('stream-ok', 0);

  await addRefreshRequest({ clientId: 'nobody-registered-this', reason: 'unknown client' });
  await addRefreshRequest({ rejectedFingerprint: first.fingerprint!, reason: 'no client id' });
  await addRefreshRequest({ clientId: 'stream-ok', rejectedFingerprint: 'NOT-A-FINGERPRINT' });
  await streamDrained();
  // Nothing left to retry: the group holds no pending entry, and none is delivered again.
  await sleep(1_500);
  const groups = (await stack.redis.xinfo('GROUPS', STREAM)) as unknown[][];
  const group = groups.map(
    (row) => Object.fromEntries(Array.from({ length: row.length / 2 }, (_, i) => [row[2 * i], row[2 * i + 1]])) as Record<string, unknown>,
  );
  expect(group).toMatchObject([{ name: REFRESH_REQUESTS_GROUP, pending: 0 }]);
  expect(await forceRefreshReasons('stream-ok')).toEqual([]);

  // The consumer is still reading: a good entry after the bad ones is signalled.
  await addRefreshRequest({ clientId: 'stream-ok', rejectedFingerprint: first.fingerprint!, reason: 'good entry' }, first.access_token);
  await tokenWithGenerationAbove('stream-ok', 1);
  expect(await forceRefreshReasons('stream-ok')).toEqual(['good entry']);
});

test('a stream entry is honoured only with a proof made with the token of the client it names: another client’s token, no proof or garbage cause no token request', async () => {
  await stack.admin.register(registration('proof-a', { policy: { minForcedRefreshIntervalMs: 0 } }));
  await stack.admin.register(registration('proof-b', { policy: { minForcedRefreshIntervalMs: 0 } }));
  const a = await tokenWithGenerationAbove('proof-a', 0);
  const b = await tokenWithGenerationAbove('proof-b', 0);

  // A consumer that can read only proof-a's token tries to force proof-b's refresh: the fingerprint
  // of b's token is public (token-updated messages), its token is not.
  await addRefreshRequest(
    { clientId: 'proof-b', rejectedFingerprint: b.fingerprint!, reason: 'proven with the token of proof-a' },
    a.access_token,
  );
  await addRefreshRequest({ clientId: 'proof-b', reason: 'proven with the token of proof-a, no fingerprint' }, a.access_token);
  await addRefreshRequest({
    clientId: 'proof-b',
    rejectedFingerprint: b.fingerprint!,
    reason: 'a proof of proof-a replayed',
    proof: refreshRequestProof(a.access_token!, 'proof-a', a.fingerprint),
  });
  await addRefreshRequest({ clientId: 'proof-b', rejectedFingerprint: b.fingerprint!, reason: 'no proof' });
  await addRefreshRequest({ clientId: 'proof-b', rejectedFingerprint: b.fingerprint!, reason: 'garbage proof', proof: 'garbage' });
  await addRefreshRequest({
    clientId: 'proof-b',
    rejectedFingerprint: b.fingerprint!,
    reason: 'the fingerprint as proof',
    proof: b.fingerprint!,
  });
  // All acknowledged (nothing pending, nothing retried), none signalled, no token requested.
  await streamDrained();
  await sleep(1_000);
  expect(await forceRefreshReasons('proof-b')).toEqual([]);
  expect(iam.requestsFor('proof-b')).toHaveLength(1);
  expect(await storedToken('proof-b')).toMatchObject({ generation: '1', fingerprint: b.fingerprint });

  // The same request proven with proof-b's own token is honoured.
  await addRefreshRequest(
    { clientId: 'proof-b', rejectedFingerprint: b.fingerprint!, reason: 'proven with the token of proof-b' },
    b.access_token,
  );
  await tokenWithGenerationAbove('proof-b', 1);
  expect(await forceRefreshReasons('proof-b')).toEqual(['proven with the token of proof-b']);
  expect(iam.requestsFor('proof-b')).toHaveLength(2);

  // A proven entry naming the token already replaced is stale: dropped without a signal.
  await addRefreshRequest({ clientId: 'proof-b', rejectedFingerprint: b.fingerprint!, reason: 'stale' }, b.access_token);
  await streamDrained();
  await sleep(500);
  expect(await forceRefreshReasons('proof-b')).toEqual(['proven with the token of proof-b']);
  expect(iam.requestsFor('proof-b')).toHaveLength(2);
  // proof-a, whose token proved nothing for proof-b, was not refreshed either.
  expect(iam.requestsFor('proof-a')).toHaveLength(1);
  expect(await forceRefreshReasons('proof-a')).toEqual([]);
});

test('stream entries left unacknowledged by a stopped worker, or added while none runs, are delivered after a restart', async () => {
  const clientId = 'restart';
  await stack.admin.register(registration(clientId, { policy: { minForcedRefreshIntervalMs: 0 } }));
  const first = await tokenWithGenerationAbove(clientId, 0);

  await stack.stopWorkers();
  await addRefreshRequest(
    { clientId, rejectedFingerprint: first.fingerprint!, reason: 'read by a worker that died 1' },
    first.access_token,
  );
  await addRefreshRequest(
    { clientId, rejectedFingerprint: first.fingerprint!, reason: 'read by a worker that died 2' },
    first.access_token,
  );
  // A worker that read these two and was killed before it acknowledged them.
  const delivered = await stack.redis.xreadgroup('GROUP', REFRESH_REQUESTS_GROUP, 'killed-worker', 'COUNT', 10, 'STREAMS', STREAM, '>');
  expect((delivered as [string, unknown[]][])[0]![1]).toHaveLength(2);
  await addRefreshRequest({ clientId, rejectedFingerprint: first.fingerprint!, reason: 'added while no worker ran' }, first.access_token);
  await sleep(300);
  expect(await forceRefreshReasons(clientId)).toEqual([]);

  await stack.startWorkers();
  await streamDrained();
  // Generous: after a restart, Temporal may first offer the workflow task to the old worker.
  await tokenWithGenerationAbove(clientId, 1, 30_000);
  // A local renewal may store the token before the reader has signalled every entry.
  const reasons = await eventually(
    async () => {
      const signalled = await forceRefreshReasons(clientId);
      return signalled.length >= 3 ? signalled : undefined;
    },
    30_000,
    'the three refresh requests signalled',
  );
  expect(reasons.sort()).toEqual(['added while no worker ran', 'read by a worker that died 1', 'read by a worker that died 2']);
  // All three named the same token: one refresh.
  await sleep(500);
  expect(issued(clientId)).toHaveLength(2);
});

test('the stream reader survives Redis restarting empty: it creates its group again and goes on reading', async () => {
  const clientId = 'stream-ok';
  const before = await stack.admin.status(clientId);
  await stack.redisServer.restart({ empty: true });

  // No group, no stream: the reader's XREADGROUP fails with NOGROUP until it creates them again.
  // No token either: an entry has nothing to be proven against, and is refused.
  await eventually(
    async () =>
      (await addRefreshRequest({ clientId, reason: 'no token to prove it with' }, 'the-lost-token').catch(() => null)) ?? undefined,
    30_000,
    'Redis to accept the entry',
  );
  await eventually(
    async () => ((await stack.redis.xlen(STREAM)) === 0 ? true : undefined),
    30_000,
    'the refused entry to be acknowledged and deleted',
  );
  // A service that still holds the token puts it back (as the lost-token check would have a new
  // one written) and proves its request with it.
  const restored = 'the-token-a-service-still-holds';
  const written = await new TokenStore(stack.redis).write({
    clientId,
    accessToken: restored,
    tokenType: 'Bearer',
    scope: '',
    generation: before.generation,
    obtainedAt: Date.now(),
    expiresAt: Date.now() + 60_000,
    fingerprint: tokenFingerprint(restored),
  });
  expect(written).toStrictEqual({ written: true });
  await addRefreshRequest({ clientId, reason: 'after a Redis restart' }, restored);
  const after = await eventually(
    async () => {
      const status = await stack.admin.status(clientId);
      return status.generation > before.generation ? status : undefined;
    },
    30_000,
    `${clientId} refreshed after the Redis restart`,
  );
  expect(after.state).toBe('active');
  await streamDrained();
  const reasons = await forceRefreshReasons(clientId);
  expect(reasons).toContain('after a Redis restart');
  expect(reasons).not.toContain('no token to prove it with');
});

test('a forceRefresh signal carrying a valid traceparent renews the token on a worker that does not trace', async () => {
  // The stack runs the plain bundle, which holds no OpenTelemetry API (worker/workflow-bundle.ts):
  // the ForcedRefresh span is not made, and the refresh must happen all the same.
  const clientId = 'traceparent';
  await stack.admin.register(registration(clientId, { policy: { minForcedRefreshIntervalMs: 0 } }));
  const first = await tokenWithGenerationAbove(clientId, 0);
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await stack.client.workflow
    .getHandle(workflowIdFor(clientId))
    .signal(forceRefreshSignal, { rejectedFingerprint: first.fingerprint!, reason: 'traced request', traceparent });

  const renewed = await tokenWithGenerationAbove(clientId, Number(first.generation));
  expect(renewed.fingerprint).not.toBe(first.fingerprint);
  expect(issued(clientId)).toHaveLength(2);
  expect(await forceRefreshReasons(clientId)).toEqual(['traced request']);
  // The attempt did not fail first: a throw in the workflow code, inside the attempt, would count
  // as a failed attempt (TokenFailures upserted to 1) and be retried, outside the trace, after a
  // backoff; outside it, it would fail the workflow task.
  const events = (await stack.client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory()).events ?? [];
  const failureCounts = events.flatMap((event) => {
    const payload = event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[TokenFailures.name];
    return payload ? [defaultPayloadConverter.fromPayload<number>(payload)] : [];
  });
  expect(failureCounts.filter((count) => count > 0)).toEqual([]);
  expect(events.filter((event) => event.workflowTaskFailedEventAttributes)).toEqual([]);
});
