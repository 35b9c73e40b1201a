/**
 * The activity that calls the IAM. It resolves the credentials on the worker (every reference,
 * for every request: docs/design.md, "References"), finds the token endpoint (the registration's,
 * or its issuer's from discovery), requests a token, writes it to Redis itself and returns metadata
 * only, so neither a secret, a key nor the token ever enters Temporal (docs/design.md, "No secret
 * in Temporal"): histories are visible to every operator in the UI.
 *
 * Before sending, the request passes its admission (activities/request-admission.ts: the
 * endpoint's shared breaker, the host's failed-login budget and one-second window, the breaker
 * again). While the breaker is open after the endpoint was seen down, or another client probes it,
 * or unproven credentials must wait for the budget, no request is sent and the activity fails with
 * that kind, `heldBack` and the remaining wait (docs/design.md, "The IAM is never hammered").
 */
import type { Span } from '@opentelemetry/api';
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { ApplicationFailureCategory } from '@temporalio/common';
import { renewalAt, resolvePolicy } from '../workflows/policy.js';
import type { ClientRegistration } from '../workflows/registration.js';
import type { FailureDetails, FailureKind } from '../workflows/failures.js';
import type { RefreshPolicy } from '../workflows/policy.js';
import type { TokenMetadata } from '../workflows/token-metadata.js';
import { EndpointBreaker } from './endpoint-breaker.js';
import { EndpointRateWindow } from './endpoint-rate-window.js';
import { RequestHeldBackError, StoreUnavailableError, storeCall, TokenEndpointError } from './errors.js';
import { acceptedFirst, credentialCandidates, mayTryNextCredential, type CredentialCandidate } from './credential-fallbacks.js';
import { LoginBudget, loginProof, type LoginBudgetObserver, type LoginCredentials, type LoginProofKey } from './login-budget.js';
import { LOCAL_ADMISSION_MAX_WAIT_MS, QUEUED_ADMISSION_MAX_WAIT_MS, RequestAdmission } from './request-admission.js';
import { credentialMac, resolveRequestCredentials, type RequestCredentials } from './request-credentials.js';
import { requestToken, type TokenResponse } from './token-endpoint.js';
import { inTokenRequestSpan, inTokenWriteSpan, markRequestAdmitted } from './spans.js';
import type { TokenStore } from '../shared/token-store.js';
import { errorMessage } from '../shared/error-message.js';
import { SecretUnavailableError } from '../shared/secret-unavailable-error.js';
import { DiscoveryError, discoveryUrls, fetchIssuerMetadata, IssuerMetadataCache, tokenEndpointFor } from '../shared/discovery.js';
import { isMtlsMethod } from '../workflows/registration.js';

/**
 * Input of {@link AcquireToken}: the registration (references only, no secret) plus the generation
 * to write. Of the registration's `policy`, the activity uses the request timeout and, when this
 * request opens the endpoint breaker, the wait it imposes (the `rate_limited` / `blocked` backoff
 * and the `Retry-After` bounds).
 */
export interface AcquireTokenInput extends ClientRegistration {
  /** Written only if newer than the generation Redis holds (docs/design.md, "No stale overwrite"). */
  generation: number;
  /**
   * Set until the workflow knows what Redis held before it started (a fresh registration, maybe
   * of a client that was removed): the token is written with at least one more than the highest
   * generation Redis ever held for the client, so generations keep increasing across remove and
   * register again. The result says which generation was written.
   */
  afterStoredGeneration?: boolean;
  /** Lifetime to assume when the IAM omits `expires_in` (RFC 6749 §5.1 makes it RECOMMENDED). */
  defaultExpiresInSeconds: number;
}

export type AcquireToken = (input: AcquireTokenInput) => Promise<TokenMetadata>;

export interface AcquireTokenDeps {
  store: TokenStore;
  /** Token requests per IAM host in any one-second window, fleet-wide: `IAM_MAX_RPS`. */
  iamMaxRps: number;
  /** Where `env:` references are resolved. The proxy variables are always the process's own. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Issuers' metadata, per worker process. @default a cache of `DISCOVERY_CACHE_TTL_MS` (shared/discovery.ts) */
  discovery?: IssuerMetadataCache;
  /**
   * Called with the outcome of each request sent to the IAM and the seconds since it left, for
   * metrics. Not for an attempt that sent nothing (a reference unreadable, Redis down, the breaker
   * or the login budget holding it back).
   */
  onOutcome?: (clientId: string, outcome: FailureKind | 'issued', seconds: number) => void;
  /** The shared breaker of token endpoints. @default one on the token store's Redis client and prefix */
  breaker?: EndpointBreaker;
  /**
   * Called when this worker sees the breaker of `endpoint` (the token URL's origin and path) open
   * or close, for metrics; the first request to an endpoint reports its state too, so a gauge
   * starts at 0. Each worker reports what it saw.
   */
  onBreakerChange?: (endpoint: string, open: boolean) => void;
  /** The key of the proofs of accepted credentials (`LOGIN_PROOF_KEY`); only the workers have it. */
  loginProofKey: LoginProofKey;
  /** The failed-login budget. @default one on the token store's Redis client and prefix, with its defaults */
  loginBudget?: LoginBudget;
  /** Called when unproven credentials wait for a host's budget, for metrics. */
  onLoginBudgetWait?: LoginBudgetObserver;
  /** Called with the host of each rejected login, for metrics. */
  onRejectedLogin?: (host: string) => void;
  /**
   * Wakes the workflows that waited for an endpoint (soonest-expiring token first) once a probe
   * closed its breaker (docs/design.md, "The IAM is never hammered"): the worker signals them.
   * Without it they come back at the end of their wait, which the breaker bounds.
   */
  onEndpointRecovered?: (endpoint: string, workflowIds: readonly string[]) => Promise<void>;
}

/** When the attempt's request left for the IAM; null while nothing was sent. */
interface SentRequest {
  at: number | null;
}

/** Heartbeats while the request is in flight, so a lost worker is noticed within seconds. */
const HEARTBEAT_INTERVAL_MS = 1000;

export function createAcquireToken(deps: AcquireTokenDeps): AcquireToken {
  const acquirer = new TokenAcquirer(deps);
  return (input) => acquirer.acquire(input);
}

/**
 * One worker's IAM activity: its credentials, the admission of each request (breaker, failed-login
 * budget, rate window), the request, and the token's write to Redis (docs/design.md, "The pieces").
 */
class TokenAcquirer {
  private readonly store: TokenStore;
  private readonly env: NodeJS.ProcessEnv;
  private readonly onOutcome: AcquireTokenDeps['onOutcome'];
  private readonly loginProofKey: LoginProofKey;
  private readonly loginBudget: LoginBudget;
  private readonly admission: RequestAdmission;
  private readonly discovery: IssuerMetadataCache;

  constructor({
    store,
    env = process.env,
    onOutcome,
    onBreakerChange,
    onLoginBudgetWait,
    onRejectedLogin,
    onEndpointRecovered,
    iamMaxRps,
    loginProofKey,
    ...deps
  }: AcquireTokenDeps) {
    this.store = store;
    this.env = env;
    this.onOutcome = onOutcome;
    this.loginProofKey = loginProofKey;
    const loginBudget = deps.loginBudget ?? new LoginBudget(store.redis, { prefix: store.prefix });
    const admission = new RequestAdmission({
      breaker: deps.breaker ?? new EndpointBreaker(store.redis, { prefix: store.prefix }),
      loginBudget,
      rateWindow: new EndpointRateWindow(store.redis, { prefix: store.prefix, limit: iamMaxRps }),
      loginProofKey,
      ...(onBreakerChange !== undefined && { onBreakerChange }),
      ...(onLoginBudgetWait !== undefined && { onLoginBudgetWait }),
      ...(onRejectedLogin !== undefined && { onRejectedLogin }),
      ...(onEndpointRecovered !== undefined && { onEndpointRecovered }),
    });
    this.loginBudget = loginBudget;
    this.admission = admission;
    // A discovery read is a request to the IAM host too: it takes a slot in the host's window.
    this.discovery =
      deps.discovery ??
      new IssuerMetadataCache(async (issuer, options) => {
        // Discovery documents are cached, so this wait is rare even in a local activity.
        await admission.rateSlot(discoveryUrls(issuer)[0]!, options.signal, QUEUED_ADMISSION_MAX_WAIT_MS);
        return fetchIssuerMetadata(issuer, options);
      });
  }

