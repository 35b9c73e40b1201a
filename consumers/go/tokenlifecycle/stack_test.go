package tokenlifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The library against the real stack (test/support/consumer-stack.ts): the worker process on a
// Temporal dev server keeps the tokens of clients registered here fresh in a real redis-server,
// from the IAM emulator, whose resource API answers 401 invalid_token to revoked tokens. Refresh
// requests go through the refresh-requests stream and the worker's consumer, as in production.
// The same scenarios as the Node library's test/integration/consumer-library.test.ts.

func TestARevokedTokenIsReplacedOnceAndARefusalInsideTheMinimumIntervalReachesTheCaller(t *testing.T) {
	ctx := context.Background()
	reader := stackReader(t)
	resource := stackVariable(t, "TOKEN_STACK_RESOURCE_URL")
	clientID := registerClient(t, 6_000)
	first := firstToken(t, reader, clientID)
	api := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 30 * time.Second}}
	if status, body := get(t, api, resource); status != http.StatusOK || body != fmt.Sprintf(`{"ok":true,"clientId":"%s"}`, clientID) {
		t.Fatalf("before any revocation: %d %s", status, body)
	}

	// Revoked within the minimum interval of the first token: the workflow serves the refresh
	// when the interval is over, well within RefreshTimeout.
	revoke(t, first)
	if status, body := get(t, api, resource); status != http.StatusOK || body != fmt.Sprintf(`{"ok":true,"clientId":"%s"}`, clientID) {
		t.Fatalf("after one revocation: %d %s, want the call to succeed after one refresh", status, body)
	}
	second, err := reader.Token(ctx, clientID)
	if err != nil {
		t.Fatal(err)
	}
	requests := resourceRequests(t, clientID)
	if got := outcomes(requests[1:]); !slices.Equal(got, []string{"invalid_token", "ok"}) || requests[2].Fingerprint != second.Fingerprint {
		t.Fatalf("resource requests after the revocation: %+v, want invalid_token then ok with the new token", requests[1:])
	}
	if second.Generation != 2 || second.Fingerprint == first.Fingerprint || issued(t, clientID) != 2 {
		t.Fatalf("second token: generation %d, %d tokens issued; want generation 2, 2 issued", second.Generation, issued(t, clientID))
	}
	reason := "401 invalid_token from " + mustParseURL(t, resource).Host
	if got := forceRefreshSignals(t, clientID); !reflect.DeepEqual(got, []forceRefresh{{RejectedFingerprint: first.Fingerprint, Reason: reason}}) {
		t.Fatalf("forceRefresh signals %+v, want one naming the first token", got)
	}

	// Revoked again inside the minimum interval that began with the second token: no newer
	// token within 1.5 s, so the caller gets the 401, after one request to the API.
	revoke(t, second)
	impatient := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 1500 * time.Millisecond}}
	if status, _ := get(t, impatient, resource); status != http.StatusUnauthorized {
		t.Fatalf("after a second revocation: status %d, want the 401", status)
	}
	if got := outcomes(resourceRequests(t, clientID)[3:]); !slices.Equal(got, []string{"invalid_token"}) {
		t.Fatalf("resource requests after the second revocation: %q, want one invalid_token", got)
	}
	if got := issued(t, clientID); got != 2 {
		t.Fatalf("%d tokens issued, want still 2", got)
	}
	if got := forceRefreshSignals(t, clientID); len(got) != 2 || got[1].RejectedFingerprint != second.Fingerprint {
		t.Fatalf("forceRefresh signals %+v, want a second one naming the second token", got)
	}

	// The deferred request is served once, when the interval is over: one token, not a loop.
	third, err := reader.WaitForToken(ctx, clientID, 2, 60*time.Second)
	if err != nil || third.Generation != 3 {
		t.Fatalf("WaitForToken = generation %d, %v; want generation 3", third.Generation, err)
	}
	time.Sleep(time.Second)
	if got, requests := issued(t, clientID), resourceRequests(t, clientID); got != 3 || len(requests) != 4 {
		t.Fatalf("%d tokens issued and %d resource requests, want 3 and 4 (no loop)", got, len(requests))
	}
}

