/**
 * Once per run of the unit tier: the workflow bundle, for the replay tests (through `inject()`).
 * Starts no server: the unit tier runs without Temporal or Redis.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { bundleOptions } from '../../worker/workflow-bundle.js';

declare module 'vitest' {
  export interface ProvidedContext {
    workflowBundlePath: string;
    /** The bundle with the tracing workflow interceptors, for a worker with `OTEL_*` settings. */
    tracedWorkflowBundlePath: string;
  }
}

let dir: string | undefined;

/**
 * Bundles the workflow code into a temporary folder and returns the bundle's path; with `traced`,
 * the bundle with the tracing interceptors (worker/workflow-bundle.ts).
 */
export async function writeWorkflowBundle({ traced = false }: { traced?: boolean } = {}): Promise<string> {
  dir ??= await mkdtemp(join(tmpdir(), 'token-lifecycle-test-'));
  const bundle = await bundleWorkflowCode({ ...bundleOptions({ traced }), logger: silentLogger });
  const path = join(dir, traced ? 'workflow-bundle-traced.js' : 'workflow-bundle.js');
  await writeFile(path, bundle.code);
  return path;
}

/** Removes what {@link writeWorkflowBundle} wrote. */
export async function removeWorkflowBundle(): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}

export async function setup(project: TestProject): Promise<void> {
  project.provide('workflowBundlePath', await writeWorkflowBundle());
  project.provide('tracedWorkflowBundlePath', await writeWorkflowBundle({ traced: true }));
}

export async function teardown(): Promise<void> {
  await removeWorkflowBundle();
}

const ignore = () => undefined;
const silentLogger = { log: ignore, trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };
