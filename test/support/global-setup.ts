/**
 * Once per run of the integration tier: the Temporal dev server (from the project's pinned CLI)
 * and the workflow bundle, shared by every integration test file through `inject()`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startTemporalDevServer, type TemporalDevServer } from '../../dev/temporal-dev-server.js';
import { removeWorkflowBundle, writeWorkflowBundle } from './bundle-setup.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalUiUrl: string;
  }
}

let server: TemporalDevServer | undefined;
let logDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  logDir = await mkdtemp(join(tmpdir(), 'token-lifecycle-temporal-'));
  const [devServer, workflowBundlePath] = await Promise.all([
    startTemporalDevServer({ logFile: join(logDir, 'temporal.log') }),
    writeWorkflowBundle(),
  ]);
  const tracedWorkflowBundlePath = await writeWorkflowBundle({ traced: true });
  server = devServer;
  project.provide('temporalAddress', devServer.address);
  project.provide('temporalUiUrl', devServer.uiUrl ?? '');
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('tracedWorkflowBundlePath', tracedWorkflowBundlePath);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  await removeWorkflowBundle();
  if (logDir !== undefined) await rm(logDir, { recursive: true, force: true });
}
