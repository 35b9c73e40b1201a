/**
 * What the workflow keeps in visibility, state by state (docs/design.md, "In the Temporal UI"):
 * `TokenState`, `TokenClientId`, `TokenEndpointHost` and `TokenFailures`, upserted only when one of
 * them changes. A renewal changes none of them, so it adds no upsert to the history (each is an event
 * and a billable action); the expiry and the next refresh are in the `status` query instead.
 */
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor, type TokenState as TokenStateName } from '../../workflows/messages.js';
import {
  TokenClientId,
  TokenEndpointHost,
  TokenExpiresAt,
  TokenFailures,
  TokenNextRefreshAt,
  TokenState,
} from '../../workflows/search-attributes.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { historyEvents } from '../support/workflow-history.js';

const { EventType } = proto.temporal.api.enums.v1;
const SECRET = 'upserts-secret';
const RENEWING = 'upserts-renewing';
const FAILING = 'upserts-failing';
const REJECTED = 'upserts-rejected';
const STOPPED = 'upserts-stopped';
/** Short enough for several renewals within the test (one about every 3.5 s). */
const TOKEN_LIFETIME_SECONDS = 4;

let iam: IamEmulator;
let stack: TokenStack;

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
    clients: [RENEWING, FAILING, STOPPED].map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  stack = await startTokenStack({ env: { SECRET } });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
});

const register = (clientId: string) =>
  stack.admin.register({ clientId, tokenUrl: iam.tokenUrl(), authMethod: 'client_secret_post', secretRef: 'env:SECRET' });

/** The search attributes visibility holds for a client's workflow, once they match `expected`. */
async function visibleAttributes(client: Client, clientId: string, expected: { state: TokenStateName; failures: number }) {
  return eventually(
    async () => {
      for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowIdFor(clientId)}'` })) {
        const attributes = execution.typedSearchAttributes;
        if (attributes.get(TokenState) === expected.state && attributes.get(TokenFailures) === expected.failures) return attributes;
      }
      return undefined;
    },
    30_000,
    `${clientId} visible as ${expected.state} with ${expected.failures} failures`,
  );
}

/** The upserts of the project's attributes (`patched()` also upserts Temporal's `TemporalChangeVersion`, once per patch and run). */
const tokenUpsertsIn = async (clientId: string) =>
  (await historyEvents(stack.client, workflowIdFor(clientId)))
    .filter((e) => e.eventType === EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
    .map((e) =>
      Object.keys(e.upsertWorkflowSearchAttributesEventAttributes!.searchAttributes!.indexedFields!).filter((key) =>
        key.startsWith('Token'),
      ),
    )
    .filter((keys) => keys.length > 0);

test('every state shows in visibility with its failure count, and renewals upsert nothing', async () => {
  iam.inject({ kind: 'status', status: 503 }, { clientId: FAILING });
  for (const clientId of [RENEWING, FAILING, REJECTED, STOPPED]) await register(clientId);
  const host = new URL(iam.url).host;

  // active, renewed three times: one upsert in all (acquiring → active), none per renewal.
  await eventually(async () => ((await stack.admin.status(RENEWING)).generation >= 4 ? true : undefined), 60_000, `${RENEWING} renewed`);
  const active = await visibleAttributes(stack.client, RENEWING, { state: 'active', failures: 0 });
  expect(active.get(TokenClientId)).toBe(RENEWING);
  expect(active.get(TokenEndpointHost)).toBe(host);
  expect(active.get(TokenExpiresAt)).toBeUndefined();
  expect(active.get(TokenNextRefreshAt)).toBeUndefined();
  expect(await tokenUpsertsIn(RENEWING)).toEqual([['TokenState']]);
  // Where the expiry went: the status query (and the current details).
  const status = await stack.admin.status(RENEWING);
  expect(status.expiresAt).toBeGreaterThan(Date.now());
  expect(status.nextRefreshAt).toBeLessThanOrEqual(status.expiresAt!);
  // tokenctl list fills the expiry in from the same query.
  const listed = (await stack.admin.list()).find((row) => row.clientId === RENEWING);
  expect(listed).toMatchObject({ state: 'active', failures: 0, tokenEndpointHost: host });
  expect(listed!.expiresAt).toBeGreaterThan(0);

  // backing_off: the failure count follows each failure.
  await eventually(
    async () => ((await stack.admin.status(FAILING)).consecutiveFailures >= 2 ? true : undefined),
    60_000,
    `${FAILING} failed twice`,
  );
  const failures = (await stack.admin.status(FAILING)).consecutiveFailures;
  await visibleAttributes(stack.client, FAILING, { state: 'backing_off', failures });
  // …and back to zero with the next token (the retry at the end of the backoff).
  iam.clearFaults();
  await visibleAttributes(stack.client, FAILING, { state: 'active', failures: 0 });

  // credentials_rejected (the IAM does not know the client).
  const rejected = await visibleAttributes(stack.client, REJECTED, { state: 'credentials_rejected', failures: 1 });
  expect(rejected.get(TokenExpiresAt)).toBeUndefined();

  // stopped: the last state of a completed workflow stays visible.
  await eventually(async () => ((await stack.admin.status(STOPPED)).state === 'active' ? true : undefined), 30_000, `${STOPPED} active`);
  await stack.admin.remove(STOPPED);
  await eventually(
    async () => {
      for await (const execution of stack.client.workflow.list({ query: `WorkflowId = '${workflowIdFor(STOPPED)}'` }))
        if (execution.typedSearchAttributes.get(TokenState) === 'stopped') return true;
      return undefined;
    },
    30_000,
    `${STOPPED} visible as stopped`,
  );
}, 120_000);
