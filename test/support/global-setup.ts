/**
 * Once per test run: the Temporal dev server (from the project's pinned CLI) and the workflow
 * bundle, shared by every integration test file through `inject()`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { startTemporalDevServer, type TemporalDevServer } from '../../dev/temporal-dev-server.js';
import { bundleOptions } from '../../worker/workflow-bundle.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalUiUrl: string;
    workflowBundlePath: string;
  }
}

let server: TemporalDevServer | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  dir = await mkdtemp(join(tmpdir(), 'token-lifecycle-test-'));
  const [devServer, bundle] = await Promise.all([
    startTemporalDevServer({ logFile: join(dir, 'temporal.log') }),
    bundleWorkflowCode({ ...bundleOptions(), logger: silentLogger }),
  ]);
  server = devServer;
  const workflowBundlePath = join(dir, 'workflow-bundle.js');
  await writeFile(workflowBundlePath, bundle.code);
  project.provide('temporalAddress', devServer.address);
  project.provide('temporalUiUrl', devServer.uiUrl ?? '');
  project.provide('workflowBundlePath', workflowBundlePath);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}

const ignore = () => undefined;
const silentLogger = { log: ignore, trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };
