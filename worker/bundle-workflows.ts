/**
 * `npm run build` step: prebuilds the workflow bundle, so production workers start without webpack
 * and every worker of a release runs byte-identical workflow code.
 */
import { writeFile } from 'node:fs/promises';
import { bundleWorkflowCode } from '@temporalio/worker';
import { bundleOptions, PREBUILT_BUNDLE_PATH } from './workflow-bundle.js';

const { code } = await bundleWorkflowCode(bundleOptions());
await writeFile(PREBUILT_BUNDLE_PATH, code);
console.log(`Workflow bundle written to ${PREBUILT_BUNDLE_PATH} (${(code.length / 1024).toFixed(0)} KiB)`);
