/**
 * The errors of the consumer library: one class per condition, each with a stable `code` that
 * programs can switch on, and the client ID in a readonly field. None of them carries a token.
 */
import { innermostMessage } from './error-message.js';

/**
 * Redis holds no usable token for the client: the worker has not stored one yet, the last one
 * expired (the key expires with the token), or the client is not registered. Retrying later, or
 * {@link TokenReader.waitForToken}, may help; serving an expired token never does.
 */
export class TokenUnavailableError extends Error {
  readonly code = 'token_unavailable';
  constructor(
    readonly clientId: string,
    /** The Redis key that was read, e.g. `oauth:token:orders`. */
    readonly key: string,
  ) {
    super(
      `No current token for client '${clientId}' in Redis (key ${key}): none was stored yet, it expired, or the client is not registered`,
    );
    this.name = 'TokenUnavailableError';
  }
}

/** {@link TokenReader.waitForToken} saw no token newer than `newerThan` within `timeoutMs`. */
export class TokenWaitTimeoutError extends Error {
  readonly code = 'token_wait_timeout';
  constructor(
    readonly clientId: string,
    readonly newerThan: number,
    readonly timeoutMs: number,
  ) {
    super(`No token for client '${clientId}' with a generation above ${newerThan} arrived within ${timeoutMs} ms`);
    this.name = 'TokenWaitTimeoutError';
  }
}

/**
 * A refresh request could not be delivered: Redis refused the stream entry, or Temporal the
 * `forceRefresh` signal (for example because no workflow runs for the client). `cause` holds the
 * underlying error.
 */
export class RefreshRequestError extends Error {
  readonly code = 'refresh_request_failed';
  constructor(
    readonly clientId: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Could not request a refresh for client '${clientId}': ${reason}`, options);
    this.name = 'RefreshRequestError';
  }
}

/**
 * Redis did not answer the reader: down, unreachable, or refusing the command (ioredis's error is
 * the `cause`). The worker keeps tokens fresh meanwhile; retry later.
 */
export class RedisUnavailableError extends Error {
  readonly code = 'redis_unavailable';
  constructor(
    readonly clientId: string,
    options: { cause: unknown },
  ) {
    super(`Could not read the token of client '${clientId}' from Redis: ${innermostMessage(options.cause)}`, options);
    this.name = 'RedisUnavailableError';
  }
}

/** The {@link TokenReader} was closed; create a new one. */
export class TokenReaderClosedError extends Error {
  readonly code = 'token_reader_closed';
  constructor() {
    super('The TokenReader was closed');
    this.name = 'TokenReaderClosedError';
  }
}