  async acquire(input: AcquireTokenInput): Promise<TokenMetadata> {
    const context = Context.current();
    // A local activity has no heartbeat: its worker's loss times out the workflow task instead.
    const heartbeat = context.info.isLocal ? undefined : setInterval(() => context.heartbeat(), HEARTBEAT_INTERVAL_MS);
    // Set by acquireAndStore when the request leaves: only a request sent has an outcome to count.
    const sent: SentRequest = { at: null };
    const recordOutcome = (outcome: FailureKind | 'issued') => {
      if (sent.at !== null) this.onOutcome?.(input.clientId, outcome, (Date.now() - sent.at) / 1000);
    };
    try {
      const metadata = await this.acquireAndStore(input, context.cancellationSignal, sent);
      recordOutcome('issued');
      log.info('Token acquired', {
        clientId: input.clientId,
        generation: metadata.generation,
        fingerprint: metadata.fingerprint,
        expiresAt: new Date(metadata.expiresAt).toISOString(),
        written: metadata.written,
      });
      return metadata;
    } catch (err) {
      // A cancelled activity stays a cancellation: it says nothing about the IAM.
      if (context.cancellationSignal.aborted) throw err;
      const failure = toFailure(err);
      if (err instanceof RequestHeldBackError) {
        log.info('Token request held back', { clientId: input.clientId, kind: failure.type, retryAfterMs: err.details.retryAfterMs });
      } else {
        recordOutcome(failure.type as FailureKind);
        log.warn('Token request failed', { clientId: input.clientId, kind: failure.type, message: failure.message });
      }
      throw failure;
    } finally {
      clearInterval(heartbeat);
    }
  }

  private async acquireAndStore(input: AcquireTokenInput, signal: AbortSignal, sent: SentRequest): Promise<TokenMetadata> {
    // Everything that authenticates this request, read now (docs/design.md, "References"); with
    // fallbacks, the one the IAM accepted last time first (docs/design.md, "Fallback credentials").
    const candidates = credentialCandidates(input);
    // The first fallback that can be read now (the new secret of a rotation may not be written yet).
    const credentials = await this.firstReadable(candidates);
    // Ask Redis first: a token that cannot be stored would be a wasted request to the IAM.
    const highestStored = await storeCall(() => this.store.readHighestGeneration(input.clientId));
    // (A retried attempt whose first try wrote its token then writes the next generation: the
    // request is sent again anyway.)
    const generation = input.afterStoredGeneration === true ? Math.max(input.generation, highestStored + 1) : input.generation;
    // A run again of an attempt whose token is stored already: its local activity finished, but its
    // workflow task timed out before recording it (docs/design.md, "Local renewals"). Answer with
    // that token and send nothing. Not with fallbacks: which one was accepted is not stored.
    if (input.afterStoredGeneration !== true && highestStored >= generation && candidates.length === 1) {
      const stored = await storeCall(() => this.store.readMetadata(input.clientId));
      if (stored !== null && stored.generation >= generation) return heldToken(input.clientId, stored, undefined);
    }
    const policy = resolvePolicy(input.policy);
    const tokenUrl = await this.tokenEndpointOf(input, credentials, policy, signal);
    const ordered = acceptedFirst(candidates, await this.acceptedCandidate(input, candidates, tokenUrl));
    let response: TokenResponse | undefined;
    let credential: string | undefined;
    for (const [index, candidate] of ordered.entries()) {
      try {
        const candidateCredentials = await resolveRequestCredentials(candidate.registration, this.env);
        response = await this.send(input, candidateCredentials, tokenUrl, policy, signal, sent);
        credential = candidate.label;
        break;
      } catch (err) {
        // The next fallback only after invalid_client, and only within the failed-login budget:
        // it is unproven, so passLoginBudget may hold it back.
        if (index === ordered.length - 1 || !mayTryNextCredential(err)) throw err;
        log.warn('Credential refused: trying the next fallback', {
          clientId: input.clientId,
          refused: candidate.label,
          next: ordered[index + 1]!.label,
        });
      }
    }
    if (response === undefined) throw new Error('No credential to send');
    return this.storeToken(input, generation, response, policy, credential);
  }

