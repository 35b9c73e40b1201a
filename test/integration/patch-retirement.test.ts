/**
 * TokenAdmin.patchRetirement() against the run's Temporal dev server (docs/design.md, "Retiring a
 * patch"). A run from before the patches is made by a worker that declines them
 * (`patchActivationCallback`): it takes neither marker nor `TemporalChangeVersion`, as the runs of
 * the fixtures recorded before the patches (test/fixtures/histories/renewals.json, …) did.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { TokenAdmin, type PatchRetirement } from '../../client/admin.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { PATCHES_OF_EVERY_RUN } from '../../workflows/token-lifecycle.js';
import { eventually } from '../support/token-stack.js';

const taskQueue = `patches-${randomUUID()}`;
const OLD_CLIENT = `before-patches-${randomUUID().slice(0, 8)}`;
const NEW_CLIENT = `with-patches-${randomUUID().slice(0, 8)}`;

let connection: Connection;
let nativeConnection: NativeConnection;
let client: Client;
let admin: TokenAdmin;

beforeAll(async () => {
  try {
    // Worker state changes at INFO would drown the test report.
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // Another file in this process installed it already.
  }
  connection = await Connection.connect({ address: inject('temporalAddress') });
  nativeConnection = await NativeConnection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection });
  admin = new TokenAdmin(client, { taskQueue });
});

afterAll(async () => {
  for (const clientId of [OLD_CLIENT, NEW_CLIENT]) {
    await client?.workflow
      .getHandle(workflowIdFor(clientId))
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  await nativeConnection?.close();
});

/**
 * Registers `clientId` and lets a workflow worker that takes the patches, or declines them, run
 * the run's first workflow task, where it asks for them. Its token request waits: no IAM worker.
 */
async function registerWith(patches: 'taken' | 'declined', clientId: string): Promise<void> {
  const worker = await Worker.create({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: { codePath: inject('workflowBundlePath') },
    activities: {},
    maxCachedWorkflows: 0,
    patchActivationCallback: () => patches === 'taken',
  });
  await worker.runUntil(async () => {
    await admin.register({ clientId, tokenUrl: 'http://127.0.0.1:9/token', authMethod: 'client_secret_post', secretRef: 'env:UNUSED' });
    await eventually(
      async () => ((await patchMarkers(clientId)) === undefined ? undefined : true),
      30_000,
      `the first workflow task of ${clientId}`,
    );
  });
}

/** The patch markers in the run's history, once its first workflow task completed; else undefined. */
async function patchMarkers(clientId: string): Promise<number | undefined> {
  const events = (await client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory()).events ?? [];
  if (!events.some((event) => event.workflowTaskCompletedEventAttributes)) return undefined;
  return events.filter((event) => event.markerRecordedEventAttributes?.markerName === 'core_patch').length;
}

/** patchRetirement() once visibility shows `running` runs (it lags behind the runs). */
function retirementWhen(running: number, predating: number): Promise<PatchRetirement[]> {
  return eventually(
    async () => {
      const rows = await admin.patchRetirement();
      return rows.every((row) => row.running === running && row.predating === predating) ? rows : undefined;
    },
    30_000,
    `${predating} of ${running} running workflows before the patches`,
  );
}

test('counts per patch the running workflows that began before it, until none is left', async () => {
  await registerWith('declined', OLD_CLIENT);
  await registerWith('taken', NEW_CLIENT);
  // The premise: the old run took no patch, the new one took every patch of every run.
  expect(await patchMarkers(OLD_CLIENT)).toBe(0);
  expect(await patchMarkers(NEW_CLIENT)).toBe(PATCHES_OF_EVERY_RUN.length);

  expect(await retirementWhen(2, 1)).toEqual([
    { patch: 'lean-cycles', running: 2, predating: 1 },
    { patch: 'active-without-times', running: 2, predating: 1 },
    { patch: 'local-renewals', running: 2, predating: 1 },
  ]);

  // The old run ends (here terminated; in production it continues as new, or is removed): the
  // patches can be retired.
  await client.workflow.getHandle(workflowIdFor(OLD_CLIENT)).terminate('ended before the patches are retired');
  expect(await retirementWhen(1, 0)).toEqual([
    { patch: 'lean-cycles', running: 1, predating: 0 },
    { patch: 'active-without-times', running: 1, predating: 0 },
    { patch: 'local-renewals', running: 1, predating: 0 },
  ]);
});
