/**
 * `npm run build` step: prebuilds the workflow bundle, so production workers start without webpack
 * and every worker of a release runs byte-identical workflow code.
 */
import { writeFile } from 'node:fs/promises';
import { bundleWorkflowCode } from '@temporalio/worker';
import { bundleOptions, PREBUILT_BUNDLE_PATH, PREBUILT_TRACED_BUNDLE_PATH } from './workflow-bundle.js';

// Two bundles: a worker that does not trace runs no tracing interceptor (docs/design.md, "Traces").
for (const [path, traced] of [
  [PREBUILT_BUNDLE_PATH, false],
  [PREBUILT_TRACED_BUNDLE_PATH, true],
] as const) {
  const { code } = await bundleWorkflowCode(bundleOptions({ traced }));
  await writeFile(path, code);
  console.log(`Workflow bundle written to ${path} (${(code.length / 1024).toFixed(0)} KiB)`);
}
