/**
 * The IAM activity's own spans (docs/design.md, "Traces"): the token request and the Redis write,
 * children of the activity's `RunActivity` span. Through `@opentelemetry/api` only: without a
 * registered SDK (a worker without `OTEL_*` settings, worker/tracing.ts) every call is a no-op.
 * What a span may hold is decided here and nowhere else: the request's method, host and port, its
 * outcome and failure kind, the wait it caused, the generation written; never a body, a credential,
 * a token, the URL's path or query, nor an error's message (it may quote the IAM).
 */
import { SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { TokenEndpointError } from './errors.js';

const tracer = () => trace.getTracer('token-lifecycle-worker');

/** Span names, as the trace tests look for them. */
export const TOKEN_REQUEST_SPAN = 'token request';
export const TOKEN_WRITE_SPAN = 'token write';

/**
 * Runs `send` (admission, then the POST to the token endpoint) in a client span naming the
 * endpoint's host. Its attributes say how it ended: `token_lifecycle.outcome` (`issued` or the
 * failure kind), whether it was held back before leaving, and the wait it imposes (the endpoint's
 * `Retry-After`, the breaker's, or the budget's).
 */
export async function inTokenRequestSpan<T>(tokenUrl: string, clientId: string, send: (span: Span) => Promise<T>): Promise<T> {
  const url = new URL(tokenUrl);
  const attributes = {
    'http.request.method': 'POST',
    'url.scheme': url.protocol.replace(/:$/, ''),
    'server.address': url.hostname,
    'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    'token_lifecycle.client_id': clientId,
  };
  return tracer().startActiveSpan(TOKEN_REQUEST_SPAN, { kind: SpanKind.CLIENT, attributes }, async (span) => {
    try {
      const result = await send(span);
      span.setAttribute('token_lifecycle.outcome', 'issued');
      return result;
    } catch (err) {
      const kind = err instanceof TokenEndpointError ? err.kind : 'server_error';
      span.setAttributes({ 'token_lifecycle.outcome': kind, 'error.type': kind });
      if (err instanceof TokenEndpointError) {
        const { status, oauthError, heldBack, retryAfterMs, endpointWaitMs } = err.details;
        if (status !== undefined) span.setAttribute('http.response.status_code', status);
        if (oauthError !== undefined) span.setAttribute('token_lifecycle.oauth_error', oauthError);
        span.setAttribute('token_lifecycle.held_back', heldBack === true);
        const waitMs = endpointWaitMs ?? retryAfterMs;
        if (waitMs !== undefined) span.setAttribute('token_lifecycle.wait_ms', waitMs);
      }
      span.setStatus({ code: SpanStatusCode.ERROR, message: kind });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks, in the request's span, the moment admission let the request leave (the wait before it is the span's start to here). */
export function markRequestAdmitted(span: Span, admittedAfterMs: number): void {
  span.setAttribute('token_lifecycle.admission_wait_ms', admittedAfterMs);
  span.addEvent('admitted');
}

/** Runs the Redis write of `generation` in a span that says whether Redis took it. */
export async function inTokenWriteSpan<T extends { written: boolean }>(
  clientId: string,
  generation: number,
  write: () => Promise<T>,
): Promise<T> {
  const attributes = { 'db.system.name': 'redis', 'token_lifecycle.client_id': clientId, 'token_lifecycle.generation': generation };
  return tracer().startActiveSpan(TOKEN_WRITE_SPAN, { kind: SpanKind.CLIENT, attributes }, async (span) => {
    try {
      const result = await write();
      span.setAttribute('token_lifecycle.written', result.written);
      return result;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'store_unavailable' });
      throw err;
    } finally {
      span.end();
    }
  });
}
