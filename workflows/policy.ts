/**
 * The refresh policy and the pure decisions of the token lifecycle: when to renew, how long to
 * back off, whether a forced refresh is due (docs/design.md, "Timing" and "Failures"). No Temporal
 * APIs and no clock: every input is a parameter, so long horizons are unit-tested without a server,
 * and the workflow stays deterministic.
 */
import {
  RETRYABLE_FAILURE_KINDS,
  type EndpointDownKind,
  type FailureDetails,
  type FailureKind,
  type HeldBackKind,
  type RetryableFailureKind,
} from './failures.js';

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
  /** Backoff per failure kind (docs/design.md, "Failures"). */
  backoff: Record<RetryableFailureKind, BackoffRule>;
  /** Honour `Retry-After` within these bounds (RFC 9110 §10.2.3). @default 1 s – 15 min */
  retryAfterMinMs: number;
  retryAfterMaxMs: number;
  /**
   * While a token endpoint is down (docs/design.md, "The IAM is never hammered"), its one probe
   * comes at least this often: the breaker's wait grows with each failed probe as the failure
   * kind's backoff does, up to this, unless the IAM sent `Retry-After`. Every client of the
   * endpoint is live again within about this much (plus its share of `IAM_MAX_RPS`) after it heals.
   * @default 8_000
   */
  probeIntervalMaxMs: number;
  /**
   * After rejected credentials, probe again this often; 0 parks the workflow until `resume` or
   * `reconfigure`. @default 0
   */
  rejectedProbeIntervalMs: number;
  /**
   * Continue-as-new after this many refresh cycles, even if Temporal does not suggest it: each cycle
   * leaves memory in the worker that only the run's end frees (docs/design.md, "Continue-as-new").
   * @default 50
   */
  maxCyclesPerRun: number;
  /**
   * Budget of one token request, from connecting to the last byte of the answer; a request that
   * takes longer (a hang) fails as `blocked`. At most 50 s, inside the IAM activity's 60 s.
   * @default 10_000
   */
  requestTimeoutMs: number;
  /**
   * Renew a token that is current as a local activity, inside the workflow task its timer woke
   * (docs/design.md, "Local renewals"); false sends every request through the IAM task queue, as
   * the first token and every retry after a failure always are. @default true
   */
  localRenewals: boolean;
}

/** A registration's overrides of `RefreshPolicy`: any field, and any part of any backoff rule. */
export type PolicyOverrides = Partial<Omit<RefreshPolicy, 'backoff'>> & {
  backoff?: Partial<Record<RetryableFailureKind, Partial<BackoffRule>>>;
};

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** The defaults of docs/design.md ("Failures"), used where a registration's `policy` is silent. */
export const DEFAULT_POLICY: RefreshPolicy = Object.freeze({
  refreshFraction: 0.85,
  jitterFraction: 0.05,
  defaultExpiresInSeconds: 300,
  minForcedRefreshIntervalMs: 10 * SECOND,
  backoff: Object.freeze({
    rate_limited: Object.freeze({ baseMs: 1 * SECOND, capMs: 60 * SECOND }),
    blocked: Object.freeze({ baseMs: 30 * SECOND, capMs: 15 * MINUTE }),
    server_error: Object.freeze({ baseMs: 2 * SECOND, capMs: 5 * MINUTE }),
    malformed_response: Object.freeze({ baseMs: 2 * SECOND, capMs: 5 * MINUTE }),
    secret_unavailable: Object.freeze({ baseMs: 5 * SECOND, capMs: 5 * MINUTE }),
    store_unavailable: Object.freeze({ baseMs: 1 * SECOND, capMs: 30 * SECOND }),
    // Only when the budget named no wait (it always does): the rule every kind needs.
    login_budget: Object.freeze({ baseMs: 1 * SECOND, capMs: 60 * SECOND }),
  }),
  retryAfterMinMs: 1 * SECOND,
  retryAfterMaxMs: 15 * MINUTE,
  probeIntervalMaxMs: 8 * SECOND,
  rejectedProbeIntervalMs: 0,
  maxCyclesPerRun: 50,
  requestTimeoutMs: 10 * SECOND,
  localRenewals: true,
});

/**
 * The default `maxCyclesPerRun` before it fell to 50: a run that began under it keeps it when it is
 * replayed, or its history (a timer where the new bound continues as new) would not replay
 * (workflows/token-lifecycle.ts, the `lean-cycles` patch).
 */
export const MAX_CYCLES_PER_RUN_BEFORE_PATCH = 500;

/** The longest `requestTimeoutMs`: the IAM activity itself may take 60 s (start-to-close). */
export const MAX_REQUEST_TIMEOUT_MS = 50 * SECOND;

/**
 * The shortest wait after the endpoint breaker held a request back. Its remaining wait may be a
 * few milliseconds; retrying sooner than this would only spin activities.
 */
export const BREAKER_MIN_WAIT_MS = 50;

