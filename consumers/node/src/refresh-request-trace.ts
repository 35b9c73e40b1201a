/**
 * The trace context of a refresh request (docs/redis-contract.md; docs/design.md, "Traces"): when
 * the application uses OpenTelemetry, the request gets a producer span of its own, child of the
 * span active when the token was refused, and the stream entry carries that span's `traceparent`,
 * so the worker's spans for the refresh join the application's trace. `@opentelemetry/api` is an
 * optional peer dependency, loaded on the first request: without it nothing is traced, and
 * nothing fails.
 */
import type * as OpenTelemetryApi from '@opentelemetry/api';
import { formatTraceparent } from './traceparent.js';

/** The library's span around one refresh request. */
export const REFRESH_REQUEST_SPAN = 'token-lifecycle refresh request';

let api: Promise<typeof OpenTelemetryApi | undefined> | undefined;

/** `@opentelemetry/api` if the application has it, else undefined; looked up once. */
function openTelemetry(): Promise<typeof OpenTelemetryApi | undefined> {
  api ??= import('@opentelemetry/api').then(
    (module) => module,
    () => undefined,
  );
  return api;
}

/**
 * Runs `send` with the `traceparent` its entry should carry: the application's, through a span of
 * this library named {@link REFRESH_REQUEST_SPAN}; undefined without OpenTelemetry, or when no
 * span is active and no SDK records one.
 */
export async function inRefreshRequestSpan<T>(
  attributes: Record<string, string>,
  send: (traceparent: string | undefined) => Promise<T>,
): Promise<T> {
  const otel = await openTelemetry();
  if (otel === undefined) return send(undefined);
  const tracer = otel.trace.getTracer('token-lifecycle');
  return tracer.startActiveSpan(REFRESH_REQUEST_SPAN, { kind: otel.SpanKind.PRODUCER, attributes }, async (span) => {
    try {
      const context = span.spanContext();
      return await send(otel.isSpanContextValid(context) ? formatTraceparent(context) : undefined);
    } catch (error) {
      // The error's code only: its message may name a Redis server's reply.
      const code = (error as { code?: unknown } | null)?.code;
      span.setStatus({ code: otel.SpanStatusCode.ERROR, message: typeof code === 'string' ? code : 'failed' });
      throw error;
    } finally {
      span.end();
    }
  });
}
