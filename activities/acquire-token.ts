/**
 * The activity that calls the IAM. It resolves the secret on the worker, requests a token, writes
 * it to Redis itself and returns metadata only, so neither the secret nor the token ever enters
 * Temporal (invariant 1): histories are visible to every operator in the UI.
 */
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import type { AuthMethod, FailureDetails, FailureKind, SecretRef, TokenMetadata } from '../workflows/registration.js';
import { SecretUnavailableError, TokenEndpointError } from './errors.js';
import { resolveSecret } from './secrets.js';
import { requestToken } from './token-endpoint.js';
import type { TokenStore } from './token-store.js';

/** Input of {@link AcquireToken}: a registration's public part plus the generation to write. */
export interface AcquireTokenInput {
  clientId: string;
  tokenUrl: string;
  authMethod: AuthMethod;
  secretRef: SecretRef;
  scope?: string;
  extraParams?: Record<string, string>;
  /** Written only if newer than the generation Redis holds (invariant 3). */
  generation: number;
  /** Lifetime to assume when the IAM omits `expires_in` (RFC 6749 §5.1 makes it RECOMMENDED). */
  defaultExpiresInSeconds: number;
}

export type AcquireToken = (input: AcquireTokenInput) => Promise<TokenMetadata>;

export interface AcquireTokenDeps {
  store: TokenStore;
  env?: NodeJS.ProcessEnv;
  /** Called with each outcome, for metrics. */
  onOutcome?: (clientId: string, outcome: FailureKind | 'issued', seconds: number) => void;
}

/** Heartbeats while the request is in flight, so a lost worker is noticed within seconds. */
const HEARTBEAT_INTERVAL_MS = 1000;

export function createAcquireToken({ store, env = process.env, onOutcome }: AcquireTokenDeps): AcquireToken {
  return async function acquireToken(input) {
    const context = Context.current();
    const heartbeat = setInterval(() => context.heartbeat(), HEARTBEAT_INTERVAL_MS);
    const requestStartedAt = Date.now();
    try {
      const metadata = await acquireAndStore(input, requestStartedAt, context.cancellationSignal);
      onOutcome?.(input.clientId, 'issued', (Date.now() - requestStartedAt) / 1000);
      log.info('Token acquired', { clientId: input.clientId, generation: metadata.generation, fingerprint: metadata.fingerprint, expiresAt: new Date(metadata.expiresAt).toISOString(), written: metadata.written });
      return metadata;
    } catch (err) {
      // A cancelled activity stays a cancellation: it says nothing about the IAM.
      if (context.cancellationSignal.aborted) throw err;
      const failure = toFailure(err);
      onOutcome?.(input.clientId, failure.type as FailureKind, (Date.now() - requestStartedAt) / 1000);
      log.warn('Token request failed', { clientId: input.clientId, kind: failure.type, message: failure.message });
      throw failure;
    } finally {
      clearInterval(heartbeat);
    }
  };

  async function acquireAndStore(input: AcquireTokenInput, requestStartedAt: number, signal: AbortSignal): Promise<TokenMetadata> {
    const clientSecret = await resolveSecret(input.secretRef, env);
    // Ask Redis first: a token that cannot be stored would be a wasted request to the IAM.
    await storeCall(() => store.readGeneration(input.clientId));

    const response = await requestToken({
      tokenUrl: input.tokenUrl,
      clientId: input.clientId,
      clientSecret,
      authMethod: input.authMethod,
      signal,
      ...(input.scope !== undefined && { scope: input.scope }),
      ...(input.extraParams !== undefined && { extraParams: input.extraParams }),
    });
    const expiresInSeconds = response.expiresInSeconds ?? input.defaultExpiresInSeconds;
    // Counted from when the request started: the token cannot be older than that, so Redis lets
    // it go no later than the IAM does (invariant 2).
    const expiresAt = requestStartedAt + expiresInSeconds * 1000;
    const fingerprint = response.accessToken.fingerprint();
    const scope = response.scope ?? input.scope ?? '';
    const tokenType = response.tokenType;
    const obtainedAt = Date.now();

    const result = await storeCall(() =>
      store.write({ clientId: input.clientId, accessToken: response.accessToken.reveal(), tokenType, scope, generation: input.generation, obtainedAt, expiresAt, fingerprint }),
    );
    if (result.written) {
      return { clientId: input.clientId, generation: input.generation, fingerprint, tokenType, scope, requestStartedAt, obtainedAt, expiresAt, expiresInSeconds, written: true };
    }
    if (result.reason === 'expired') {
      throw new TokenEndpointError('malformed_response', `"response" body "expires_in" (${expiresInSeconds} s) ended before the token could be stored`, {});
    }
    // A newer generation is already stored (this is a retried attempt): report what Redis holds.
    const stored = await storeCall(() => store.readMetadata(input.clientId));
    const held = stored ?? { ...result.stored, tokenType, scope, obtainedAt };
    return {
      clientId: input.clientId,
      generation: held.generation,
      fingerprint: held.fingerprint,
      tokenType: held.tokenType,
      scope: held.scope,
      requestStartedAt: held.obtainedAt,
      obtainedAt: held.obtainedAt,
      expiresAt: held.expiresAt,
      expiresInSeconds: Math.max(0, (held.expiresAt - held.obtainedAt) / 1000),
      written: false,
    };
  }
}

class StoreUnavailableError extends Error {
  readonly code = 'store_unavailable';
}

async function storeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw new StoreUnavailableError(`Redis is unavailable: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Every outcome becomes a non-retryable `ApplicationFailure` whose type is the failure kind: the
 * workflow, not Temporal's retry policy, decides when to try again (DESIGN.md, failure kinds).
 */
function toFailure(err: unknown): ApplicationFailure {
  let kind: FailureKind = 'server_error';
  let details: FailureDetails = {};
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof TokenEndpointError) {
    kind = err.kind;
    details = err.details;
  } else if (err instanceof SecretUnavailableError) {
    kind = 'secret_unavailable';
  } else if (err instanceof StoreUnavailableError) {
    kind = 'store_unavailable';
  } else {
    message = `Unexpected error while acquiring a token: ${message}`;
  }
  return ApplicationFailure.create({ type: kind, message, details: [details], nonRetryable: true });
}