/** Share of a backoff delay that jitter may take off, so failing clients do not retry in step. */
const BACKOFF_JITTER = 0.2;

/**
 * Merges a registration's overrides onto the defaults; backoff rules merge per failure kind. A
 * field set to `undefined` counts as absent (JSON drops it anyway), so it never erases a default.
 */
export function resolvePolicy(overrides: PolicyOverrides | undefined): RefreshPolicy {
  const { backoff: backoffOverrides, ...fields } = overrides ?? {};
  const backoff = {} as Record<RetryableFailureKind, BackoffRule>;
  for (const kind of RETRYABLE_FAILURE_KINDS) {
    backoff[kind] = { ...DEFAULT_POLICY.backoff[kind], ...definedFields(backoffOverrides?.[kind] ?? {}) };
  }
  return { ...DEFAULT_POLICY, ...definedFields(fields), backoff };
}

function definedFields<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}

/**
 * Problems with a policy override, each naming its path; empty when valid. Checked when a
 * registration is made, so a workflow never runs with a nonsensical policy.
 */
export function policyProblems(policy: RefreshPolicy): string[] {
  const problems: string[] = [];
  const check = (ok: boolean, message: string) => ok || problems.push(message);
  check(policy.refreshFraction > 0 && policy.refreshFraction < 1, 'policy.refreshFraction must be between 0 and 1 (exclusive)');
  check(
    policy.jitterFraction >= 0 && policy.jitterFraction < policy.refreshFraction,
    'policy.jitterFraction must be at least 0 and below refreshFraction',
  );
  check(policy.defaultExpiresInSeconds > 0, 'policy.defaultExpiresInSeconds must be greater than 0');
  check(policy.minForcedRefreshIntervalMs >= 0, 'policy.minForcedRefreshIntervalMs must be at least 0');
  check(
    policy.retryAfterMinMs >= 0 && policy.retryAfterMinMs <= policy.retryAfterMaxMs,
    'policy.retryAfterMinMs must be between 0 and retryAfterMaxMs',
  );
  check(policy.probeIntervalMaxMs >= BREAKER_MIN_WAIT_MS, `policy.probeIntervalMaxMs must be at least ${BREAKER_MIN_WAIT_MS}`);
  check(policy.rejectedProbeIntervalMs >= 0, 'policy.rejectedProbeIntervalMs must be at least 0 (0 disables the probe)');
  check(Number.isInteger(policy.maxCyclesPerRun) && policy.maxCyclesPerRun >= 1, 'policy.maxCyclesPerRun must be an integer of at least 1');
  check(
    policy.requestTimeoutMs > 0 && policy.requestTimeoutMs <= MAX_REQUEST_TIMEOUT_MS,
    `policy.requestTimeoutMs must be greater than 0 and at most ${MAX_REQUEST_TIMEOUT_MS}`,
  );
  for (const [kind, rule] of Object.entries(policy.backoff)) {
    check(rule.baseMs > 0 && rule.capMs >= rule.baseMs, `policy.backoff.${kind} must have baseMs > 0 and capMs >= baseMs`);
  }
  return problems;
}

/**
 * A number in [0, 1) derived from a string (FNV-1a): the same client and generation always get the
 * same jitter, which keeps replays deterministic and spreads different clients apart.
 */
export function jitterUnit(seed: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) {
    hash ^= seed.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) / 0x1_0000_0000;
}

/**
 * When to renew a token: `requestStartedAt + (refreshFraction − jitter) × expires_in`. Measured
 * from when the request started, not when the answer came, so a slow IAM cannot push the renewal
 * past the expiry. Jitter only moves renewals earlier.
 */
export function nextRefreshAt(
  token: { requestStartedAt: number; expiresInSeconds: number },
  policy: RefreshPolicy,
  jitterSeed: string,
): number {
  const fraction = policy.refreshFraction - policy.jitterFraction * jitterUnit(jitterSeed);
  return token.requestStartedAt + Math.round(fraction * token.expiresInSeconds * SECOND);
}

/**
 * A client's renewal point for a token it just obtained: {@link nextRefreshAt} with jitter seeded
 * by the client and the token's generation, never after the token expires. The workflow sleeps
 * until it; the IAM activity stores it with the token (`refresh_at`) for `tokenctl list`
 * (docs/design.md, "Redis layout").
 */
export function renewalAt(
  token: { requestStartedAt: number; expiresInSeconds: number; expiresAt: number; generation: number },
  policy: RefreshPolicy,
  clientId: string,
): number {
  return Math.min(nextRefreshAt(token, policy, `${clientId}#${token.generation}`), token.expiresAt);
}

