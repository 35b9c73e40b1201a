/**
 * The vocabulary of failures (docs/design.md, "Failures"): why a token request failed, what it
 * told the workflow, and what operators see of the last one. Pure types and constants only: this
 * file is imported by workflow code.
 */

/**
 * Stable codes for why a token request failed. They are the `type` of the `ApplicationFailure`
 * the IAM activity throws, so they show in the Temporal UI and are matched by the workflow.
 */
export const FAILURE_KINDS = [
  'rate_limited',
  'blocked',
  'server_error',
  'malformed_response',
  'credentials_rejected',
  'secret_unavailable',
  'store_unavailable',
  'login_budget',
] as const;

export type FailureKind = (typeof FAILURE_KINDS)[number];

/**
 * The kinds that say "the IAM is down" and open the endpoint's shared breaker (docs/design.md,
 * "The IAM is never hammered"): a 429, a connection-level failure (reset, refused, timeout), a 5xx.
 */
export type EndpointDownKind = 'rate_limited' | 'blocked' | 'server_error';

/**
 * The kinds of a request held back before anything was sent (`FailureDetails.heldBack`): the
 * endpoint's breaker (the {@link EndpointDownKind} that opened it) or rate window (`rate_limited`),
 * or the host's failed-login budget (`login_budget`, docs/design.md, "The failed-login budget").
 * The wait is the one they name.
 */
export type HeldBackKind = EndpointDownKind | 'login_budget';

/** Failure kinds after which the workflow tries again on its own. */
export type RetryableFailureKind = Exclude<FailureKind, 'credentials_rejected'>;

/** Every retryable kind: those with a backoff rule in the policy. */
export const RETRYABLE_FAILURE_KINDS = FAILURE_KINDS.filter((kind): kind is RetryableFailureKind => isRetryable(kind));

/**
 * True for failure kinds after which the workflow retries on its own. Rejected credentials are
 * not retried: repeated failed logins are what gets an IP blocked (docs/design.md, "No login
 * loop").
 */
export function isRetryable(kind: FailureKind): kind is RetryableFailureKind {
  return kind !== 'credentials_rejected';
}

/** What a failed token request tells the workflow, beyond its kind. Never a secret or a token. */
export interface FailureDetails {
  /** HTTP status, when there was a response. */
  status?: number;
  /** The OAuth `error` code of an error response (RFC 6749 §5.2). */
  oauthError?: string;
  /**
   * How long to wait, in milliseconds: the server's `Retry-After` counted from when the answer came
   * (RFC 9110 §10.2.3), or, with {@link FailureDetails.heldBack}, what remains of the endpoint
   * breaker's wait.
   */
  retryAfterMs?: number;
  /**
   * True when no request was sent: the shared breaker of the token endpoint is open (a client saw
   * it down: a 429, a block, a 5xx), another client is probing it, the host's one-second rate window
   * stayed full, or the host's failed-login budget holds unproven credentials back. Not a failure
   * of the IAM, so it does not count as one; `retryAfterMs` says when this client may try.
   */
  heldBack?: boolean;
  /**
   * Set when this request was sent, failed with an {@link EndpointDownKind} and so opened (or found
   * open) the endpoint's shared breaker: the milliseconds until the endpoint's next probe. The
   * client waits with every other client of the endpoint, not a growing backoff of its own, so it
   * is back soon after the endpoint heals (docs/design.md, "Failures").
   */
  endpointWaitMs?: number;
  /**
   * When the activity gave up, by its worker's clock (Unix ms). The workflow counts the waits above
   * from it: a local activity runs inside its workflow task, whose clock stopped when the task began
   * (docs/design.md, "Local renewals"). Absent in histories recorded before it was sent.
   */
  failedAt?: number;
}

/**
 * The {@link FailureDetails} of a failed token request, as its activity sent them. Histories
 * recorded before `heldBack` was named so carry it as `breakerOpen`: it is read under either name,
 * so those runs replay and decide as they did.
 */
export function readFailureDetails(sent: unknown): FailureDetails {
  const { breakerOpen, ...details } = (sent ?? {}) as FailureDetails & { breakerOpen?: boolean };
  return breakerOpen === undefined || details.heldBack !== undefined ? details : { ...details, heldBack: breakerOpen };
}

/** The last failure, as operators see it. Never contains a secret or a token. */
export interface LastError {
  kind: FailureKind;
  message: string;
  /** Unix ms. */
  at: number;
  status?: number;
  oauthError?: string;
  /** True when no request was sent (held back by the breaker, the rate window or the login budget): a wait, not a failure. */
  heldBack?: true;
}
