import { configDefaults, defineConfig } from 'vitest/config';

/** The tests of the `topology` tier (below). */
const TOPOLOGY_TESTS = [
  'test/integration/production-topology.test.ts',
  'test/integration/docker-image.test.ts',
  'test/integration/redis-sentinel.test.ts',
];

/**
 * Three tiers (README, "Development"):
 * - `unit`: no Temporal, no Redis, no child process of ours; in-process HTTP servers on loopback
 *   at most, and the workflow bundle for the replay tests;
 * - `integration`: the real services (one Temporal dev server for the run, a redis-server per
 *   file, the IAM emulator, oidc-provider, the built worker, the demo);
 * - `topology`: the tests that load the whole machine (a Temporal server on PostgreSQL with three
 *   workers and 200 clients; a Docker build; a master, a replica and three Sentinels), after the
 *   others and one at a time, so that they slow neither the other tests nor each other
 *   (docs/deployment.md, "The tested topology").
 */
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 180_000,
    passWithNoTests: false,
    // Integration tests time token lifetimes of a few seconds: two files at a time on two cores.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/replay/**/*.test.ts', 'test/dev/iam-emulator*.test.ts'],
          globalSetup: ['test/support/bundle-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: [
            'test/integration/**/*.test.ts',
            'test/conformance/**/*.test.ts',
            'test/contract/**/*.test.ts',
            'test/dev/demo.test.ts',
          ],
          exclude: [...configDefaults.exclude, ...TOPOLOGY_TESTS],
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'topology',
          include: TOPOLOGY_TESTS,
          globalSetup: ['test/support/global-setup.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
