/**
 * Typed errors of the IAM activity. Their `kind` is a stable {@link FailureKind}: the activity
 * turns it into the `type` of the `ApplicationFailure` the workflow matches on.
 *
 * Messages and enumerable properties are shown in logs and in the Temporal UI, so they never hold
 * a response body, an access token or a client secret.
 */
import type { FailureDetails, FailureKind, HeldBackKind } from '../workflows/failures.js';
import type { TokenEndpointResponse } from './token-endpoint-response.js';
import { errorMessage } from '../shared/error-message.js';

/**
 * The token endpoint could not be reached, refused the client, or answered with something this
 * worker cannot use. `kind` says which (docs/design.md, "Failures"); `details` carry what the
 * workflow needs to decide on the next try (status, OAuth `error` code, `Retry-After`).
 *
 * @see RFC 6749 §5.2 (error response)
 */
export class TokenEndpointError extends Error {
  override name = 'TokenEndpointError';
  /** Why the request failed; also the `type` of the Temporal failure. */
  readonly kind: FailureKind;
  /** Status, OAuth `error` code and `Retry-After`, when the endpoint sent them. */
  readonly details: Readonly<FailureDetails>;
  /**
   * The endpoint's answer, when there was one. Non-enumerable (set in the constructor) so that
   * logging or serializing the error does not print it; its body is never printed either.
   */
  declare readonly response?: TokenEndpointResponse;

  constructor(kind: FailureKind, message: string, details: FailureDetails = {}, response?: TokenEndpointResponse) {
    super(message);
    this.kind = kind;
    this.details = Object.freeze(withoutUndefined(details));
    if (response !== undefined) {
      Object.defineProperty(this, 'response', { value: response, enumerable: false });
    }
  }

  /** Same as {@link TokenEndpointError.kind}, under the name Node.js errors use for codes. */
  get code(): FailureKind {
    return this.kind;
  }
}

/**
 * No request was sent: the shared breaker of the token endpoint holds every client back after a
 * 429, a block or a 5xx (`kind` is the one that opened it), another client is probing the endpoint, the
 * host's one-second rate window stayed full (`rate_limited`), or the host's failed-login budget
 * keeps unproven credentials waiting (`login_budget`). `details.heldBack` tells the workflow
 * this was not a failure of the IAM, and `details.retryAfterMs` when this client may try again.
 */
export class RequestHeldBackError extends TokenEndpointError {
  override name = 'RequestHeldBackError';

  constructor(kind: HeldBackKind, message: string, retryAfterMs: number) {
    super(kind, message, { retryAfterMs, heldBack: true });
  }
}

/**
 * Redis did not answer, so nothing was sent to the IAM (a token that cannot be stored would be a
 * wasted request): `store_unavailable`. The message names the cause, never a key's value.
 */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
  readonly code = 'store_unavailable' satisfies FailureKind;

  constructor(cause: unknown) {
    super(`Redis is unavailable: ${errorMessage(cause)}`);
  }
}

/** Runs a Redis call, turning its failure into {@link StoreUnavailableError}. */
export async function storeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw new StoreUnavailableError(err);
  }
}

/** Drops `undefined` fields, so `details` compares and serializes as what was actually observed. */
function withoutUndefined(details: FailureDetails): FailureDetails {
  const result: FailureDetails = {};
  if (details.status !== undefined) result.status = details.status;
  if (details.oauthError !== undefined) result.oauthError = details.oauthError;
  if (details.retryAfterMs !== undefined) result.retryAfterMs = details.retryAfterMs;
  if (details.heldBack !== undefined) result.heldBack = details.heldBack;
  if (details.endpointWaitMs !== undefined) result.endpointWaitMs = details.endpointWaitMs;
  return result;
}
