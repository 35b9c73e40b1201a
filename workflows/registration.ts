/**
 * The vocabulary of a client registration: what an operator registers, and what the workflow
 * carries. Pure types and constants only: this file is imported by workflow code.
 */

/**
 * Client authentication methods, by their IANA names.
 * @see RFC 6749 §2.3.1 (client password), RFC 7591 §2 (token_endpoint_auth_method)
 */
export type AuthMethod = 'client_secret_basic' | 'client_secret_post';

export const AUTH_METHODS: readonly AuthMethod[] = ['client_secret_basic', 'client_secret_post'];

/**
 * Where the worker finds a client secret: `env:NAME` (an environment variable of the worker) or
 * `file:/path` (a file, e.g. a mounted Kubernetes secret; trailing newlines are ignored).
 * Only the reference travels through Temporal, never the secret.
 */
export type SecretRef = `env:${string}` | `file:${string}`;

/** A registration of one OAuth client whose token the worker keeps fresh. */
export interface ClientRegistration {
  /** The OAuth client ID (RFC 6749 §2.2). One workflow per client ID. */
  clientId: string;
  /** The IAM's token endpoint (RFC 6749 §3.2). */
  tokenUrl: string;
  /** @default 'client_secret_basic' */
  authMethod: AuthMethod;
  /** Reference to the client secret, resolved on the worker. */
  secretRef: SecretRef;
  /** Space-delimited scope to request (RFC 6749 §3.3). */
  scope?: string;
  /** Extra form parameters for the token request, e.g. `audience` or `resource` (RFC 8707). */
  extraParams?: Record<string, string>;
  /** Overrides of the default refresh and backoff policy. */
  policy?: PolicyOverrides;
}

/** A registration's overrides of `RefreshPolicy`: any field, and any part of any backoff rule. */
export type PolicyOverrides = Partial<Omit<RefreshPolicy, 'backoff'>> & {
  backoff?: Partial<Record<RetryableFailureKind, Partial<BackoffRule>>>;
};

/** A backoff rule: `base × 2ⁿ` capped at `cap`, for the n-th consecutive failure (n from 0). */
export interface BackoffRule {
  baseMs: number;
  capMs: number;
}

/** How a workflow times renewals and backs off. Every field has a default (see `DEFAULT_POLICY`). */
export interface RefreshPolicy {
  /** Renew after this fraction of `expires_in` has passed since the request started. @default 0.85 */
  refreshFraction: number;
  /**
   * Spread renewals of many clients: each renewal comes up to this fraction of the lifetime
   * earlier, chosen deterministically per client and generation. @default 0.05
   */
  jitterFraction: number;
  /** Lifetime assumed when the IAM omits `expires_in` (RFC 6749 §5.1: RECOMMENDED). @default 300 */
  defaultExpiresInSeconds: number;
  /** Forced refreshes happen at most once per this interval. @default 10_000 */
  minForcedRefreshIntervalMs: number;
  /** Backoff per failure kind (DESIGN.md, failure kinds). */
  backoff: Record<RetryableFailureKind, BackoffRule>;
  /** Honour `Retry-After` within these bounds (RFC 9110 §10.2.3). @default 1 s – 15 min */
  retryAfterMinMs: number;
  retryAfterMaxMs: number;
  /**
   * After rejected credentials, probe again this often; 0 parks the workflow until `resume` or
   * `reconfigure`. @default 0
   */
  rejectedProbeIntervalMs: number;
  /** Continue-as-new after this many refresh cycles, even if Temporal does not suggest it. @default 500 */
  maxCyclesPerRun: number;
  /**
   * Budget of one token request, from connecting to the last byte of the answer; a request that
   * takes longer (a hang) fails as `blocked`. At most 50 s, inside the IAM activity's 60 s.
   * @default 10_000
   */
  requestTimeoutMs: number;
}

/**
 * Stable codes for why a token request failed. They are the `type` of the `ApplicationFailure`
 * the IAM activity throws, so they show in the Temporal UI and are matched by the workflow.
 */
export type FailureKind =
  'rate_limited' | 'blocked' | 'server_error' | 'malformed_response' | 'credentials_rejected' | 'secret_unavailable' | 'store_unavailable';

/** Failure kinds after which the workflow tries again on its own. */
export type RetryableFailureKind = Exclude<FailureKind, 'credentials_rejected'>;

export const FAILURE_KINDS: readonly FailureKind[] = [
  'rate_limited',
  'blocked',
  'server_error',
  'malformed_response',
  'credentials_rejected',
  'secret_unavailable',
  'store_unavailable',
];

/** What a failed token request tells the workflow, beyond its kind. Never a secret or a token. */
export interface FailureDetails {
  /** HTTP status, when there was a response. */
  status?: number;
  /** The OAuth `error` code of an error response (RFC 6749 §5.2). */
  oauthError?: string;
  /**
   * How long to wait, in milliseconds: the server's `Retry-After` counted from when the answer came
   * (RFC 9110 §10.2.3), or, with {@link FailureDetails.breakerOpen}, what remains of the endpoint
   * breaker's wait.
   */
  retryAfterMs?: number;
  /**
   * True when no request was sent: the shared breaker of the token endpoint is open (another
   * client saw a 429 or a block), another client is probing it, or the host's one-second rate
   * window stayed full. Not a failure of the IAM, so it does not count as one; `retryAfterMs` says
   * when this client may try.
   */
  breakerOpen?: boolean;
}

/**
 * What the IAM activity returns: metadata about the token it wrote to Redis. Never the token.
 * Times are Unix milliseconds.
 */
export interface TokenMetadata {
  clientId: string;
  generation: number;
  /** First 16 hex digits of SHA-256 of the access token. */
  fingerprint: string;
  tokenType: string;
  scope: string;
  /** When the token request was sent; renewals are timed from here. */
  requestStartedAt: number;
  obtainedAt: number;
  expiresAt: number;
  /** `expires_in` as used (the IAM's value, or the default when it sent none). */
  expiresInSeconds: number;
  /**
   * False when Redis already held this or a newer generation (a retried activity): the metadata
   * then describes what Redis holds.
   */
  written: boolean;
}
