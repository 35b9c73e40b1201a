/**
 * Failure semantics end to end (docs/design.md, "Failures", "The IAM is never hammered" and "No
 * login loop"): the real Temporal dev server, a real redis-server and the IAM emulator's fault
 * switch. Small per-registration policy values keep the waits short; each scenario has an emulator
 * of its own, so the endpoint breaker one of them opens does not hold back another.
 */
import proto from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startIamEmulator, type Fault, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import type { TokenStatus } from '../../workflows/messages.js';
import { workflowIdFor } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import type { FailureKind } from '../../workflows/failures.js';
import type { PolicyOverrides } from '../../workflows/policy.js';
import { TokenFailures, TokenNextRefreshAt, TokenState } from '../../workflows/search-attributes.js';
import { activeAt, gapsBetween, sleep, statusWhere, storedToken, tokenWithGenerationAbove } from '../support/failure-scenarios.js';
import { startTokenStack, type TokenStack } from '../support/token-stack.js';
import { historyEvents, startedTimers, tokenRequests } from '../support/workflow-history.js';

const SECRET = 'the-secret';
const NEW_SECRET = 'the-rotated-secret';
let stack: TokenStack;
const emulators: IamEmulator[] = [];

beforeAll(async () => {
  stack = await startTokenStack({ env: { SECRET, NEW_SECRET, WRONG_SECRET: 'not-the-secret' } });
});

afterAll(async () => {
  await stack?.stop();
  await Promise.all(emulators.map((iam) => iam.close()));
});

/** An emulator for one scenario, closed after the file. Tokens live a minute unless a test says. */
async function emulatorFor(clientIds: string[], tokenLifetimeSeconds = 60): Promise<IamEmulator> {
  const iam = await startIamEmulator({ tokenLifetimeSeconds, clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })) });
  emulators.push(iam);
  return iam;
}

