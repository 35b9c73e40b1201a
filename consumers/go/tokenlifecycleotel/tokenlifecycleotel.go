// Package tokenlifecycleotel gives the tokenlifecycle package the trace context of OpenTelemetry,
// so that a refresh request carries the W3C traceparent of the caller's active span and the
// worker's spans of the forced refresh (the stream read, the workflow's refresh, the IAM request,
// the Redis write) join the caller's trace:
//
//	reader := tokenlifecycle.NewReader(client, tokenlifecycle.Options{TraceParent: tokenlifecycleotel.TraceParent})
//
// It is a module of its own, as go-redis's redisotel and OpenTelemetry's contrib instrumentations
// are: the tokenlifecycle module requires no OpenTelemetry, and an application that uses none
// never has it in its module graph.
package tokenlifecycleotel

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// traceParentField is the W3C Trace Context header (and refresh-request field) name.
const traceParentField = "traceparent"

// TraceParent returns the traceparent of the span in ctx as the application's global propagator
// ([otel.GetTextMapPropagator]) writes it, or "" when ctx holds no valid span context or the
// propagator writes no traceparent. Like otelhttp, it honours the application's choice of
// propagator: OpenTelemetry's default global propagator propagates nothing until the application
// sets one, e.g. otel.SetTextMapPropagator(propagation.TraceContext{}). It is a
// tokenlifecycle.TraceParentFunc.
func TraceParent(ctx context.Context) string {
	return traceParent(ctx, otel.GetTextMapPropagator())
}

// TraceParentFrom returns a tokenlifecycle.TraceParentFunc that uses propagator instead of the
// global one, for an application that keeps its propagator to itself:
// TraceParentFrom(propagation.TraceContext{}) always writes W3C trace context.
func TraceParentFrom(propagator propagation.TextMapPropagator) func(ctx context.Context) string {
	return func(ctx context.Context) string { return traceParent(ctx, propagator) }
}

func traceParent(ctx context.Context, propagator propagation.TextMapPropagator) string {
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	return carrier.Get(traceParentField)
}
