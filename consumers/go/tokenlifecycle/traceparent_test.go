package tokenlifecycle

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// Trace context on refresh requests (docs/redis-contract.md, the refresh request's traceparent):
// what the entry carries, from the Reader's TraceParent hook or an explicit one, against the
// stack's real Redis. The OpenTelemetry hook itself is tested in the tokenlifecycleotel module.

const (
	sampledTraceParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampledTraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
)

func TestValidTraceParent(t *testing.T) {
	for value, want := range map[string]bool{
		sampledTraceParent:   true,
		unsampledTraceParent: true,
		"":                   false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01":     false, // upper case (W3C §3.2.2.3)
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":     false, // all-zero trace-id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":     false, // all-zero parent-id
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":     false, // a version this library does not write
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":     false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz": false,
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01":      false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1":      false,
		" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":    false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n":   false,
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01":     false,
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01":     false,
	} {
		if got := validTraceParent(value); got != want {
			t.Errorf("validTraceParent(%q) = %t, want %t", value, got, want)
		}
	}
}

type traceParentKey struct{}

// traceParentFromContext is a TraceParentFunc as an application that carries trace context in its
// own context values would write it.
func traceParentFromContext(ctx context.Context) string {
	value, _ := ctx.Value(traceParentKey{}).(string)
	return value
}

func TestARefreshRequestCarriesTheTraceParentOfItsContextOrAnExplicitOne(t *testing.T) {
	client := newRedis(t)
	prefix := "traceparent-go-request:"
	stream := RefreshRequestsStream(prefix)
	traced := newReader(t, client, Options{Prefix: prefix, TraceParent: traceParentFromContext})
	untraced := newReader(t, client, Options{Prefix: prefix})
	const clientID, accessToken = "orders", "token-orders-1"
	proof := refreshRequestProof(accessToken, clientID, "")
	withTrace := func(value string) context.Context {
		return context.WithValue(context.Background(), traceParentKey{}, value)
	}

	for _, scenario := range []struct {
		name    string
		reader  *Reader
		ctx     context.Context
		request RefreshRequest
		want    []string
	}{
		{"the hook's traceparent", traced, withTrace(sampledTraceParent), RefreshRequest{}, []string{"traceparent", sampledTraceParent}},
		{"an explicit traceparent wins over the hook's", traced, withTrace(sampledTraceParent), RefreshRequest{TraceParent: unsampledTraceParent}, []string{"traceparent", unsampledTraceParent}},
		{"an explicit traceparent without a hook", untraced, context.Background(), RefreshRequest{TraceParent: sampledTraceParent}, []string{"traceparent", sampledTraceParent}},
		{"no span in the context", traced, context.Background(), RefreshRequest{}, nil},
		{"no hook", untraced, withTrace(sampledTraceParent), RefreshRequest{}, nil},
		{"an invalid traceparent from the hook is left out", traced, withTrace("00-not-a-trace"), RefreshRequest{}, nil},
	} {
		t.Run(scenario.name, func(t *testing.T) {
			request := scenario.request
			request.AccessToken = accessToken
			id, err := scenario.reader.RequestRefresh(scenario.ctx, clientID, request)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]string{"clientId", clientID, "proof", proof}, scenario.want...)
			if entries := streamEntries(t, client, stream, id, id); len(entries) != 1 || !slices.Equal(entries[0], want) {
				t.Fatalf("entry %s holds %q, want %q", id, entries, want)
			}
		})
	}

	t.Run("an invalid explicit traceparent is refused, naming it", func(t *testing.T) {
		before := len(streamEntries(t, client, stream, "-", "+"))
		invalid := "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
		_, err := traced.RequestRefresh(context.Background(), clientID, RefreshRequest{AccessToken: accessToken, TraceParent: invalid})
		var refused *RefreshRequestError
		if !errors.Is(err, ErrRefreshRequestFailed) || !errors.As(err, &refused) || CodeOf(err) != "refresh_request_failed" ||
			!strings.Contains(err.Error(), "TraceParent") || !strings.Contains(err.Error(), invalid) {
			t.Fatalf("RequestRefresh = %v, want a refresh_request_failed error naming RefreshRequest.TraceParent and its value", err)
		}
		if after := len(streamEntries(t, client, stream, "-", "+")); after != before {
			t.Fatalf("%d entries after the refusal, want still %d", after, before)
		}
	})
}

func TestTheTransportAsksForTheRefreshWithTheTraceParentOfTheRequestsContext(t *testing.T) {
	client := newRedis(t)
	prefix := "traceparent-go-transport:"
	reader := newReader(t, client, Options{Prefix: prefix, TraceParent: traceParentFromContext})
	const clientID = "orders"
	fields := tokenFields(clientID, 1)
	storeHash(t, client, TokenKey(prefix, clientID), fields)
	if err := client.Del(context.Background(), RefreshRequestsStream(prefix)).Err(); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(api.Close)
	// No newer token comes: the refresh is asked for, waited on briefly, and the 401 returned.
	httpClient := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 200 * time.Millisecond}}
	request, err := http.NewRequestWithContext(context.WithValue(context.Background(), traceParentKey{}, sampledTraceParent), http.MethodGet, api.URL, nil)
	if err != nil {
		t.Fatal(err)
	}

	response, err := httpClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	_ = response.Body.Close()

	entries := streamEntries(t, client, RefreshRequestsStream(prefix), "-", "+")
	if len(entries) != 1 || !slices.Equal(entries[0][:4], []string{"clientId", clientID, "rejectedFingerprint", fields["fingerprint"].(string)}) ||
		!slices.Equal(entries[0][len(entries[0])-2:], []string{"traceparent", sampledTraceParent}) {
		t.Fatalf("refresh requests %q, want one naming the refused token and carrying the request's traceparent", entries)
	}
}
