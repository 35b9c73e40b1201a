/**
 * The worker's OpenTelemetry tracing (docs/design.md, "Traces"), started only when
 * worker/tracing-settings.ts says so: this module is imported lazily, so a worker without `OTEL_*`
 * settings loads no SDK and installs no interceptor. It registers the global tracer provider,
 * context manager (AsyncLocalStorage) and W3C propagator, and hands out what the Temporal workers
 * and client need: `@temporalio/interceptors-opentelemetry`'s activity and client interceptors,
 * and a sink for the spans the workflow interceptors make in the sandbox.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { TraceState, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { detectResources, envDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type Sampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { WorkflowClientInterceptor } from '@temporalio/client';
import {
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  type OpenTelemetrySinks,
  type SerializableSpan,
} from '@temporalio/interceptors-opentelemetry';
import type { InjectedSinks, WorkerInterceptors } from '@temporalio/worker';
import type { WorkflowInfo } from '@temporalio/workflow';
import type { TracesSampler, TracingSettings } from './tracing-settings.js';

/** What the Temporal workers and client of a tracing worker install. */
export interface WorkerTracing {
  /** The activity interceptors (a `RunActivity` span in the trace the workflow passed in the headers). */
  workerInterceptors: WorkerInterceptors;
  /** The sink the workflow interceptors export their spans through (sinks are not recorded in history). */
  sinks: InjectedSinks<OpenTelemetrySinks>;
  /** The client interceptor: a signal carries the active span in its headers. */
  clientInterceptors: WorkflowClientInterceptor[];
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

/** Starts the SDK: spans are batched and sent over OTLP/HTTP (protobuf) to the configured endpoint. */
export function startTracing(settings: TracingSettings): WorkerTracing {
  const resource = detectResources({ detectors: [envDetector] }).merge(resourceFromAttributes({ 'service.name': settings.serviceName }));
  const processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter() });
  const provider = new TracerProvider({
    resource,
    sampler: samplerOf(settings.sampler, settings.samplerRatio),
    spanProcessors: [processor],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return {
    workerInterceptors: {
      activity: [
        (ctx) => ({
          inbound: new OpenTelemetryActivityInboundInterceptor(ctx),
          outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
        }),
      ],
    },
    sinks: { exporter: { export: { fn: (info, spans) => exportWorkflowSpans(processor, resource, info, spans) } } },
    clientInterceptors: [new OpenTelemetryWorkflowClientInterceptor()],
    async shutdown() {
      await provider.shutdown();
    },
  };
}

function samplerOf(name: TracesSampler, ratio: number): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

/**
 * Hands the workflow's spans to the processor. The workflow interceptors serialize spans of the
 * SDK they bundle (OpenTelemetry JS 1.x: `parentSpanId`, `instrumentationLibrary`); this SDK reads
 * `parentSpanContext` and `instrumentationScope`. Only the workflow's ID, run and type are added:
 * the interceptors' own sink would copy the whole WorkflowInfo into the attributes.
 */
function exportWorkflowSpans(processor: SpanProcessor, resource: Resource, info: WorkflowInfo, spans: SerializableSpan[]): void {
  for (const span of spans) processor.onEnd(readableWorkflowSpan(span, resource, info));
}

function readableWorkflowSpan(span: SerializableSpan, resource: Resource, info: WorkflowInfo): ReadableSpan {
  const { traceState, ...identity } = span.spanContext;
  const spanContext = { ...identity, ...(traceState !== undefined && { traceState: new TraceState(traceState) }) };
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => spanContext,
    ...(span.parentSpanId !== undefined && {
      parentSpanContext: { traceId: identity.traceId, spanId: span.parentSpanId, traceFlags: identity.traceFlags },
    }),
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes: {
      ...span.attributes,
      'temporal.workflow_id': info.workflowId,
      'temporal.run_id': info.runId,
      'temporal.workflow_type': info.workflowType,
    },
    links: span.links,
    events: span.events,
    duration: span.duration,
    ended: span.ended,
    resource,
    instrumentationScope: span.instrumentationLibrary,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}