  /**
   * Writes the token as `generation` unless Redis holds a newer one (a retried attempt), and says
   * what Redis holds (docs/design.md, "No stale overwrite").
   */
  private async storeToken(
    input: AcquireTokenInput,
    generation: number,
    response: TokenResponse,
    policy: RefreshPolicy,
    credential: string | undefined,
  ): Promise<TokenMetadata> {
    // Counted from the moment the request left, after the breaker and the rate window: the token
    // cannot be older than that, so Redis lets it go no later than the IAM does (docs/design.md,
    // "No expired token served"), and the workflow counts the minimum interval between forced
    // refreshes from it (docs/design.md, "One refresh at a time").
    const { requestStartedAt } = response;
    const { expiresAt, expiresInSeconds } = tokenLifetime(response, input.defaultExpiresInSeconds);
    const fingerprint = response.accessToken.fingerprint();
    const scope = response.scope ?? input.scope ?? '';
    const tokenType = response.tokenType;
    const obtainedAt = Date.now();

    const result = await inTokenWriteSpan(input.clientId, generation, () =>
      storeCall(() =>
        this.store.write({
          clientId: input.clientId,
          accessToken: response.accessToken.reveal(),
          tokenType,
          scope,
          generation,
          obtainedAt,
          expiresAt,
          fingerprint,
          refreshAt: renewalAt({ requestStartedAt, expiresInSeconds, expiresAt, generation }, policy, input.clientId),
        }),
      ),
    );
    if (result.written) {
      return {
        clientId: input.clientId,
        generation,
        fingerprint,
        tokenType,
        scope,
        requestStartedAt,
        obtainedAt,
        expiresAt,
        expiresInSeconds,
        written: true,
        ...(credential !== undefined && { credential }),
      };
    }
    if (result.reason === 'expired') {
      throw new TokenEndpointError(
        'malformed_response',
        `"response" body "expires_in" (${expiresInSeconds} s) ended before the token could be stored`,
        {},
      );
    }
    // A newer generation is already stored (this is a retried attempt): report what Redis holds.
    const stored = await storeCall(() => this.store.readMetadata(input.clientId));
    return heldToken(input.clientId, stored ?? { ...result.stored, tokenType, scope, obtainedAt }, credential);
  }

  /** The credentials of the first candidate that resolves; the first one's error when none does. */
  private async firstReadable(candidates: readonly CredentialCandidate[]): Promise<RequestCredentials> {
    let firstError: unknown;
    for (const candidate of candidates) {
      try {
        return await resolveRequestCredentials(candidate.registration, this.env);
      } catch (err) {
        firstError ??= err;
      }
    }
    throw firstError;
  }

  /** One token request with `credentials`, through its admission (the breaker, the failed-login budget, the rate window). */
  private async send(
    input: AcquireTokenInput,
    credentials: RequestCredentials,
    tokenUrl: string,
    policy: RefreshPolicy,
    signal: AbortSignal,
    sent: SentRequest,
  ): Promise<TokenResponse> {
    return inTokenRequestSpan(tokenUrl, input.clientId, (span) =>
      this.admitAndSend(input, credentials, tokenUrl, policy, signal, sent, span),
    );
  }

