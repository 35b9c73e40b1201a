/**
 * The trace context a refresh request may carry (docs/redis-contract.md, "The refresh request on
 * `<prefix>refresh-requests`"; docs/design.md, "Traces"): a W3C Trace Context `traceparent` (Level 1,
 * §3.2), so the worker's spans for the refresh join the requesting service's trace. It is not
 * covered by the origin proof: it grants nothing, it only names the trace the worker's spans join.
 * `token-lifecycle/traceparent` on its own: pure, so the worker's workflow code (Temporal's sandbox,
 * no Node built-ins) checks the signal's value with the same rule.
 */

/**
 * `version-traceId-parentId-flags` of W3C Trace Context Level 1 §3.2.2, version `00`, lower-case hex.
 * A later version may append fields; this contract knows only `00`, and anything else is dropped.
 */
const TRACEPARENT_PATTERN = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ALL_ZEROS = /^0+$/;

/**
 * Whether `value` is a `traceparent` this contract passes on: version `00`, a trace ID and a parent
 * ID that are not all zeros (W3C Trace Context Level 1 §3.2.2.3, §3.2.2.4). A reader drops any other
 * value, as the W3C rule says (ignore it, start a new trace): never a reason to refuse a refresh.
 */
export function isValidTraceparent(value: string | undefined): value is string {
  if (value === undefined) return false;
  const match = TRACEPARENT_PATTERN.exec(value);
  return match !== null && !ALL_ZEROS.test(match[1]!) && !ALL_ZEROS.test(match[2]!);
}

/** A trace context's identity, named as OpenTelemetry's `SpanContext` names it. */
export interface TraceparentFields {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** The parent span's ID: 16 lower-case hex digits. */
  spanId: string;
  /** The trace flags byte; bit 0 is `sampled`. */
  traceFlags: number;
}

/** The fields of a valid `traceparent` ({@link isValidTraceparent}); undefined for any other value. */
export function parseTraceparent(value: string | undefined): TraceparentFields | undefined {
  if (!isValidTraceparent(value)) return undefined;
  const [, traceId, spanId, flags] = value.split('-') as [string, string, string, string];
  return { traceId, spanId, traceFlags: Number.parseInt(flags, 16) };
}

/** The `traceparent` (version `00`) of a span's identity. */
export function formatTraceparent({ traceId, spanId, traceFlags }: TraceparentFields): string {
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}
