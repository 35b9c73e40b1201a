/**
 * worker/workflow-bundle.ts: the plain bundle carries no `@opentelemetry/api` (every workflow would
 * instantiate it for no span: docs/design.md, "Traces"); the traced one carries the interceptors'
 * copy. Read from the bundles the unit tier's global setup wrote with `bundleOptions`.
 */
import { readFile } from 'node:fs/promises';
import { expect, inject, test } from 'vitest';

/** The API's global registry key, `Symbol.for(`opentelemetry.js.api.${major}`)`: in no other package. */
const OTEL_API_GLOBAL_KEY = 'opentelemetry.js.api.';
/** Where the API's modules come from, as webpack names them in the bundle. */
const OTEL_API_MODULES = '/@opentelemetry/api/build/src/';

test('the plain workflow bundle holds no OpenTelemetry API', async () => {
  const code = await readFile(inject('workflowBundlePath'), 'utf8');
  // Booleans, not toContain: a failure would print the whole bundle.
  expect(code.includes(OTEL_API_GLOBAL_KEY), OTEL_API_GLOBAL_KEY).toBe(false);
  expect(code.includes(OTEL_API_MODULES), OTEL_API_MODULES).toBe(false);
  // The workflow code that would use it is there: it runs without it.
  expect(code.includes("'ForcedRefresh'"), 'requester-trace').toBe(true);
});

test('the traced workflow bundle holds the OpenTelemetry API', async () => {
  const code = await readFile(inject('tracedWorkflowBundlePath'), 'utf8');
  expect(code.includes(OTEL_API_GLOBAL_KEY), OTEL_API_GLOBAL_KEY).toBe(true);
  expect(code.includes(OTEL_API_MODULES), OTEL_API_MODULES).toBe(true);
});
