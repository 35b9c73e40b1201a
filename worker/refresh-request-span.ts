/**
 * The span of one refresh-requests stream entry (docs/design.md, "Traces"): a consumer span whose
 * parent is the entry's `traceparent`, so the worker's part of a refresh joins the requesting
 * service's trace; the `forceRefresh` signal then carries this span's own `traceparent`, and the
 * workflow's forced refresh becomes its child. Through `@opentelemetry/api` only: a no-op unless
 * worker/tracing.ts registered the SDK.
 */
import { isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Span } from '@opentelemetry/api';
import { formatTraceparent, parseTraceparent } from 'token-lifecycle/contract';

/** The span's name, as the trace tests look for it. */
export const REFRESH_REQUEST_SPAN = 'refresh request';

/** What became of an entry: `signalled`, or why not. */
export type RefreshRequestOutcome = 'signalled' | 'malformed' | 'stale' | 'refused' | 'not_registered';

/**
 * Runs `handle` in the entry's span. `handle` gets the `traceparent` its signal should carry: this
 * span's, when tracing; else the entry's own, passed on unchanged.
 */
export async function inRefreshRequestSpan(
  stream: string,
  entryId: string,
  clientId: string | undefined,
  entryTraceparent: string | undefined,
  handle: (signalTraceparent: string | undefined) => Promise<RefreshRequestOutcome>,
): Promise<void> {
  const requester = parseTraceparent(entryTraceparent);
  const parent =
    requester === undefined
      ? ROOT_CONTEXT
      : trace.setSpanContext(ROOT_CONTEXT, { ...requester, traceFlags: requester.traceFlags & TraceFlags.SAMPLED, isRemote: true });
  const attributes = {
    'messaging.system': 'redis',
    'messaging.operation.type': 'process',
    'messaging.destination.name': stream,
    'messaging.message.id': entryId,
    ...(clientId !== undefined && { 'token_lifecycle.client_id': clientId }),
  };
  const tracer = trace.getTracer('token-lifecycle-worker');
  await tracer.startActiveSpan(REFRESH_REQUEST_SPAN, { kind: SpanKind.CONSUMER, attributes }, parent, async (span) => {
    try {
      span.setAttribute('token_lifecycle.request_outcome', await handle(traceparentOf(span) ?? entryTraceparent));
    } catch (err) {
      // Retried later: Redis or Temporal did not answer. Not the message: it may name a server's reply.
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'retried' });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The W3C `traceparent` of a real span; undefined for the API's no-op one. */
function traceparentOf(span: Span): string | undefined {
  return isSpanContextValid(span.spanContext()) ? formatTraceparent(span.spanContext()) : undefined;
}