function registration(iam: IamEmulator, clientId: string, policy: PolicyOverrides = {}): ClientRegistration {
  return { clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:SECRET', policy };
}

async function searchAttributes(clientId: string) {
  const description = await stack.client.workflow.getHandle(workflowIdFor(clientId)).describe();
  const attributes = description.typedSearchAttributes;
  return {
    state: attributes.get(TokenState),
    failures: attributes.get(TokenFailures),
    nextTry: attributes.get(TokenNextRefreshAt)?.getTime(),
  };
}

const backingOff = (kind: FailureKind) => (s: TokenStatus) => s.state === 'backing_off' && s.backoffReason === kind;

describe('429 Retry-After is honoured in both forms', () => {
  test.each([
    { form: 'delay-seconds', clientId: 'retry-after-seconds', retryAfter: () => 2 },
    // An HTTP-date has whole seconds: the next whole second at least 2 s away.
    { form: 'HTTP-date', clientId: 'retry-after-date', retryAfter: () => new Date(Math.ceil((Date.now() + 2_000) / 1000) * 1000 + 1000) },
  ])('Retry-After as $form: no request before that time, then recovery', async ({ clientId, retryAfter }) => {
    const iam = await emulatorFor([clientId]);
    const header = retryAfter();
    iam.inject({ kind: 'rate_limit', retryAfter: header }, { times: 1, clientId });
    await stack.admin.register(registration(iam, clientId));

    const during = await statusWhere(stack, clientId, backingOff('rate_limited'), 30_000, 'backing off after the 429');
    const [limited] = iam.requestsFor(clientId);
    const notBefore = typeof header === 'number' ? limited!.at + header * 1000 : header.getTime();
    expect(during).toMatchObject({ consecutiveFailures: 1, lastError: { kind: 'rate_limited', status: 429 } });
    expect(during.backoffUntil).toBeGreaterThanOrEqual(notBefore);
    const visible = await searchAttributes(clientId);
    expect(visible).toEqual({ state: 'backing_off', failures: 1, nextTry: during.backoffUntil });
    // The wait is the header's, counted from when the answer came: never longer than it says.
    const [backoff] = startedTimers(await historyEvents(stack.client, workflowIdFor(clientId)));
    if (typeof header === 'number') expect(backoff!.durationMs).toBe(header * 1000);
    else expect(backoff!.durationMs).toBeLessThanOrEqual(notBefore - limited!.at);

    const token = await tokenWithGenerationAbove(stack.redis, clientId, 0, 30_000);
    const requests = iam.requestsFor(clientId);
    expect(requests.map((r) => r.outcome)).toEqual(['fault:rate_limit', 'issued']);
    expect(requests[1]!.at).toBeGreaterThanOrEqual(notBefore);
    expect(token.generation).toBe('1');
    expect(await activeAt(stack, clientId, 1)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
    // Active: the times are in the status and the details, not in the search attributes, so a
    // renewal upserts nothing (docs/design.md, "In the Temporal UI").
    expect(await searchAttributes(clientId)).toEqual({ state: 'active', failures: 0, expiresAt: undefined, nextTry: undefined });
    console.info(
      `[429 ${typeof header === 'number' ? `Retry-After: ${header}` : `Retry-After: ${header.toUTCString()}`}] requests 2; gap ${requests[1]!.at - requests[0]!.at} ms (allowed from ${notBefore - requests[0]!.at} ms); recovered ${requests[1]!.at - notBefore} ms after the allowed time`,
    );
    await stack.admin.remove(clientId);
  });
});

describe('connection-level failures back off as configured and recover when the emulator heals', () => {
  test('resets: three resets wait about 0.5 s, 1 s, 2 s (less jitter), then the fourth request gets a token', async () => {
    const clientId = 'resets';
    const BASE_MS = 500;
    const iam = await emulatorFor([clientId]);
    iam.inject({ kind: 'reset' }, { times: 3, clientId });
    await stack.admin.register(registration(iam, clientId, { backoff: { blocked: { baseMs: BASE_MS, capMs: 10_000 } } }));

    const during = await statusWhere(
      stack,
      clientId,
      (s) => backingOff('blocked')(s) && s.consecutiveFailures === 2,
      30_000,
      'second reset',
    );
    expect(during.lastError).toMatchObject({ kind: 'blocked' });
    expect(during.lastError?.message).toMatch(/ECONNRESET|socket hang up/);
    expect((await searchAttributes(clientId)).state).toBe('backing_off');

    await tokenWithGenerationAbove(stack.redis, clientId, 0, 30_000);
    const requests = iam.requestsFor(clientId);
    expect(requests.map((r) => r.outcome)).toEqual(['fault:reset', 'fault:reset', 'fault:reset', 'issued']);
    // The workflow chose base × 2ⁿ less up to 20 % jitter; no retry reached the IAM sooner (how
    // much later is the machine's: the dev server fires sub-second timers after about 1 s).
    const backoffs = startedTimers(await historyEvents(stack.client, workflowIdFor(clientId))).slice(0, 3);
    const gaps = gapsBetween(requests);
    gaps.forEach((gap, i) => {
      const configured = BASE_MS * 2 ** i;
      expect(backoffs[i]!.durationMs, `backoff after reset ${i + 1}`).toBeGreaterThanOrEqual(0.8 * configured);
      expect(backoffs[i]!.durationMs, `backoff after reset ${i + 1}`).toBeLessThanOrEqual(configured);
      expect(gap, `wait after reset ${i + 1}`).toBeGreaterThanOrEqual(0.8 * configured);
    });
    expect(await activeAt(stack, clientId, 1)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
    console.info(
      `[resets] requests ${requests.length}; gaps ${gaps.join(', ')} ms (configured ${BASE_MS}, ${2 * BASE_MS}, ${4 * BASE_MS} less ≤ 20 % jitter); recovered ${requests.at(-1)!.at - requests[0]!.at} ms after the first reset`,
    );
    await stack.admin.remove(clientId);
  });

  test('hangs: two requests that never get an answer time out after requestTimeoutMs and wait about 0.5 s, then 1 s; then a token', async () => {
    const clientId = 'hangs';
    const BASE_MS = 500;
    const TIMEOUT_MS = 1_000;
    const iam = await emulatorFor([clientId]);
    iam.inject({ kind: 'hang' }, { times: 2, clientId });
    await stack.admin.register(
      registration(iam, clientId, { requestTimeoutMs: TIMEOUT_MS, backoff: { blocked: { baseMs: BASE_MS, capMs: 10_000 } } }),
    );

    const during = await statusWhere(stack, clientId, backingOff('blocked'), 30_000, 'first hang');
    expect(during.lastError?.message).toMatch(/did not answer in time/);

    await tokenWithGenerationAbove(stack.redis, clientId, 0, 30_000);
    const requests = iam.requestsFor(clientId);
    expect(requests.map((r) => r.outcome)).toEqual(['fault:hang', 'fault:hang', 'issued']);
    // Between two request starts: the timeout, then the backoff the workflow chose.
    const backoffs = startedTimers(await historyEvents(stack.client, workflowIdFor(clientId))).slice(0, 2);
    const waits = gapsBetween(requests).map((gap) => gap - TIMEOUT_MS);
    waits.forEach((wait, i) => {
      const configured = BASE_MS * 2 ** i;
      expect(backoffs[i]!.durationMs, `backoff after hang ${i + 1}`).toBeGreaterThanOrEqual(0.8 * configured);
      expect(backoffs[i]!.durationMs, `backoff after hang ${i + 1}`).toBeLessThanOrEqual(configured);
      expect(wait, `wait after hang ${i + 1}`).toBeGreaterThanOrEqual(0.8 * configured);
    });
    expect(await activeAt(stack, clientId, 1)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
    console.info(
      `[hangs] requests ${requests.length}; gaps ${gapsBetween(requests).join(', ')} ms = ${TIMEOUT_MS} ms timeout + waits ${waits.join(', ')} ms (configured ${BASE_MS}, ${2 * BASE_MS}); recovered ${requests.at(-1)!.at - requests[0]!.at} ms after the first hang`,
    );
    await stack.admin.remove(clientId);
  });
});

test('a rotated secret parks the workflow: one request, no timer, the last good token kept; reconfigure with the right secret recovers it', async () => {
  // Not 'parked': workflow IDs are the namespace's, and forced-refresh.test.ts runs one by that name beside this file.
  const clientId = 'parked-after-rotation';
  const WATCH_MS = 8_000;
  const iam = await emulatorFor([clientId]);
  await stack.admin.register(registration(iam, clientId, { minForcedRefreshIntervalMs: 0 }));
  const good = await tokenWithGenerationAbove(stack.redis, clientId, 0);
  await activeAt(stack, clientId, 1);

  iam.setClientSecret(clientId, NEW_SECRET);
  await stack.admin.refresh(clientId, { reason: 'test: after the secret was rotated' });
  const parked = await statusWhere(stack, clientId, (s) => s.state === 'credentials_rejected', 30_000, 'credentials_rejected');
  expect(parked.lastError).toMatchObject({ kind: 'credentials_rejected', status: 401, oauthError: 'unauthorized_client' });
  expect(parked.backoffUntil).toBeNull();
  expect((await searchAttributes(clientId)).state).toBe('credentials_rejected');

  await sleep(WATCH_MS);
  const rejected = iam.requestsFor(clientId).filter((r) => r.outcome !== 'issued');
  expect(rejected.map((r) => r.outcome)).toEqual(['unauthorized_client']);
  // Parked means waiting for a message only: no timer was started after the rejection, so nothing
  // but a signal can wake the workflow, however long one watches.
  const history = await stack.client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory();
  const events = history.events ?? [];
  const EventType = proto.temporal.api.enums.v1.EventType;
  const requests = tokenRequests(events);
  const rejection = requests.at(-1)!;
  expect(rejection.failureType).toBe('credentials_rejected');
  expect(events.slice(rejection.index).filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)).toEqual([]);
  // The last good token stays until it expires.
  expect(await storedToken(stack.redis, clientId)).toEqual(good);

  const reconfiguredAt = Date.now();
  await stack.admin.reconfigure(clientId, { secretRef: 'env:NEW_SECRET' });
  const recovered = await tokenWithGenerationAbove(stack.redis, clientId, 1);
  expect(recovered.generation).toBe('2');
  expect(iam.requestsFor(clientId).map((r) => r.outcome)).toEqual(['issued', 'unauthorized_client', 'issued']);
  expect(await activeAt(stack, clientId, 2)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
  const last = iam.requestsFor(clientId).at(-1)!;
  console.info(
    `[parked] requests while parked over ${WATCH_MS} ms: ${rejected.length}; timers after the rejection: 0; recovered ${last.at - reconfiguredAt} ms after reconfigure`,
  );
  await stack.admin.remove(clientId);
});

describe('malformed answers: the right failure kind in status, no crash, nothing wrong written to Redis', () => {
  const validToken = (fields: Record<string, unknown>) =>
    JSON.stringify({ access_token: 'eyJ.malformed-case.sig', token_type: 'Bearer', expires_in: 300, ...fields });
  const json = (body: string): Fault => ({ kind: 'body', body });
  const FAILING: { name: string; fault: Fault }[] = [
    { name: 'html-200', fault: { kind: 'body', contentType: 'text/html', body: '<html><body>Welcome to nginx!</body></html>' } },
    { name: 'no-access-token', fault: json(JSON.stringify({ token_type: 'Bearer', expires_in: 300 })) },
    { name: 'expires-abc', fault: json(validToken({ expires_in: 'abc' })) },
    { name: 'expires-negative', fault: json(validToken({ expires_in: -1 })) },
    { name: 'expires-zero', fault: json(validToken({ expires_in: 0 })) },
    { name: 'expires-1e12', fault: json(validToken({ expires_in: 1e12 })) },
    { name: 'token-type-mac', fault: json(validToken({ token_type: 'mac' })) },
    { name: 'oversized', fault: json(validToken({ padding: 'x'.repeat(100 * 1024) })) },
  ];
  // Tolerated as real servers send them (RFC 6749 §5.1 only RECOMMENDS expires_in).
  const TOLERATED: { name: string; fault: Fault; expiresInSeconds: number }[] = [
    {
      name: 'expires-missing',
      fault: json(JSON.stringify({ access_token: 'eyJ.no-expiry.sig', token_type: 'Bearer' })),
      expiresInSeconds: 45,
    },
    {
      name: 'expires-string',
      fault: json(JSON.stringify({ access_token: 'eyJ.string-expiry.sig', token_type: 'bearer', expires_in: '300' })),
      expiresInSeconds: 300,
    },
  ];
  // Long enough to see the failure in status and read Redis before the retry replaces the token,
  // even on a busy machine.
  const POLICY: PolicyOverrides = {
    minForcedRefreshIntervalMs: 0,
    defaultExpiresInSeconds: 45,
    backoff: { malformed_response: { baseMs: 10_000, capMs: 10_000 } },
  };

  test('every malformed 200 answer is malformed_response, keeps the good token, and the next answer recovers; missing and "300" expires_in are tolerated', async () => {
    const cases = [...FAILING, ...TOLERATED];
    const iam = await emulatorFor(cases.map((c) => c.name));
    await Promise.all(cases.map((c) => stack.admin.register(registration(iam, c.name, POLICY))));
    const good = new Map(
      await Promise.all(cases.map(async (c) => [c.name, await tokenWithGenerationAbove(stack.redis, c.name, 0)] as const)),
    );
    await Promise.all(cases.map((c) => activeAt(stack, c.name, 1)));

    for (const c of cases) iam.inject(c.fault, { times: 1, clientId: c.name });
    const startedAt = Date.now();
    await Promise.all(cases.map((c) => stack.admin.refresh(c.name, { reason: `test: ${c.name}` })));

    await Promise.all(
      FAILING.map(async ({ name }) => {
        const status = await statusWhere(stack, name, backingOff('malformed_response'), 30_000, 'malformed_response');
        // Read at once: the retry comes 8–10 s after the failure.
        expect(await storedToken(stack.redis, name), `${name}: the good token is intact`).toEqual(good.get(name));
        expect(status, name).toMatchObject({
          consecutiveFailures: 1,
          generation: 1,
          fingerprint: good.get(name)!.fingerprint,
          lastError: { kind: 'malformed_response', status: 200 },
        });
        expect((await searchAttributes(name)).state, name).toBe('backing_off');
      }),
    );
    await Promise.all(
      TOLERATED.map(async ({ name, expiresInSeconds }) => {
        const token = await tokenWithGenerationAbove(stack.redis, name, 1);
        expect(token.access_token, name).toMatch(/^eyJ\.(no|string)-expiry\.sig$/);
        expect(token.token_type).toBe('Bearer');
        // Counted from before the request left: never past the IAM's own count from its arrival.
        const arrivedAt = iam.requestsFor(name).at(-1)!.at;
        const lifetimeMs = Number(token.expires_at) - arrivedAt;
        expect(lifetimeMs, name).toBeGreaterThan(expiresInSeconds * 1000 - 5_000);
        expect(lifetimeMs, name).toBeLessThanOrEqual(expiresInSeconds * 1000);
      }),
    );

    // The worker did not crash: every failing client recovers with the emulator's next answer.
    await Promise.all(FAILING.map(({ name }) => tokenWithGenerationAbove(stack.redis, name, 1, 40_000)));
    for (const { name } of FAILING) {
      expect(
        iam.requestsFor(name).map((r) => r.outcome),
        name,
      ).toEqual(['issued', 'fault:body', 'issued']);
      expect(await activeAt(stack, name, 2), name).toMatchObject({
        state: 'active',
        consecutiveFailures: 0,
        lastError: null,
        generation: 2,
      });
    }
    const messages = FAILING.map(({ name }) => `${name}: ${iam.requestsFor(name).length} requests`);
    console.info(`[malformed] ${messages.join('; ')}; recovered within ${Date.now() - startedAt} ms of the forced refreshes`);
    await Promise.all(cases.map((c) => stack.admin.remove(c.name)));
  });

  test('a hang is blocked after requestTimeoutMs, keeps the good token, and recovers', async () => {
    const clientId = 'malformed-hang';
    const iam = await emulatorFor([clientId]);
    await stack.admin.register(
      registration(iam, clientId, { ...POLICY, requestTimeoutMs: 1_000, backoff: { blocked: { baseMs: 4_000, capMs: 10_000 } } }),
    );
    const good = await tokenWithGenerationAbove(stack.redis, clientId, 0);
    await activeAt(stack, clientId, 1);
    iam.inject({ kind: 'hang' }, { times: 1, clientId });
    await stack.admin.refresh(clientId, { reason: 'test: hang' });

    const status = await statusWhere(stack, clientId, backingOff('blocked'), 30_000, 'blocked');
    expect(await storedToken(stack.redis, clientId)).toEqual(good);
    expect(status.lastError?.message).toMatch(/did not answer in time/);
    await tokenWithGenerationAbove(stack.redis, clientId, 1, 30_000);
    expect(iam.requestsFor(clientId).map((r) => r.outcome)).toEqual(['issued', 'fault:hang', 'issued']);
    await stack.admin.remove(clientId);
  });
});
