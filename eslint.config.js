// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

export default tseslint.config(
  { ignores: ['dist/', 'consumers/node/dist/', 'node_modules/', '.cache/', 'test/fixtures/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A floating promise in a workflow or activity is a lost failure.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no I/O, no Node built-ins,
    // no clients. Side effects belong in activities/.
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...builtinModules
              .flatMap((m) => [m, `node:${m}`])
              .map((name) => ({
                name,
                message: 'Node built-ins are not deterministic: use them in activities/, not workflows/.',
              })),
            { name: 'ioredis', message: 'Redis is I/O: call it from an activity.' },
            { name: 'got', message: 'HTTP is I/O: call it from an activity.' },
          ],
          patterns: [
            {
              // shared/error-message.ts is pure (it re-exports token-lifecycle/error-message): the one helper that turns a thrown value into text.
              group: [
                '../activities/*',
                '../shared/*',
                '!../shared/error-message.js',
                '../worker/*',
                '../client/*',
                '../cli/*',
                '../dev/*',
              ],
              allowTypeImports: true,
              message: 'Workflows may import only types from outside workflows/.',
            },
          ],
        },
      ],
    },
  },
  {
    // The worker's activities sit above what tokenctl and the library share (docs/design.md,
    // "Where it lives"): nothing below them imports them.
    files: ['shared/**/*.ts', 'client/**/*.ts', 'cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/activities/*'], message: 'shared/, client/ and cli/ may not import activities/.' }] },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
