/**
 * TokenAdmin's reads against the run's Temporal dev server, with no worker on the task queue: the
 * test takes the workflow task itself (PollWorkflowTaskQueue) to hold it started while a
 * `reconfigure` arrives, which Temporal buffers until that task ends (client/settled-description.ts).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { reconfigureSignal, workflowIdFor } from '../../workflows/messages.js';

const NAMESPACE = 'default';
const taskQueue = `admin-${randomUUID()}`;
const CLIENT_ID = `admin-buffered-${randomUUID().slice(0, 8)}`;

let connection: Connection;
let client: Client;
let admin: TokenAdmin;

beforeAll(async () => {
  connection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection, namespace: NAMESPACE });
  admin = new TokenAdmin(client, { taskQueue });
});

afterAll(async () => {
  await client?.workflow
    .getHandle(workflowIdFor(CLIENT_ID))
    .terminate('test finished')
    .catch(() => undefined);
  await connection?.close();
});

test('registration() includes a reconfigure that arrived while a workflow task was started, once that task ends', async () => {
  await admin.register({
    clientId: CLIENT_ID,
    tokenUrl: 'http://127.0.0.1:9/token',
    authMethod: 'client_secret_post',
    secretRef: 'env:UNUSED',
  });
  // A long poll: Temporal wants a deadline on it.
  const task = await connection.withDeadline(Date.now() + 30_000, () =>
    connection.workflowService.pollWorkflowTaskQueue({
      namespace: NAMESPACE,
      taskQueue: { name: taskQueue },
      identity: 'token-admin-test',
    }),
  );
  expect(task.workflowExecution?.workflowId).toBe(workflowIdFor(CLIENT_ID));

  await client.workflow.getHandle(workflowIdFor(CLIENT_ID)).signal(reconfigureSignal, { scope: 'orders.read' });
  const history = await client.workflow.getHandle(workflowIdFor(CLIENT_ID)).fetchHistory();
  // The premise: the signal is buffered, not in the history, while the task is started.
  expect(history.events?.some((event) => event.workflowExecutionSignaledEventAttributes)).toBe(false);

  let read = false;
  const reading = admin.registration(CLIENT_ID).finally(() => (read = true));
  await sleep(500);
  expect(read).toBe(false);
  await connection.workflowService.respondWorkflowTaskCompleted({
    namespace: NAMESPACE,
    taskToken: task.taskToken,
    identity: 'token-admin-test',
    commands: [],
  });

  expect(await reading).toMatchObject({ clientId: CLIENT_ID, scope: 'orders.read' });
});
