import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    passWithNoTests: false,
    // Integration tests time token lifetimes of a few seconds: two files at a time on two cores.
    maxWorkers: 2,
  },
});
