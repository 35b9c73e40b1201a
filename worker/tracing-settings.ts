/**
 * Whether the worker traces, from the standard OpenTelemetry variables (docs/deployment.md,
 * "Monitoring"; docs/design.md, "Traces"). Pure, and free of the OpenTelemetry SDK: a worker that
 * does not trace never loads it (worker/tracing.ts does, only when these settings say so).
 */
import { SettingsError } from '../shared/settings-error.js';

/** The service name of the worker's spans when `OTEL_SERVICE_NAME` is not set. */
export const DEFAULT_TRACING_SERVICE_NAME = 'token-lifecycle-worker';

/** The samplers of the OpenTelemetry specification's `OTEL_TRACES_SAMPLER`, all of which the worker understands. */
export const TRACES_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type TracesSampler = (typeof TRACES_SAMPLERS)[number];

/** What worker/tracing.ts starts: spans over OTLP/HTTP (protobuf), sampled as set. */
export interface TracingSettings {
  serviceName: string;
  sampler: TracesSampler;
  /** The ratio of the `traceidratio` samplers, in [0, 1]. */
  samplerRatio: number;
}

/**
 * The tracing settings of `env`, or null when the worker must not trace: tracing is on when
 * `OTEL_TRACES_EXPORTER=otlp`, or when an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_TRACES_EXPORTER` is not `none`;
 * `OTEL_SDK_DISABLED=true` turns it off whatever else is set. The endpoint, headers, timeout and
 * compression are read by the OTLP exporter itself.
 *
 * @throws {@link SettingsError} naming every variable that holds a value the worker cannot honour.
 */
export function readTracingSettings(env: NodeJS.ProcessEnv = process.env): TracingSettings | null {
  const value = (name: string) => env[name]?.trim() || undefined;
  if (value('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return null;
  const problems: string[] = [];

  const exporter = value('OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (exporter !== undefined && exporter !== 'otlp' && exporter !== 'none') {
    problems.push(`OTEL_TRACES_EXPORTER must be otlp or none (the worker exports OTLP only), not '${exporter}'`);
  }
  const endpointSet = value('OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined || value('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== undefined;
  const on = exporter === 'otlp' || (exporter === undefined && endpointSet);

  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = value(name);
    if (protocol !== undefined && protocol !== 'http/protobuf') {
      problems.push(`${name} must be http/protobuf (the worker's OTLP exporter), not '${protocol}'`);
    }
  }

  const samplerName = value('OTEL_TRACES_SAMPLER')?.toLowerCase() ?? 'parentbased_always_on';
  const sampler = TRACES_SAMPLERS.find((known) => known === samplerName);
  if (sampler === undefined) problems.push(`OTEL_TRACES_SAMPLER must be one of ${TRACES_SAMPLERS.join(', ')}, not '${samplerName}'`);
  const ratioText = value('OTEL_TRACES_SAMPLER_ARG');
  const samplerRatio = ratioText === undefined ? 1 : Number(ratioText);
  if (!Number.isFinite(samplerRatio) || samplerRatio < 0 || samplerRatio > 1) {
    problems.push(`OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, not '${ratioText}'`);
  }

  if (problems.length > 0) throw new SettingsError(problems);
  if (!on) return null;
  return { serviceName: value('OTEL_SERVICE_NAME') ?? DEFAULT_TRACING_SERVICE_NAME, sampler: sampler!, samplerRatio };
}