  private async admitAndSend(
    input: AcquireTokenInput,
    credentials: RequestCredentials,
    tokenUrl: string,
    policy: RefreshPolicy,
    signal: AbortSignal,
    sent: SentRequest,
    span: Span,
  ): Promise<TokenResponse> {
    const { workflowExecution, activityId } = Context.current().info;
    const workflowId = workflowExecution?.workflowId ?? input.clientId;
    const admissionStartedAt = Date.now();
    // By the endpoint requests go to, discovered or registered: every client of it shares one breaker.
    const admitted = await this.admission.admit({
      login: this.loginCredentials(input, credentials, tokenUrl),
      policy,
      // A retry of this activity after its worker died takes back the probe and the login turn
      // that worker held.
      owner: `${workflowId}/${activityId}`,
      workflowId,
      tokenExpiresAt: async () => (await this.store.readMetadata(input.clientId))?.expiresAt ?? 0,
      signal,
      maxWaitMs: Context.current().info.isLocal ? LOCAL_ADMISSION_MAX_WAIT_MS : QUEUED_ADMISSION_MAX_WAIT_MS,
    });

    let response: TokenResponse;
    sent.at = Date.now();
    markRequestAdmitted(span, sent.at - admissionStartedAt);
    try {
      response = await admitted.send(() =>
        requestToken({
          ...credentials,
          tokenUrl,
          signal,
          timeoutMs: policy.requestTimeoutMs,
          ...(input.assertionAudience !== undefined && { assertionAudience: input.assertionAudience }),
          ...(input.proxyUrl !== undefined && { proxyUrl: input.proxyUrl }),
          ...(input.scope !== undefined && { scope: input.scope }),
          ...(input.extraParams !== undefined && { extraParams: input.extraParams }),
        }),
      );
    } catch (err) {
      const endpointWaitMs = await admitted.report(err);
      throw endpointWaitMs === undefined ? err : withEndpointWait(err as TokenEndpointError, endpointWaitMs);
    } finally {
      // A service-account assertion goes to the IAM once (docs/design.md, "Service-account assertions").
      credentials.mintedAssertion?.spend?.();
      if (credentials.grantAssertion !== undefined && 'minted' in credentials.grantAssertion) credentials.grantAssertion.minted.spend?.();
    }
    await admitted.report(undefined);
    return response;
  }

  /**
   * The index of the fallback the IAM accepted last time: the one whose login proof is stored
   * (docs/design.md, "The failed-login budget"). One that cannot be read now is not it.
   */
  private async acceptedCandidate(
    input: AcquireTokenInput,
    candidates: readonly CredentialCandidate[],
    tokenUrl: string,
  ): Promise<number | undefined> {
    if (candidates.length < 2) return undefined;
    for (const [index, candidate] of candidates.entries()) {
      const credentials = await resolveRequestCredentials(candidate.registration, this.env).catch(() => undefined);
      if (credentials === undefined) continue;
      const proof = loginProof(this.loginProofKey, this.loginCredentials(input, credentials, tokenUrl));
      if (await storeCall(() => this.loginBudget.isProven(input.clientId, proof))) return index;
    }
    return undefined;
  }

  /** What the failed-login budget proves of a request: which credential goes to which endpoint, as a MAC. */
  private loginCredentials(input: AcquireTokenInput, requestCredentials: RequestCredentials, tokenUrl: string): LoginCredentials {
    return {
      clientId: input.clientId,
      tokenUrl,
      authMethod: input.authMethod,
      // Which credential is sent, under the workers' key: never the credential itself.
      material: credentialMac(requestCredentials, this.loginProofKey.reveal()),
    };
  }

  /**
   * The token endpoint of this request: the registration's `tokenUrl`, or its issuer's
   * `token_endpoint` (the mTLS alias for the mTLS methods, RFC 8705 §5), from the process's cache
   * of discovery documents (docs/design.md, "Discovery").
   */
  private async tokenEndpointOf(
    input: AcquireTokenInput,
    credentials: RequestCredentials,
    policy: RefreshPolicy,
    signal: AbortSignal,
  ): Promise<string> {
    if (input.tokenUrl !== undefined) return input.tokenUrl;
    if (input.issuer === undefined)
      throw new DiscoveryError('malformed_response', 'The registration names neither a tokenUrl nor an issuer');
    const metadata = await this.discovery.get(input.issuer, {
      egress: { proxyUrl: input.proxyUrl, trustedCa: credentials.trustedCa },
      timeoutMs: policy.requestTimeoutMs,
      signal,
    });
    return tokenEndpointFor(metadata, isMtlsMethod(input.authMethod));
  }
}

