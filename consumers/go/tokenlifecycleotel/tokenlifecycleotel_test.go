package tokenlifecycleotel

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The traceparent of spans of the real OpenTelemetry SDK, recorded in memory.

// startSpan starts a span of a fresh SDK tracer provider with sampler, and ends it when the test
// does; it returns the span's context and the recorder that sees it end.
func startSpan(t *testing.T, sampler sdktrace.Sampler) (context.Context, trace.Span, *tracetest.SpanRecorder) {
	t.Helper()
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	ctx, span := provider.Tracer("tokenlifecycleotel-test").Start(context.Background(), "call orders-api")
	t.Cleanup(func() { span.End() })
	return ctx, span, recorder
}

// usePropagator sets the global propagator for one test.
func usePropagator(t *testing.T, propagator propagation.TextMapPropagator) {
	t.Helper()
	previous := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagator)
	t.Cleanup(func() { otel.SetTextMapPropagator(previous) })
}

func want(span trace.Span, flags string) string {
	spanContext := span.SpanContext()
	return fmt.Sprintf("00-%s-%s-%s", spanContext.TraceID(), spanContext.SpanID(), flags)
}

func TestTraceParentIsTheActiveSpansWithTheGlobalPropagator(t *testing.T) {
	usePropagator(t, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	ctx, span, recorder := startSpan(t, sdktrace.AlwaysSample())
	member, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}

	got := TraceParent(baggage.ContextWithBaggage(ctx, bag))

	if want := want(span, "01"); got != want {
		t.Fatalf("TraceParent = %q, want %q", got, want)
	}
	span.End()
	if ended := recorder.Ended(); len(ended) != 1 || ended[0].SpanContext().SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("the SDK recorded %d spans, want the one span whose traceparent was taken", len(ended))
	}
}

func TestTraceParentOfAnUnsampledSpanSaysSo(t *testing.T) {
	usePropagator(t, propagation.TraceContext{})
	ctx, span, _ := startSpan(t, sdktrace.NeverSample())

	if got, want := TraceParent(ctx), want(span, "00"); got != want {
		t.Fatalf("TraceParent = %q, want %q (W3C: propagated, not sampled)", got, want)
	}
}

func TestTraceParentOfAnIncomingRequestsRemoteSpan(t *testing.T) {
	usePropagator(t, propagation.TraceContext{})
	incoming := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	ctx := propagation.TraceContext{}.Extract(context.Background(), incoming)

	if got := TraceParent(ctx); got != incoming["traceparent"] {
		t.Fatalf("TraceParent = %q, want the incoming %q", got, incoming["traceparent"])
	}
}

func TestTraceParentIsEmptyWithoutASpan(t *testing.T) {
	usePropagator(t, propagation.TraceContext{})

	if got := TraceParent(context.Background()); got != "" {
		t.Fatalf("TraceParent = %q, want none", got)
	}
}

func TestTraceParentFollowsAGlobalPropagatorThatWritesNone(t *testing.T) {
	// OpenTelemetry's default: a global propagator that propagates nothing until the application sets one.
	usePropagator(t, propagation.NewCompositeTextMapPropagator())
	ctx, span, _ := startSpan(t, sdktrace.AlwaysSample())

	if got := TraceParent(ctx); got != "" {
		t.Fatalf("TraceParent = %q, want none: the application propagates nothing", got)
	}
	if got, want := TraceParentFrom(propagation.TraceContext{})(ctx), want(span, "01"); got != want {
		t.Fatalf("TraceParentFrom(TraceContext) = %q, want %q", got, want)
	}
}
