/**
 * Error messages of values of unknown type: the consumer package's (consumers/node/src/error-message.ts),
 * which its own errors use, re-exported for the worker, the CLI and the workflows.
 */
export { errorMessage, innermostMessage } from 'token-lifecycle/error-message';
