/**
 * The search that proves docs/design.md, "No secret in Temporal": every run of a workflow, every
 * event, every payload decoded, searched for the secrets, private keys, certificate keys and tokens
 * a test used. Any test can call it on the workflows it started.
 *
 * ```ts
 * await expectNoSecretsInHistories(stack.client, [workflowIdFor('orders')], [SECRET, privateKeyPem, ...iam.issuedTokens.map((t) => t.accessToken)]);
 * ```
 */
import type { Client } from '@temporalio/client';
import { expect } from 'vitest';

/**
 * The text of every run of a workflow: each history serialized with every byte field (payload
 * data, which Temporal keeps as bytes) as UTF-8 and as base64, so a value is found however it was
 * encoded.
 */
export async function historiesText(client: Client, workflowId: string): Promise<string> {
  const parts: string[] = [];
  for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    const history = await client.workflow.getHandle(workflowId, execution.runId).fetchHistory();
    parts.push(
      JSON.stringify(history, (_key, value: unknown) =>
        value instanceof Uint8Array ? `${Buffer.from(value).toString('utf8')} ${Buffer.from(value).toString('base64')}` : value,
      ),
    );
  }
  if (parts.length === 0) throw new Error(`no run of ${workflowId} is visible: nothing to search`);
  return parts.join('\n');
}

/**
 * What a secret looks like inside a history: itself, JSON-escaped, and for PEM text each line of
 * its base64 body, so a key is found in part too.
 */
export function needlesOf(secret: string): string[] {
  const needles = new Set([secret, JSON.stringify(secret).slice(1, -1)]);
  if (secret.includes('-----BEGIN')) {
    for (const line of secret.split(/\r?\n/)) if (/^[A-Za-z0-9+/=]{16,}$/.test(line.trim())) needles.add(line.trim());
  }
  return [...needles].filter((needle) => needle.length >= 8);
}

/**
 * Fails naming the workflow and the first characters of the secret when any of `secrets` (or a
 * part of a PEM key) appears in any run of any of the workflows. Also fails when there was nothing
 * to search, so a test that forgot to run its workflows does not pass by accident.
 */
export async function expectNoSecretsInHistories(
  client: Client,
  workflowIds: readonly string[],
  secrets: readonly string[],
): Promise<void> {
  expect(workflowIds.length, 'workflows to search').toBeGreaterThan(0);
  expect(secrets.length, 'secrets to search for').toBeGreaterThan(0);
  for (const workflowId of workflowIds) {
    const text = await historiesText(client, workflowId);
    for (const secret of secrets) {
      for (const needle of needlesOf(secret)) {
        expect(text.includes(needle), `${workflowId}'s history holds a secret (${secret.slice(0, 6)}…)`).toBe(false);
      }
    }
  }
}
