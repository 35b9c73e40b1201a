/**
 * A forced refresh in the trace of the request that asked for it (docs/design.md, "Traces"): the
 * `forceRefresh` signal's `traceparent` becomes the parent of a `ForcedRefresh` span, inside which
 * the IAM activity is scheduled, so its spans follow. Through `@opentelemetry/api` only: in the
 * traced bundle the workflow interceptors have registered their tracer provider, whose spans leave
 * through a sink (not recorded in history: replay is untouched, and span IDs come from the
 * sandbox's seeded Math.random). The plain bundle has no API at all (worker/workflow-bundle.ts
 * aliases it to an empty module): there a traceparent is ignored and the refresh runs as it is.
 */
import * as otelApi from '@opentelemetry/api';
import type { Attributes } from '@opentelemetry/api';
import { parseTraceparent } from 'token-lifecycle/traceparent';

/** The span's name, as the trace tests look for it. */
export const FORCED_REFRESH_SPAN = 'ForcedRefresh';

/** The API, or undefined in the plain bundle, where the module is empty and none of its names exists. */
const otel: typeof otelApi | undefined = (otelApi as Partial<typeof otelApi>).trace === undefined ? undefined : otelApi;

/**
 * Runs `attempt` in a `ForcedRefresh` span whose parent is `traceparent`; without a valid one (none
 * was sent, or it was malformed: the W3C rule drops it), or in the plain bundle, runs it as it is.
 */
export async function inRequesterTrace<T>(traceparent: string | undefined, attributes: Attributes, attempt: () => Promise<T>): Promise<T> {
  const requester = parseTraceparent(traceparent);
  if (requester === undefined || otel === undefined) return attempt();
  const { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags } = otel;
  const parent = trace.setSpanContext(ROOT_CONTEXT, {
    ...requester,
    traceFlags: requester.traceFlags & TraceFlags.SAMPLED,
    isRemote: true,
  });
  const tracer = trace.getTracer('token-lifecycle-workflow');
  return tracer.startActiveSpan(FORCED_REFRESH_SPAN, { kind: SpanKind.INTERNAL, attributes }, parent, async (span) => {
    try {
      return await attempt();
    } catch (err) {
      // The failure kind only: a failure's message may quote the IAM.
      span.setStatus({ code: SpanStatusCode.ERROR, message: failureType(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

function failureType(err: unknown): string {
  const cause = (err as { cause?: { type?: unknown } } | null)?.cause;
  return typeof cause?.type === 'string' ? cause.type : 'failed';
}
