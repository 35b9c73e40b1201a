package tokenlifecycle

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// Trace context on refresh requests (docs/redis-contract.md, the refresh request's traceparent):
// what the entry carries, from the Reader's TraceParent hook or an explicit one, against the
// stack's real Redis. Which values are valid, and the entries for explicit ones, are contract
// vectors (contract_test.go); the OpenTelemetry hook is tested in the tokenlifecycleotel module.

const (
	sampledTraceParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampledTraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
)

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
	malformed := "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
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
		{"a malformed traceparent from the hook is not sent", traced, withTrace(malformed), RefreshRequest{}, nil},
		{"a malformed explicit traceparent is not sent, nor the hook's", traced, withTrace(sampledTraceParent), RefreshRequest{TraceParent: malformed}, nil},
	} {
		t.Run(scenario.name, func(t *testing.T) {
			request := scenario.request
			request.AccessToken = accessToken
			id, err := scenario.reader.RequestRefresh(scenario.ctx, clientID, request)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append([]string{"clientId", clientID}, scenario.want...), "proof", refreshRequestProof(accessToken, clientID, ""))
			if entries := streamEntries(t, client, stream, id, id); len(entries) != 1 || !slices.Equal(entries[0], want) {
				t.Fatalf("entry %s holds %q, want %q", id, entries, want)
			}
		})
	}

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
		!slices.Equal(entries[0][len(entries[0])-4:len(entries[0])-2], []string{"traceparent", sampledTraceParent}) {
		t.Fatalf("refresh requests %q, want one naming the refused token and carrying the request's traceparent", entries)
	}
}
