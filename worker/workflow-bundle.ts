/**
 * Where workers get their workflow code: a bundle prebuilt by `npm run build` in production (no
 * webpack at start-up), or the sources bundled on the fly in development and tests.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BundleOptions } from '@temporalio/worker';

type Configuration = Parameters<NonNullable<BundleOptions['webpackConfigHook']>>[0];

const here = dirname(fileURLToPath(import.meta.url));

/** The workflows' entry point next to this file: `.ts` in the sources, `.js` in the build. */
export const WORKFLOWS_PATH = join(here, '..', 'workflows', `index${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`);

/** Where `npm run build` writes the bundle. */
export const PREBUILT_BUNDLE_PATH = join(here, '..', 'workflow-bundle.js');

/** Where `npm run build` writes the bundle with the tracing interceptors, for a worker that traces (worker/tracing.ts). */
export const PREBUILT_TRACED_BUNDLE_PATH = join(here, '..', 'workflow-bundle-traced.js');

const requireHere = createRequire(import.meta.url);

/**
 * The workflow interceptors of `@temporalio/interceptors-opentelemetry` (workflow, signal and
 * activity-scheduling spans, exported through a sink), in the traced bundle only: a worker that
 * does not trace runs none (docs/design.md, "Traces").
 */
export const TRACING_WORKFLOW_INTERCEPTORS = requireHere.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');

/**
 * The `@opentelemetry/api` the workflow interceptors resolve. Workflow code (workflows/requester-trace.ts)
 * must use the same copy: the API's global registry refuses a provider registered by an older
 * minor version than the reader's, so with two copies the workflow's own span would be a no-op.
 */
const WORKFLOW_OTEL_API = createRequire(TRACING_WORKFLOW_INTERCEPTORS).resolve('@opentelemetry/api');

/**
 * Bundler options for the ESM sources: imports name `.js` files that exist as `.ts` in the
 * sources, which webpack must be told (sdk-typescript#1185). `traced` adds the tracing interceptors.
 */
export function bundleOptions({ traced = false }: { traced?: boolean } = {}): BundleOptions {
  return {
    workflowsPath: WORKFLOWS_PATH,
    webpackConfigHook: (config) => webpackConfig(config, { traced }),
    ...(traced && { workflowInterceptorModules: [TRACING_WORKFLOW_INTERCEPTORS] }),
  };
}

/**
 * `.ts` sources behind `.js` imports, and the `@opentelemetry/api` the workflow code imports: the
 * interceptors' copy in the traced bundle; none in the plain one (webpack's `false` alias: an
 * empty module, which workflows/requester-trace.ts takes for "not traced"). Each workflow
 * instantiates the bundle's modules for itself, so there the API would cost heap and CPU per
 * workflow for no span (docs/design.md, "Traces").
 */
function webpackConfig(config: Configuration, { traced }: { traced: boolean }): Configuration {
  const alias: Record<string, string | false> = {
    ...(config.resolve?.alias as Record<string, string | false> | undefined),
    '@opentelemetry/api$': traced ? WORKFLOW_OTEL_API : false,
  };
  return { ...config, resolve: { ...config.resolve, alias, extensionAlias: { '.js': ['.ts', '.js'] } } };
}

/**
 * The prebuilt bundle's path if there is one (or the one named: with tracing, it must be a traced
 * bundle for the workflow's spans), else null.
 */
export function prebuiltBundlePath(explicit?: string, { traced = false }: { traced?: boolean } = {}): string | null {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) throw new Error(`WORKFLOW_BUNDLE_PATH=${explicit} does not exist: run npm run build`);
    return explicit;
  }
  const prebuilt = traced ? PREBUILT_TRACED_BUNDLE_PATH : PREBUILT_BUNDLE_PATH;
  return existsSync(prebuilt) ? prebuilt : null;
}
