// Command tracedservice is a service instrumented with the OpenTelemetry Go SDK that calls an API
// once through tokenlifecycle.Transport, inside a span of its own, and exports its spans over
// OTLP/HTTP (the standard OTEL_EXPORTER_OTLP_* variables). test/integration/traces-consumers.test.ts
// runs it against the consumer stack and Jaeger: when the API refuses the token with 401
// invalid_token, the refresh request carries the span's traceparent, and the worker's spans of
// the forced refresh join the trace.
//
// Environment: REDIS_URL, TOKEN_KEY_PREFIX, CLIENT_ID, API_URL, and OTEL_*. It prints one JSON
// line, {"traceId", "status"}, and exits 0 when the API's last answer was 200.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/token-lifecycle-worker/token-lifecycle-worker/consumers/go/tokenlifecycle"
	"github.com/token-lifecycle-worker/token-lifecycle-worker/consumers/go/tokenlifecycleotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The hook's type is the library's: this fails to compile if they ever differ.
var _ tokenlifecycle.TraceParentFunc = tokenlifecycleotel.TraceParent

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tracedservice:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return fmt.Errorf("OTLP exporter: %w", err)
	}
	// resource.Default reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(resource.Default()))
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	options, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	client := redis.NewClient(options)
	defer client.Close()
	reader := tokenlifecycle.NewReader(client, tokenlifecycle.Options{Prefix: os.Getenv("TOKEN_KEY_PREFIX"), TraceParent: tokenlifecycleotel.TraceParent})
	defer reader.Close()
	api := &http.Client{Transport: &tokenlifecycle.Transport{Reader: reader, ClientID: os.Getenv("CLIENT_ID"), RefreshTimeout: 30 * time.Second}}

	spanCtx, span := otel.Tracer("tracedservice").Start(ctx, "call resource API")
	status, callErr := call(spanCtx, api, os.Getenv("API_URL"))
	span.End()
	// Shutdown exports what the batcher holds: the trace is in the collector once it returns.
	shutdownCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := provider.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("exporting the spans: %w", err)
	}
	if callErr != nil {
		return callErr
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"traceId": span.SpanContext().TraceID().String(), "status": status}); err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("the API answered %d", status)
	}
	return nil
}

func call(ctx context.Context, api *http.Client, url string) (int, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("API_URL: %w", err)
	}
	response, err := api.Do(request)
	if err != nil {
		return 0, err
	}
	defer response.Body.Close()
	_, _ = io.Copy(io.Discard, response.Body)
	return response.StatusCode, nil
}