// As the Redis user `tokenctl grant … --refresh` makes for a service: the library reads, waits,
// asks for a refresh and recovers with that user's rights, HGET and HGETALL work on its own key,
// and another client's key answers NOPERM.
func TestAConsumerUserReadsItsOwnTokensAndNoOtherKey(t *testing.T) {
	ctx := context.Background()
	options, err := redis.ParseURL(stackVariable(t, "TOKEN_STACK_CONSUMER_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	granted := redis.NewClient(options)
	t.Cleanup(func() { _ = granted.Close() })
	prefix := stackVariable(t, "TOKEN_STACK_PREFIX")
	reader := newReader(t, granted, Options{Prefix: prefix, Cache: true})
	clientID := registerClient(t, 0)
	first := firstToken(t, reader, clientID)

	if value, err := granted.HGet(ctx, TokenKey(prefix, clientID), "fingerprint").Result(); err != nil || value != first.Fingerprint {
		t.Fatalf("HGET of its own key = %q, %v; want the fingerprint %s", value, err, first.Fingerprint)
	}
	if hash, err := granted.HGetAll(ctx, TokenKey(prefix, clientID)).Result(); err != nil || hash["access_token"] != first.AccessToken {
		t.Fatalf("HGETALL of its own key: %d fields, %v; want the token", len(hash), err)
	}

	revoke(t, first)
	api := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 30 * time.Second}}
	resource := stackVariable(t, "TOKEN_STACK_RESOURCE_URL")
	if status, body := get(t, api, resource); status != http.StatusOK || body != fmt.Sprintf(`{"ok":true,"clientId":"%s"}`, clientID) {
		t.Fatalf("after a revocation: %d %s, want the call to succeed after one refresh", status, body)
	}
	if got := issued(t, clientID); got != 2 {
		t.Fatalf("%d tokens issued, want 2", got)
	}

	outsider := "not-granted-go"
	storeToken(t, outsider, 1, 60_000)
	if _, err := reader.Token(ctx, outsider); !errors.Is(err, ErrRedisUnavailable) || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Token of a client not granted: %v, want ErrRedisUnavailable with NOPERM", err)
	}
	for name, command := range map[string]func() error{
		"HGET":    func() error { return granted.HGet(ctx, TokenKey(prefix, outsider), "access_token").Err() },
		"HGETALL": func() error { return granted.HGetAll(ctx, TokenKey(prefix, outsider)).Err() },
	} {
		if err := command(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("%s of a client not granted: %v, want NOPERM", name, err)
		}
	}
}

func TestFiftyConcurrentRequestsRefusedWithOneTokenCauseOneRefreshRequestAndOneIAMRequest(t *testing.T) {
	reader := stackReader(t)
	resource := stackVariable(t, "TOKEN_STACK_RESOURCE_URL")
	// Revoked at once, inside the minimum interval: the refresh waits for the interval's end, so
	// every caller is refused with the first token, however slowly the callers start.
	clientID := registerClient(t, 5_000)
	first := firstToken(t, reader, clientID)
	api := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 30 * time.Second}}

	revoke(t, first)
	const callers = 50
	statuses := make([]int, callers)
	var wg sync.WaitGroup
	for index := range callers {
		wg.Go(func() { statuses[index], _ = get(t, api, resource) })
	}
	wg.Wait()

	for index, status := range statuses {
		if status != http.StatusOK {
			t.Fatalf("caller %d got %d, want 200", index, status)
		}
	}
	if got := issued(t, clientID); got != 2 {
		t.Fatalf("%d tokens issued, want 2 (one refresh)", got)
	}
	if got := forceRefreshSignals(t, clientID); len(got) != 1 || got[0].RejectedFingerprint != first.Fingerprint {
		t.Fatalf("forceRefresh signals %+v, want exactly one naming the revoked token", got)
	}
	counts := map[string]int{}
	for _, outcome := range outcomes(resourceRequests(t, clientID)) {
		counts[outcome]++
	}
	if !reflect.DeepEqual(counts, map[string]int{"invalid_token": callers, "ok": callers}) {
		t.Fatalf("resource request outcomes %v, want %d invalid_token and %d ok", counts, callers, callers)
	}
}

