/**
 * Ordered fallback secrets (`secretRefs`, docs/design.md, "Fallback credentials") against panva's
 * oidc-provider: the first secret is wrong and the second right. The worker sends the first once,
 * moves to the second after `invalid_client`, and from then on starts with the one the IAM
 * accepted; status, `tokenctl status` and the Temporal UI name it by its reference.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { formatStatus } from '../../cli/format.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startOidcProvider, type OidcProviderFixture } from '../support/oidc-provider.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';

const TTL_SECONDS = 3;
const CLIENT_ID = 'fallback-secrets';
const RIGHT_SECRET = 'the-secret-the-iam-holds-0001';
const WRONG_SECRET = 'the-secret-not-yet-at-the-iam';

let dir: string;
let provider: OidcProviderFixture;
let stack: TokenStack;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fallback-secrets-'));
  await writeFile(join(dir, 'new'), WRONG_SECRET);
  await writeFile(join(dir, 'old'), RIGHT_SECRET);
  provider = await startOidcProvider({
    accessTokenTtlSeconds: TTL_SECONDS,
    clients: [{ clientId: CLIENT_ID, authMethod: 'client_secret_basic', clientSecret: RIGHT_SECRET }],
  });
  stack = await startTokenStack();
});

afterAll(async () => {
  await stack?.stop();
  await provider?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

test('the wrong first secret is sent once, then the accepted second one first at every renewal', { timeout: 90_000 }, async () => {
  const oldRef = `file:${join(dir, 'old')}` as const;
  await stack.admin.register({
    clientId: CLIENT_ID,
    tokenUrl: provider.tokenUrl,
    authMethod: 'client_secret_basic',
    secretRefs: [`file:${join(dir, 'new')}`, oldRef],
  });
  await eventually(
    async () => Number((await stack.redis.hget(tokenKey('oauth:', CLIENT_ID), 'generation')) ?? 0) >= 3 || undefined,
    4 * TTL_SECONDS * 1000 + 30_000,
    `${CLIENT_ID} generation 3`,
  );

  const requests = provider.requests.filter((request) => request.clientId === CLIENT_ID);
  expect(requests.slice(0, 4).map(({ status, error }) => ({ status, error }))).toEqual([
    { status: 401, error: 'invalid_client' },
    { status: 200, error: undefined },
    { status: 200, error: undefined },
    { status: 200, error: undefined },
  ]);
  expect(requests.filter((request) => request.status !== 200)).toHaveLength(1);

  const status = await stack.admin.status(CLIENT_ID);
  expect(status).toMatchObject({ state: 'active', consecutiveFailures: 0, credential: `secretRefs[1] ${oldRef}` });
  expect(formatStatus(status, Date.now())).toMatch(new RegExp(`credential\\s+secretRefs\\[1\\] ${oldRef}`));
  const metadata = await stack.client.workflow
    .getHandle(workflowIdFor(CLIENT_ID))
    .query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  expect(metadata.currentDetails).toContain(`- credential in use: secretRefs[1] ${oldRef}`);
  await expectNoSecretsInHistories(stack.client, [workflowIdFor(CLIENT_ID)], [RIGHT_SECRET, WRONG_SECRET]);
});
