import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The production-topology tests load the whole machine (a Temporal server on PostgreSQL, three
 * workers and 200 clients; a Docker build): they run after the rest, one at a time, so that they
 * neither slow the other integration tests nor each other.
 */
const TOPOLOGY_TESTS = ['test/integration/production-topology.test.ts', 'test/integration/docker-image.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    passWithNoTests: false,
    // Integration tests time token lifetimes of a few seconds: two files at a time on two cores.
    maxWorkers: 2,
    projects: [
      // `extends: true` concatenates lists, so each project names its own files.
      { extends: true, test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...TOPOLOGY_TESTS] } },
      { extends: true, test: { name: 'topology', include: TOPOLOGY_TESTS, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
