/**
 * docs/design.md, "Local renewals": a current token is renewed by a local activity inside the
 * workflow task its timer woke, one marker instead of an activity's three events and a second
 * workflow task; the first token, and every retry after a failure, go through the IAM task queue;
 * `policy.localRenewals: false` keeps every request there. A local activity run again after its
 * workflow task timed out finds its token stored and sends nothing.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import proto from '@temporalio/proto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { LoginProofKey } from '../../activities/login-budget.js';
import { createAcquireToken, type AcquireTokenInput } from '../../activities/acquire-token.js';
import { TokenStore } from '../../shared/token-store.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { DEFAULT_POLICY, type PolicyOverrides } from '../../workflows/policy.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import type { TokenMetadata } from '../../workflows/token-metadata.js';
import { statusWhere } from '../support/failure-scenarios.js';
import { startTokenStack, type TokenStack } from '../support/token-stack.js';
import { historyEvents, tokenRequests } from '../support/workflow-history.js';

const { EventType } = proto.temporal.api.enums.v1;
const SECRET = 'local-renewals-secret';
const CLIENT_IDS = ['local-default', 'local-off', 'local-backoff', 'local-rerun'] as const;
let stack: TokenStack;
let iam: IamEmulator;

beforeAll(async () => {
  iam = await startIamEmulator({ clients: CLIENT_IDS.map((clientId) => ({ clientId, clientSecret: SECRET })), tokenLifetimeSeconds: 4 });
  stack = await startTokenStack({ env: { LOCAL_SECRET: SECRET } });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
});

function registration(clientId: string, policy: PolicyOverrides = {}): ClientRegistration {
  return { clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:LOCAL_SECRET', policy };
}

/** The events between the last two token requests of `clientId`'s current run: one renewal cycle. */
async function lastCycle(clientId: string) {
  const events = await historyEvents(stack.client, workflowIdFor(clientId));
  const requests = tokenRequests(events);
  const [previous, last] = requests.slice(-2);
  return { requests, cycle: events.slice(previous!.index, last!.index).map((event) => EventType[event.eventType!]) };
}

test('the first token is queued, each renewal of a current token is one marker in a cycle of 6 events, with one workflow task', async () => {
  const clientId = 'local-default';
  await stack.admin.register(registration(clientId));
  await statusWhere(stack, clientId, (status) => status.generation >= 3, 60_000, 'generation 3');

  const { requests, cycle } = await lastCycle(clientId);
  expect(requests[0]).toMatchObject({ shape: 'queued', result: { generation: 1 } });
  expect(requests.slice(1).map((request) => request.shape)).toEqual(requests.slice(1).map(() => 'local'));
  expect(cycle).toEqual([
    'EVENT_TYPE_MARKER_RECORDED',
    'EVENT_TYPE_TIMER_STARTED',
    'EVENT_TYPE_TIMER_FIRED',
    'EVENT_TYPE_WORKFLOW_TASK_SCHEDULED',
    'EVENT_TYPE_WORKFLOW_TASK_STARTED',
    'EVENT_TYPE_WORKFLOW_TASK_COMPLETED',
  ]);
  expect(iam.requestsFor(clientId).map((request) => request.outcome)).toEqual(requests.map(() => 'issued'));
});

test('policy.localRenewals: false renews from the IAM task queue, two workflow tasks and an activity task a cycle', async () => {
  const clientId = 'local-off';
  await stack.admin.register(registration(clientId, { localRenewals: false }));
  await statusWhere(stack, clientId, (status) => status.generation >= 3, 60_000, 'generation 3');

  const { requests, cycle } = await lastCycle(clientId);
  expect(requests.map((request) => request.shape)).toEqual(requests.map(() => 'queued'));
  expect(cycle.filter((type) => type === 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED')).toHaveLength(2);
  expect(cycle).toContain('EVENT_TYPE_ACTIVITY_TASK_STARTED');
});

test('a renewal that fails retries from the IAM task queue, and the next renewal is local again', async () => {
  const clientId = 'local-backoff';
  await stack.admin.register(registration(clientId, { backoff: { malformed_response: { baseMs: 2_000, capMs: 2_000 } } }));
  await statusWhere(stack, clientId, (status) => status.generation >= 1, 30_000, 'the first token');
  // Not an endpoint-down kind: no breaker, one failed attempt, one retry.
  iam.inject({ kind: 'body', body: 'not json' }, { clientId, times: 1 });
  // The local activity's failure is classified as the queued one's would be.
  await statusWhere(stack, clientId, (status) => status.lastError?.kind === 'malformed_response', 30_000, 'malformed_response');
  await statusWhere(stack, clientId, (status) => status.generation >= 3, 60_000, 'generation 3');

  const requests = tokenRequests(await historyEvents(stack.client, workflowIdFor(clientId)));
  expect(requests.map((request) => [request.shape, request.failureType ?? request.result?.generation])).toEqual([
    ['queued', 1],
    ['local', 'malformed_response'],
    ['queued', 2],
    ['local', 3],
    ...requests.slice(4).map((request) => ['local', request.result?.generation]),
  ]);
});

test('a local activity run again for a generation Redis holds already sends nothing and answers with the stored token', async () => {
  const clientId = 'local-rerun';
  const acquireToken = createAcquireToken({
    store: new TokenStore(stack.redis, { prefix: 'rerun:' }),
    iamMaxRps: 40,
    env: { LOCAL_SECRET: SECRET },
    loginProofKey: new LoginProofKey('local-renewals-proof-key'),
  });
  const input: AcquireTokenInput = {
    ...registration(clientId),
    generation: 1,
    defaultExpiresInSeconds: DEFAULT_POLICY.defaultExpiresInSeconds,
  };
  const local = (): Promise<TokenMetadata> => new MockActivityEnvironment({ isLocal: true }).run(acquireToken, input);

  const first = await local();
  const again = await local();
  expect(first).toMatchObject({ generation: 1, written: true });
  expect(again).toMatchObject({ generation: 1, fingerprint: first.fingerprint, expiresAt: first.expiresAt, written: false });
  expect(iam.requestsFor(clientId)).toHaveLength(1);
  // The next generation is a new attempt: it is sent.
  expect(await new MockActivityEnvironment({ isLocal: true }).run(acquireToken, { ...input, generation: 2 })).toMatchObject({
    generation: 2,
    written: true,
  });
  expect(iam.requestsFor(clientId)).toHaveLength(2);
});