/**
 * How long to wait after the `failures`-th consecutive failure (1 for the first) of a retryable
 * kind:
 * - when the request was held back before it was sent (`details.heldBack`: the endpoint's
 *   breaker or rate window, or the host's failed-login budget, `login_budget`), what remains of
 *   that wait, at least {@link BREAKER_MIN_WAIT_MS} and at most `retryAfterMaxMs`: it was already
 *   chosen for everyone, and the `Retry-After` floor would only delay the clients that follow a
 *   successful probe;
 * - when the request failed and the endpoint's shared breaker holds every client back
 *   (`details.endpointWaitMs`), that wait, bounded alike: the client waits for the endpoint's next
 *   probe with the others, not a backoff of its own that could outlast the outage;
 * - `Retry-After` when the server sent one with a 429 (clamped to the policy's bounds;
 *   RFC 9110 §10.2.3);
 * - else `base × 2^(failures−1)` up to the cap, less up to 20 % jitter.
 */
export function backoffDelayMs(
  kind: RetryableFailureKind,
  failures: number,
  details: FailureDetails,
  policy: RefreshPolicy,
  jitterSeed: string,
): number {
  if (details.heldBack === true && details.retryAfterMs !== undefined && isHeldBackKind(kind)) {
    return clamp(Math.round(details.retryAfterMs), BREAKER_MIN_WAIT_MS, policy.retryAfterMaxMs);
  }
  if (details.endpointWaitMs !== undefined && isEndpointDownKind(kind)) {
    return clamp(Math.round(details.endpointWaitMs), BREAKER_MIN_WAIT_MS, policy.retryAfterMaxMs);
  }
  if (kind === 'rate_limited' && details.retryAfterMs !== undefined) {
    return clamp(details.retryAfterMs, policy.retryAfterMinMs, policy.retryAfterMaxMs);
  }
  const delay = exponentialDelayMs(policy.backoff[kind], failures);
  return Math.round(delay * (1 - BACKOFF_JITTER * jitterUnit(jitterSeed)));
}

/**
 * How long the endpoint breaker holds every client back after the `openings`-th consecutive
 * failure that says the endpoint is down (1 for the first), that is until its next probe:
 * - `Retry-After` when the server sent one with a 429 or a 5xx (clamped like
 *   {@link backoffDelayMs}; RFC 9110 §10.2.3: the IAM says when to come back);
 * - else the shortest delay that {@link backoffDelayMs} can choose for that failure count without
 *   the breaker (the unjittered delay less the full jitter share), so a probe interval never
 *   exceeds what the client would have waited alone, and at most `probeIntervalMaxMs`: a long
 *   outage is probed at that interval, and its end noticed within it.
 */
export function breakerWaitMs(kind: EndpointDownKind, openings: number, details: FailureDetails, policy: RefreshPolicy): number {
  if (kind !== 'blocked' && details.retryAfterMs !== undefined) {
    return clamp(details.retryAfterMs, policy.retryAfterMinMs, policy.retryAfterMaxMs);
  }
  const wait = Math.floor(exponentialDelayMs(policy.backoff[kind], openings) * (1 - BACKOFF_JITTER));
  return Math.min(wait, policy.probeIntervalMaxMs);
}

function isHeldBackKind(kind: RetryableFailureKind): kind is HeldBackKind {
  return isEndpointDownKind(kind) || kind === 'login_budget';
}

/** True for the failure kinds that open the endpoint's shared breaker. */
export function isEndpointDownKind(kind: FailureKind): kind is EndpointDownKind {
  return kind === 'rate_limited' || kind === 'blocked' || kind === 'server_error';
}

/**
 * `rule.baseMs × 2^(attempt−1)`, capped at `rule.capMs`, for the `attempt`-th consecutive failure
 * (1 for the first; anything lower counts as the first). The one exponential backoff of the
 * project: the workflow's waits, the endpoint breaker's, and the worker's own retries of Redis
 * and Temporal.
 */
export function exponentialDelayMs(rule: BackoffRule, attempt: number): number {
  // 2^30 × any sane base is far past any cap; the bound keeps the power finite.
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  return Math.min(rule.capMs, rule.baseMs * 2 ** exponent);
}

/** What to do with a forced-refresh request. */
export type ForcedRefreshDecision = { action: 'ignore'; why: 'stale_fingerprint' } | { action: 'schedule'; notBefore: number };

/**
 * Decides a forced-refresh request (docs/design.md, "One refresh at a time"). A request naming a
 * fingerprint that is no longer current is ignored: that token was already rotated. Otherwise it is
 * scheduled no earlier than the minimum interval after the last token request started, so a
 * misbehaving consumer cannot hammer the IAM; requests that arrive while one is pending coalesce
 * into it.
 */
export function decideForcedRefresh(
  request: { rejectedFingerprint?: string | undefined },
  current: { fingerprint: string | undefined; lastRequestStartedAt: number | undefined },
  now: number,
  policy: RefreshPolicy,
): ForcedRefreshDecision {
  if (request.rejectedFingerprint !== undefined && request.rejectedFingerprint !== current.fingerprint) {
    return { action: 'ignore', why: 'stale_fingerprint' };
  }
  const earliest = current.lastRequestStartedAt === undefined ? now : current.lastRequestStartedAt + policy.minForcedRefreshIntervalMs;
  return { action: 'schedule', notBefore: Math.max(now, earliest) };
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