func TestOtherRefusalsReachTheCallerWithoutARefresh(t *testing.T) {
	reader := stackReader(t)
	clientID := registerClient(t, 0)
	token := firstToken(t, reader, clientID)
	api := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 10 * time.Second}}

	response, err := api.Get(stackVariable(t, "TOKEN_STACK_ADMIN_RESOURCE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	_ = response.Body.Close()
	if response.StatusCode != http.StatusForbidden || !strings.Contains(response.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("admin resource: %d %q, want 403 insufficient_scope", response.StatusCode, response.Header.Get("WWW-Authenticate"))
	}
	if got := outcomes(resourceRequests(t, clientID)); !slices.Equal(got, []string{"insufficient_scope"}) {
		t.Fatalf("resource requests %q, want one insufficient_scope", got)
	}

	// An API whose 401s carry other challenges: each request must be sent exactly once.
	challenges := []string{`Bearer realm="other"`, `Bearer realm="other", error="invalid_request"`, `Basic realm="x"`}
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		index, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.Header().Set("WWW-Authenticate", challenges[index])
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer other.Close()
	for index := range challenges {
		if status, _ := get(t, api, fmt.Sprintf("%s/%d", other.URL, index)); status != http.StatusUnauthorized {
			t.Fatalf("challenge %d: status %d, want 401", index, status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := slices.Repeat([]string{"Bearer " + token.AccessToken}, len(challenges)); !slices.Equal(seen, want) {
		t.Fatalf("the API saw %d requests, want %d, each with the token", len(seen), len(want))
	}
	if got := forceRefreshSignals(t, clientID); len(got) != 0 {
		t.Fatalf("forceRefresh signals %+v, want none", got)
	}
	if got := issued(t, clientID); got != 1 {
		t.Fatalf("%d tokens issued, want 1", got)
	}
}

func TestATokenWhoseKeyExpiredIsNeverSent(t *testing.T) {
	ctx := context.Background()
	client := newRedis(t)
	reader := stackReader(t)
	var mu sync.Mutex
	var sent []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer api.Close()
	sentCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(sent)
	}

	short := storeToken(t, "go-short-lived", 1, 3_000)
	caller := &http.Client{Transport: &Transport{Reader: reader, ClientID: "go-short-lived"}}
	if status, _ := get(t, caller, api.URL); status != http.StatusOK || sentCount() != 1 {
		t.Fatalf("while valid: status %d, %d requests", status, sentCount())
	}
	// The cache holds the token now; nothing announces its expiry.
	time.Sleep(time.Until(time.UnixMilli(short.ExpiresAt)) + 50*time.Millisecond)
	_, err := caller.Get(api.URL)
	if !errors.Is(err, ErrTokenUnavailable) || sentCount() != 1 {
		t.Fatalf("after expiry: error %v and %d requests, want ErrTokenUnavailable and no new request", err, sentCount())
	}
	if exists, err := client.Exists(ctx, TokenKey(reader.Prefix(), "go-short-lived")).Result(); err != nil || exists != 0 {
		t.Fatalf("EXISTS = %d, %v; the worker's write script should have set the key to expire with the token", exists, err)
	}

	// A reader whose clock is ahead of Redis's sees the token as expired while the key still exists.
	storeToken(t, "go-clock-ahead", 1, 60_000)
	ahead := newReader(t, client, Options{Prefix: reader.Prefix(), Cache: true, Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	_, err = (&http.Client{Transport: &Transport{Reader: ahead, ClientID: "go-clock-ahead"}}).Get(api.URL)
	var unavailable *TokenUnavailableError
	if !errors.As(err, &unavailable) || unavailable.ClientID != "go-clock-ahead" || sentCount() != 1 {
		t.Fatalf("clock ahead: error %v and %d requests, want a TokenUnavailableError and no request", err, sentCount())
	}
}

func TestATokenWrittenByTheWorkerIsReadAsTheNodeLibraryReadsIt(t *testing.T) {
	reader := stackReader(t)
	clientID := registerClient(t, 0)
	token := firstToken(t, reader, clientID)

	var node map[string]any
	control(t, http.MethodGet, "/clients/"+clientID+"/node-token", nil, http.StatusOK, &node)
	encoded, err := json.Marshal(asJSON(token))
	if err != nil {
		t.Fatal(err)
	}
	var read map[string]any
	if err := json.Unmarshal(encoded, &read); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(read, node) {
		t.Fatalf("Go read %v\nNode read %v", read, node)
	}
	if len(node) != 8 || token.AccessToken == "" || token.Scope != "" || token.TokenType != "Bearer" || token.Generation != 1 || !token.ExpiresAt.After(token.ObtainedAt) {
		t.Fatalf("unexpected token %+v", asJSON(token))
	}
}

func TestWaitForTokenResolvesOnANewerGenerationAndTimesOutWithATypedError(t *testing.T) {
	ctx := context.Background()
	reader := stackReader(t)
	storeToken(t, "go-waited-for", 4, 60_000)

	if token, err := reader.WaitForToken(ctx, "go-waited-for", 3, 5*time.Second); err != nil || token.Generation != 4 {
		t.Fatalf("WaitForToken(newer than 3) = generation %d, %v; want 4 at once", token.Generation, err)
	}

	type outcome struct {
		token Token
		err   error
	}
	waited := make(chan outcome, 1)
	go func() {
		token, err := reader.WaitForToken(ctx, "go-waited-for", 4, 20*time.Second)
		waited <- outcome{token, err}
	}()
	time.Sleep(100 * time.Millisecond)
	fifth := storeToken(t, "go-waited-for", 5, 60_000)
	if got := <-waited; got.err != nil || got.token.Generation != 5 || got.token.Fingerprint != fifth.Fingerprint {
		t.Fatalf("WaitForToken(newer than 4) = %+v, %v; want the fifth token", asJSON(got.token), got.err)
	}

	_, err := reader.WaitForToken(ctx, "go-waited-for", 5, 300*time.Millisecond)
	var timeout *TokenWaitTimeoutError
	if !errors.Is(err, ErrTokenWaitTimeout) || !errors.As(err, &timeout) || timeout.NewerThan != 5 || timeout.ClientID != "go-waited-for" || CodeOf(err) != "token_wait_timeout" {
		t.Fatalf("WaitForToken(newer than 5) = %v, want a TokenWaitTimeoutError", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := reader.WaitForToken(cancelled, "go-waited-for", 5, 20*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitForToken with a cancelled context = %v, want context.Canceled", err)
	}
	time.AfterFunc(100*time.Millisecond, func() { _ = reader.Close() })
	if _, err := reader.WaitForToken(ctx, "go-waited-for", 5, 20*time.Second); !errors.Is(err, ErrReaderClosed) || CodeOf(err) != "token_reader_closed" {
		t.Fatalf("WaitForToken while the reader closes = %v, want ErrReaderClosed", err)
	}
}

func TestTheCacheServesAnAnnouncedGenerationAndNothingElseChangesIt(t *testing.T) {
	ctx := context.Background()
	client := newRedis(t)
	reader := stackReader(t)
	first := storeToken(t, "go-cache", 1, 60_000)
	if token, err := reader.Token(ctx, "go-cache"); err != nil || token.AccessToken != first.AccessToken {
		t.Fatalf("Token = %v, want the first token", err)
	}
	// Changed behind the reader's back (no announcement): still served from memory.
	if err := client.HSet(ctx, TokenKey(reader.Prefix(), "go-cache"), "access_token", "changed-without-announcement").Err(); err != nil {
		t.Fatal(err)
	}
	if token, _ := reader.Token(ctx, "go-cache"); token.AccessToken != first.AccessToken {
		t.Fatalf("a change without announcement was served")
	}

	second := storeToken(t, "go-cache", 2, 60_000)
	eventually(t, 10*time.Second, "the announced generation", func() bool {
		token, err := reader.Token(ctx, "go-cache")
		return err == nil && token.Generation == 2
	})
	if token, _ := reader.Token(ctx, "go-cache"); asJSON(token) != second {
		t.Fatalf("Token = %+v, want %+v", asJSON(token), second)
	}
}

func TestNoTokenAndNoRedisAreTypedErrors(t *testing.T) {
	ctx := context.Background()
	client := newRedis(t)
	for _, cache := range []bool{false, true} {
		reader := newReader(t, client, Options{Prefix: stackVariable(t, "TOKEN_STACK_PREFIX"), Cache: cache})
		_, err := reader.Token(ctx, "never-stored")
		var unavailable *TokenUnavailableError
		if !errors.As(err, &unavailable) || unavailable.Key != reader.Prefix()+"token:never-stored" || CodeOf(err) != "token_unavailable" {
			t.Fatalf("cache %t: Token = %v, want a TokenUnavailableError naming the key", cache, err)
		}
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := listener.Addr().String()
	_ = listener.Close()
	away := redis.NewClient(&redis.Options{Addr: address, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = away.Close() })
	for _, cache := range []bool{false, true} {
		reader := newReader(t, away, Options{Cache: cache})
		_, err := reader.Token(ctx, "away")
		var redisError *RedisUnavailableError
		if !errors.Is(err, ErrRedisUnavailable) || !errors.As(err, &redisError) || redisError.ClientID != "away" || CodeOf(err) != "redis_unavailable" {
			t.Fatalf("cache %t: Token with Redis away = %v, want a RedisUnavailableError", cache, err)
		}
		if _, err := reader.WaitForToken(ctx, "away", 0, time.Second); !errors.Is(err, ErrRedisUnavailable) {
			t.Fatalf("cache %t: WaitForToken with Redis away = %v, want ErrRedisUnavailable", cache, err)
		}
		// With a token the XADD fails; without one, reading the token to prove the request with.
		for _, request := range []RefreshRequest{{AccessToken: "token-of-away"}, {}} {
			if _, err := reader.RequestRefresh(ctx, "away", request); !errors.Is(err, ErrRefreshRequestFailed) || CodeOf(err) != "refresh_request_failed" {
				t.Fatalf("cache %t, token given %t: RequestRefresh with Redis away = %v, want ErrRefreshRequestFailed", cache, request.AccessToken != "", err)
			}
		}
	}
}

func TestRequestRefreshKeepsTheStreamBounded(t *testing.T) {
	client := newRedis(t)
	// A prefix of its own: the stack's worker consumes <stack prefix>refresh-requests.
	reader := newReader(t, client, Options{Prefix: "go-bounded:", RefreshRequestsMaxLen: 10})
	for index := range 300 {
		if _, err := reader.RequestRefresh(context.Background(), fmt.Sprintf("bounded-%d", index), RefreshRequest{AccessToken: "token-of-bounded"}); err != nil {
			t.Fatal(err)
		}
	}
	// MAXLEN ~ trims whole stream nodes (100 entries each by default), so about 10 to 110 remain.
	if length, err := client.XLen(context.Background(), RefreshRequestsStream("go-bounded:")).Result(); err != nil || length > 110 {
		t.Fatalf("XLEN = %d, %v; want at most 110", length, err)
	}
}

// stackReader is a caching Reader of the stack's Redis under the worker's prefix.
func stackReader(t *testing.T) *Reader {
	t.Helper()
	return newReader(t, newRedis(t), Options{Prefix: stackVariable(t, "TOKEN_STACK_PREFIX"), Cache: true})
}

// registerClient registers a fresh client with the stack's worker and returns its ID.
func registerClient(t *testing.T, minForcedRefreshIntervalMs int) string {
	t.Helper()
	var registered struct {
		ClientID string `json:"clientId"`
	}
	control(t, http.MethodPost, "/clients", map[string]int{"minForcedRefreshIntervalMs": minForcedRefreshIntervalMs}, http.StatusCreated, &registered)
	return registered.ClientID
}

// firstToken waits for the worker's first token of a newly registered client.
func firstToken(t *testing.T, reader *Reader, clientID string) Token {
	t.Helper()
	token, err := reader.WaitForToken(context.Background(), clientID, 0, 60*time.Second)
	if err != nil {
		t.Fatalf("first token of %s: %v", clientID, err)
	}
	return token
}

// storeToken stores a token through the worker's write script (with its expiry and announcement).
func storeToken(t *testing.T, clientID string, generation, lifetimeMs int64) tokenJSON {
	t.Helper()
	var stored tokenJSON
	control(t, http.MethodPost, "/tokens", map[string]any{"clientId": clientID, "generation": generation, "lifetimeMs": lifetimeMs}, http.StatusCreated, &stored)
	return stored
}

func revoke(t *testing.T, token Token) {
	t.Helper()
	var answer struct{ Revoked bool }
	control(t, http.MethodPost, "/revoke", map[string]string{"accessToken": token.AccessToken}, http.StatusOK, &answer)
	if !answer.Revoked {
		t.Fatalf("the emulator did not know token %s", token.Fingerprint)
	}
}

type resourceRequest struct {
	Outcome     string `json:"outcome"`
	Status      int    `json:"status"`
	Fingerprint string `json:"fingerprint"`
}

func resourceRequests(t *testing.T, clientID string) []resourceRequest {
	t.Helper()
	var requests []resourceRequest
	control(t, http.MethodGet, "/clients/"+clientID+"/resource-requests", nil, http.StatusOK, &requests)
	return requests
}

func outcomes(requests []resourceRequest) []string {
	names := make([]string, len(requests))
	for index, request := range requests {
		names[index] = request.Outcome
	}
	return names
}

// issued counts the tokens the emulator issued to the client.
func issued(t *testing.T, clientID string) int {
	t.Helper()
	var requests []struct{ Outcome string }
	control(t, http.MethodGet, "/clients/"+clientID+"/token-requests", nil, http.StatusOK, &requests)
	count := 0
	for _, request := range requests {
		if request.Outcome == "issued" {
			count++
		}
	}
	return count
}

type forceRefresh struct {
	RejectedFingerprint string `json:"rejectedFingerprint"`
	Reason              string `json:"reason"`
}

// forceRefreshSignals are the forceRefresh signals in the client's workflow history: what reached
// the workflow through the refresh-requests stream and the worker's consumer.
func forceRefreshSignals(t *testing.T, clientID string) []forceRefresh {
	t.Helper()
	var signals []forceRefresh
	control(t, http.MethodGet, "/clients/"+clientID+"/force-refresh-signals", nil, http.StatusOK, &signals)
	return signals
}

// get sends a GET and returns the status and body; it fails the test on a transport error.
func get(t *testing.T, client *http.Client, target string) (int, string) {
	response, err := client.Get(target)
	if err != nil {
		t.Errorf("GET %s: %v", target, err)
		return 0, ""
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Errorf("GET %s: %v", target, err)
	}
	return response.StatusCode, string(body)
}

func mustParseURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	parsed, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}
