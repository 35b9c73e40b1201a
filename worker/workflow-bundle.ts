/**
 * Where workers get their workflow code: a bundle prebuilt by `npm run build` in production (no
 * webpack at start-up), or the sources bundled on the fly in development and tests.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BundleOptions } from '@temporalio/worker';

type Configuration = Parameters<NonNullable<BundleOptions['webpackConfigHook']>>[0];

const here = dirname(fileURLToPath(import.meta.url));

/** The workflows' entry point next to this file: `.ts` in the sources, `.js` in the build. */
export const WORKFLOWS_PATH = join(here, '..', 'workflows', `index${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`);

/** Where `npm run build` writes the bundle. */
export const PREBUILT_BUNDLE_PATH = join(here, '..', 'workflow-bundle.js');

/**
 * Bundler options for the ESM sources: imports name `.js` files that exist as `.ts` in the
 * sources, which webpack must be told (sdk-typescript#1185).
 */
export function bundleOptions(): BundleOptions {
  return { workflowsPath: WORKFLOWS_PATH, webpackConfigHook: resolveTsSources };
}

function resolveTsSources(config: Configuration): Configuration {
  return { ...config, resolve: { ...config.resolve, extensionAlias: { '.js': ['.ts', '.js'] } } };
}

/** The prebuilt bundle's path if there is one (or the one named), else null. */
export function prebuiltBundlePath(explicit?: string): string | null {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) throw new Error(`WORKFLOW_BUNDLE_PATH=${explicit} does not exist: run npm run build`);
    return explicit;
  }
  return existsSync(PREBUILT_BUNDLE_PATH) ? PREBUILT_BUNDLE_PATH : null;
}
