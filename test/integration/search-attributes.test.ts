/**
 * The worker registers its search attributes itself (docs/design.md, "In the Temporal UI"): on a
 * dedicated dev server started WITHOUT them, on namespaces other than `default`, with workers
 * racing to add them. Operators then find the parked clients with the Temporal CLI's list query,
 * as they would in the UI.
 */
import { execFile } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { startTemporalDevServer, temporalCliPath, type TemporalDevServer } from '../../dev/temporal-dev-server.js';
import { ensureSearchAttributes, SearchAttributesSetupError } from '../../worker/search-attribute-registration.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { TOKEN_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const { IndexedValueType } = proto.temporal.api.enums.v1;
const EXPECTED_TYPES = {
  KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
};
const ALL_NAMES = TOKEN_SEARCH_ATTRIBUTES.map((key) => key.name).sort();

/** The namespace the worker processes serve; `race` and `conflict` are for the direct calls. */
const NAMESPACE = 'tokens';
const GOOD = ['sa-good-1', 'sa-good-2'];
/** One with a wrong secret (`unauthorized_client`), one the IAM does not know (`invalid_client`). */
const REJECTED = ['sa-wrong-secret', 'sa-unknown-client'];

let server: TemporalDevServer;
let redisServer: RedisServer;
let iam: IamEmulator;
let connection: Connection;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  const startedAt = Date.now();
  [server, redisServer, iam] = await Promise.all([
    startTemporalDevServer({ uiPort: false, searchAttributes: false, namespaces: [NAMESPACE, 'race', 'conflict'] }),
    startRedisServer(),
    startIamEmulator({
      tokenLifetimeSeconds: 300,
      clients: [...GOOD, 'sa-wrong-secret'].map((clientId) => ({ clientId, clientSecret: `${clientId}-secret` })),
    }),
  ]);
  console.log(`dedicated dev server without search attributes up in ${Date.now() - startedAt} ms`);
  connection = await Connection.connect({ address: server.address });
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.kill9()));
  await connection?.close();
  await server?.stop();
  await redisServer?.stop();
  await iam?.close();
});

async function customAttributes(namespace: string): Promise<Record<string, number>> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  return Object.fromEntries(Object.entries(customAttributes ?? {}).filter(([name]) => name.startsWith('Token')));
}

test('two workers adding the search attributes at the same time both succeed and leave each one with its type', async () => {
  expect(await customAttributes('race')).toEqual({});
  const [a, b] = await Promise.all([
    NativeConnection.connect({ address: server.address }),
    NativeConnection.connect({ address: server.address }),
  ]);
  try {
    const added = await Promise.all([ensureSearchAttributes(a, 'race'), ensureSearchAttributes(b, 'race')]);

    // Each saw them missing (or the other one had added some): together, all of them.
    expect([...new Set(added.flat())].sort()).toEqual(ALL_NAMES);
    expect(await customAttributes('race')).toEqual(
      Object.fromEntries(TOKEN_SEARCH_ATTRIBUTES.map((key) => [key.name, EXPECTED_TYPES[key.type]])),
    );
    // Once present, a worker start adds nothing.
    expect(await ensureSearchAttributes(a, 'race')).toEqual([]);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('an attribute that exists with another type stops the worker with a message naming it and the fix', async () => {
  await connection.operatorService.addSearchAttributes({
    namespace: 'conflict',
    searchAttributes: { TokenState: IndexedValueType.INDEXED_VALUE_TYPE_INT },
  });
  const worker = await NativeConnection.connect({ address: server.address });
  try {
    const failure = await ensureSearchAttributes(worker, 'conflict').catch((err: unknown) => err);

    expect(failure).toBeInstanceOf(SearchAttributesSetupError);
    expect((failure as SearchAttributesSetupError).code).toBe('search_attributes_setup');
    expect((failure as Error).message).toBe(
      "Search attributes of namespace 'conflict' are not usable:\n" +
        '  - TokenState exists as INDEXED_VALUE_TYPE_INT but must be Keyword: remove it (temporal operator search-attribute remove --namespace conflict --name TokenState) or use another namespace',
    );
    // Nothing else was added behind the operator's back.
    expect(Object.keys(await customAttributes('conflict'))).toEqual(['TokenState']);
  } finally {
    await worker.close();
  }
});

test('worker processes add the attributes to their namespace, and the Temporal CLI lists exactly the rejected registrations', async () => {
  expect(await customAttributes(NAMESPACE)).toEqual({});
  const taskQueue = `sa-${Date.now()}`;
  const env = Object.fromEntries(
    [...GOOD, ...REJECTED].map((clientId) => [
      secretEnv(clientId),
      clientId === 'sa-wrong-secret' ? 'not-the-secret' : `${clientId}-secret`,
    ]),
  );
  // Two workers of a fleet start together on a namespace that has none of the attributes.
  const started = await Promise.all(
    [1, 2].map(() =>
      startWorkerProcess({
        temporalAddress: server.address,
        namespace: NAMESPACE,
        taskQueue,
        redisUrl: redisServer.url,
        workflowBundlePath: inject('workflowBundlePath'),
        env,
      }),
    ),
  );
  workers.push(...started);
  console.log(`two worker processes polling after ${started.map((w) => w.startMs).join(' and ')} ms`);
  expect(started.some((worker) => worker.output().includes('Registered search attributes'))).toBe(true);
  expect(Object.keys(await customAttributes(NAMESPACE)).sort()).toEqual(ALL_NAMES);

  const admin = new TokenAdmin(new Client({ connection, namespace: NAMESPACE }), { taskQueue });
  for (const clientId of [...GOOD, ...REJECTED]) {
    await admin.register({
      clientId,
      tokenUrl: iam.tokenUrl(),
      authMethod: 'client_secret_basic',
      secretRef: `env:${secretEnv(clientId)}`,
    });
  }
  for (const clientId of [...GOOD, ...REJECTED]) {
    const expected = REJECTED.includes(clientId) ? 'credentials_rejected' : 'active';
    await eventually(async () => ((await admin.status(clientId)).state === expected ? true : undefined), 20_000, `${clientId} ${expected}`);
  }

  // What an operator types (visibility is eventually consistent: the last upsert may lag).
  const listed = await eventually(
    async () => {
      const ids = await temporalWorkflowList(`TokenState="credentials_rejected"`);
      return ids.length === REJECTED.length ? ids : undefined;
    },
    30_000,
    'the CLI listing both rejected registrations',
  );
  expect(listed.sort()).toEqual(REJECTED.map(workflowIdFor).sort());
  expect((await temporalWorkflowList(`TokenState="active"`)).sort()).toEqual(GOOD.map(workflowIdFor).sort());
  // Rejected credentials are not retried in a loop: one request each.
  expect(iam.requestsFor('sa-wrong-secret').map((r) => r.outcome)).toEqual(['unauthorized_client']);
  expect(iam.requestsFor('sa-unknown-client').map((r) => r.outcome)).toEqual(['invalid_client']);
});

function secretEnv(clientId: string): string {
  return clientId.toUpperCase().replaceAll('-', '_');
}

/** `temporal workflow list --query … -o json` against the dedicated server: the workflow IDs. */
function temporalWorkflowList(query: string): Promise<string[]> {
  const args = ['workflow', 'list', '--address', server.address, '--namespace', NAMESPACE, '--query', query, '-o', 'json'];
  return new Promise((resolve, reject) => {
    execFile(temporalCliPath(), args, { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`temporal ${args.join(' ')} failed: ${stderr}`));
      const executions = (stdout.trim() === '' ? [] : JSON.parse(stdout)) as { execution: { workflowId: string } }[];
      resolve(executions.map((e) => e.execution.workflowId));
    });
  });
}