/** The metadata of a token Redis holds already, as an attempt that wrote nothing reports it. */
function heldToken(
  clientId: string,
  held: Pick<TokenMetadata, 'generation' | 'fingerprint' | 'tokenType' | 'scope' | 'obtainedAt' | 'expiresAt'>,
  credential: string | undefined,
): TokenMetadata {
  return {
    clientId,
    generation: held.generation,
    fingerprint: held.fingerprint,
    tokenType: held.tokenType,
    scope: held.scope,
    requestStartedAt: held.obtainedAt,
    obtainedAt: held.obtainedAt,
    expiresAt: held.expiresAt,
    expiresInSeconds: Math.max(0, (held.expiresAt - held.obtainedAt) / 1000),
    written: false,
    ...(credential !== undefined && { credential }),
  };
}

/** The shortest lifetime accepted: a token that expires sooner would make the workflow renew in a tight loop. */
const MIN_LIFETIME_MS = 1000;

/**
 * When a token expires (docs/design.md, "Token expiry"): `expires_in` after the request left, but
 * never after the token's own JWT `exp`; with no `expires_in`, the JWT's `exp`, and only then the
 * registration's default (RFC 6749 §5.1 makes `expires_in` only RECOMMENDED).
 *
 * @throws {@link TokenEndpointError} `malformed_response` when that leaves less than a second: a
 *   JWT whose `exp` is already past by the worker's clock (or the IAM's clock is off).
 */
export function tokenLifetime(
  response: Pick<TokenResponse, 'expiresInSeconds' | 'jwtExpiresAt' | 'requestStartedAt'>,
  defaultExpiresInSeconds: number,
): { expiresAt: number; expiresInSeconds: number } {
  const start = response.requestStartedAt;
  const byExpiresIn = response.expiresInSeconds === undefined ? undefined : start + response.expiresInSeconds * 1000;
  const candidates = [byExpiresIn, response.jwtExpiresAt].filter((at): at is number => at !== undefined);
  const expiresAt = candidates.length > 0 ? Math.min(...candidates) : start + defaultExpiresInSeconds * 1000;
  if (expiresAt - start < MIN_LIFETIME_MS) {
    throw new TokenEndpointError(
      'malformed_response',
      `"response" access token's JWT "exp" (${new Date(expiresAt).toISOString()}) is not after the request started (${new Date(start).toISOString()}): the IAM's clock or the worker's is off`,
      {},
    );
  }
  return { expiresAt, expiresInSeconds: (expiresAt - start) / 1000 };
}

/**
 * `error` with the wait the endpoint's breaker now imposes on every client: the workflow waits that
 * long, with the others (`FailureDetails.endpointWaitMs`).
 */
function withEndpointWait(error: TokenEndpointError, endpointWaitMs: number): TokenEndpointError {
  return new TokenEndpointError(error.kind, error.message, { ...error.details, endpointWaitMs }, error.response);
}

/**
 * Every outcome becomes a non-retryable `ApplicationFailure` whose type is the failure kind: the
 * workflow, not Temporal's retry policy, decides when to try again (docs/design.md, "Failures").
 * A failure this module classified is BENIGN: `acquireToken` has logged it in one line with its
 * kind, so the SDK logs it at debug rather than again at warn with a stack trace. Unexpected errors
 * keep the SDK's warning, stack included.
 */
function toFailure(err: unknown): ApplicationFailure {
  let kind: FailureKind = 'server_error';
  let details: FailureDetails = {};
  let message = errorMessage(err);
  let category: ApplicationFailureCategory | undefined = ApplicationFailureCategory.BENIGN;
  if (err instanceof TokenEndpointError) {
    kind = err.kind;
    details = err.details;
  } else if (err instanceof SecretUnavailableError) {
    kind = 'secret_unavailable';
  } else if (err instanceof DiscoveryError) {
    kind = err.kind;
  } else if (err instanceof StoreUnavailableError) {
    kind = 'store_unavailable';
  } else {
    message = `Unexpected error while acquiring a token: ${message}`;
    category = undefined;
  }
  return ApplicationFailure.create({ type: kind, message, details: [{ ...details, failedAt: Date.now() }], nonRetryable: true, category });
}
