/**
 * When the worker traces (worker/tracing-settings.ts; docs/deployment.md, "Monitoring"): only when
 * the standard OTEL_* variables point it at a collector, and a value it cannot honour stops it at
 * start with a message naming the variable.
 */
import { describe, expect, test } from 'vitest';
import { readTracingSettings } from '../../worker/tracing-settings.js';
import { SettingsError } from '../../shared/settings-error.js';

describe('readTracingSettings', () => {
  test('no OTEL_* setting: no tracing', () => {
    expect(readTracingSettings({})).toBeNull();
    expect(readTracingSettings({ OTEL_SERVICE_NAME: 'worker', OTEL_TRACES_SAMPLER: 'always_on' })).toBeNull();
  });

  test('an OTLP endpoint turns it on, with the default service name and sampler', () => {
    for (const name of ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']) {
      expect(readTracingSettings({ [name]: 'http://collector:4318' })).toStrictEqual({
        serviceName: 'token-lifecycle-worker',
        sampler: 'parentbased_always_on',
        samplerRatio: 1,
      });
    }
  });

  test('OTEL_TRACES_EXPORTER=otlp turns it on; none and OTEL_SDK_DISABLED=true turn it off whatever else is set', () => {
    expect(readTracingSettings({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SERVICE_NAME: 'tokens' })).toMatchObject({ serviceName: 'tokens' });
    expect(readTracingSettings({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBeNull();
    expect(readTracingSettings({ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' })).toBeNull();
  });

  test('the sampler and its ratio', () => {
    expect(
      readTracingSettings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }),
    ).toMatchObject({ sampler: 'parentbased_traceidratio', samplerRatio: 0.25 });
  });

  test('every value it cannot honour is named at once', () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317',
      OTEL_TRACES_EXPORTER: 'zipkin',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_TRACES_SAMPLER: 'sometimes',
      OTEL_TRACES_SAMPLER_ARG: '2',
    };
    expect(() => readTracingSettings(env)).toThrow(SettingsError);
    try {
      readTracingSettings(env);
    } catch (error) {
      expect((error as SettingsError).problems).toStrictEqual([
        "OTEL_TRACES_EXPORTER must be otlp or none (the worker exports OTLP only), not 'zipkin'",
        "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf (the worker's OTLP exporter), not 'grpc'",
        "OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio, not 'sometimes'",
        "OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, not '2'",
      ]);
    }
  });
});
