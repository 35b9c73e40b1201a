/** The workflows this worker runs: the entry point of the workflow bundle. */
export { tokenLifecycle } from './token-lifecycle.js';
