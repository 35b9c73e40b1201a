package tokenlifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests that need Redis or the whole stack read these variables, which
// test/support/with-consumer-stack.ts sets (`make test-consumers` runs them through it).
func stackVariable(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: run these tests against the stack, from the repository root: npx tsx test/support/with-consumer-stack.ts --cwd consumers/go -- go test ./... (or make test-consumers)", name)
	}
	return value
}

// newRedis is a client of the stack's Redis, closed when the test ends.
func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	options, err := redis.ParseURL(stackVariable(t, "TOKEN_STACK_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(options)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// newReader is a Reader closed when the test ends.
func newReader(t *testing.T, client redis.UniversalClient, options Options) *Reader {
	t.Helper()
	reader := NewReader(client, options)
	t.Cleanup(func() { _ = reader.Close() })
	return reader
}

// control calls the stack's control API (test/support/consumer-stack-control.ts): the answer's
// JSON is decoded into answer, and a status other than wantStatus fails the test.
func control(t *testing.T, method, path string, body any, wantStatus int, answer any) {
	t.Helper()
	var payload bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&payload).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	request, err := http.NewRequest(method, stackVariable(t, "TOKEN_STACK_CONTROL_URL")+path, &payload)
	if err != nil {
		t.Fatal(err)
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatalf("control %s %s: %v", method, path, err)
	}
	defer response.Body.Close()
	if response.StatusCode != wantStatus {
		var problem map[string]any
		_ = json.NewDecoder(response.Body).Decode(&problem)
		t.Fatalf("control %s %s: status %d, want %d: %v", method, path, response.StatusCode, wantStatus, problem)
	}
	if answer != nil {
		if err := json.NewDecoder(response.Body).Decode(answer); err != nil {
			t.Fatalf("control %s %s: %v", method, path, err)
		}
	}
}

// contractVectors is test/contract/vectors.json, read by the Node and Python libraries' tests too.
type contractVectors struct {
	StoredTokens struct {
		Now     int64 `json:"now"`
		Vectors []struct {
			Name     string `json:"name"`
			ClientID string `json:"clientId"`
			Stored   *struct {
				Type   string            `json:"type"`
				Fields map[string]string `json:"fields"`
				Value  string            `json:"value"`
			} `json:"stored"`
			Expect struct {
				Token *tokenJSON `json:"token"`
				Error string     `json:"error"`
				Field string     `json:"field"`
			} `json:"expect"`
		} `json:"vectors"`
	} `json:"storedTokens"`
	WWWAuthenticate []struct {
		Name       string          `json:"name"`
		Header     json.RawMessage `json:"header"`
		Challenges json.RawMessage `json:"challenges"`
		// Bearer is nil for no Bearer challenge; its keys are realm, error, errorDescription, errorUri, scope.
		Bearer       map[string]string `json:"bearer"`
		InvalidToken bool              `json:"invalidToken"`
	} `json:"wwwAuthenticate"`
	Responses []struct {
		Name            string          `json:"name"`
		Status          int             `json:"status"`
		WWWAuthenticate json.RawMessage `json:"wwwAuthenticate"`
		Refresh         bool            `json:"refresh"`
	} `json:"responses"`
	TokenUpdated struct {
		Cached struct {
			ClientID   string `json:"clientId"`
			Generation int64  `json:"generation"`
		} `json:"cached"`
		Messages []struct {
			Name      string `json:"name"`
			Payload   string `json:"payload"`
			Announces *struct {
				ClientID   string `json:"clientId"`
				Generation int64  `json:"generation"`
			} `json:"announces"`
			DropsCache bool `json:"dropsCache"`
		} `json:"messages"`
	} `json:"tokenUpdated"`
	RefreshRequests []refreshRequestVector `json:"refreshRequests"`
	// TracedRefreshRequests are refresh requests given a traceparent.
	TracedRefreshRequests []refreshRequestVector `json:"tracedRefreshRequests"`
	Traceparents          []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
		Valid bool   `json:"valid"`
	} `json:"traceparents"`
	RefreshRequestProofs []struct {
		Name                string `json:"name"`
		AccessToken         string `json:"accessToken"`
		ClientID            string `json:"clientId"`
		RejectedFingerprint string `json:"rejectedFingerprint"`
		Message             string `json:"message"`
		Proof               string `json:"proof"`
	} `json:"refreshRequestProofs"`
}

type refreshRequestVector struct {
	Name        string `json:"name"`
	ClientID    string `json:"clientId"`
	AccessToken string `json:"accessToken"`
	Request     struct {
		RejectedFingerprint string `json:"rejectedFingerprint"`
		Reason              string `json:"reason"`
		TraceParent         string `json:"traceparent"`
	} `json:"request"`
	Fields []string `json:"fields"`
}

func loadVectors(t *testing.T) contractVectors {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "test", "contract", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vectors contractVectors
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	return vectors
}

// headerLines reads a vector's header: a string, a list of lines, or null (no header).
func headerLines(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var lines []string
	if err := json.Unmarshal(raw, &lines); err == nil {
		return lines
	}
	var line *string
	if err := json.Unmarshal(raw, &line); err != nil {
		t.Fatalf("header %s is neither a string, a list nor null", raw)
	}
	if line == nil {
		return nil
	}
	return []string{*line}
}

// tokenJSON is a Token as the Node library and the vectors write it: times in Unix milliseconds.
type tokenJSON struct {
	AccessToken string `json:"accessToken"`
	TokenType   string `json:"tokenType"`
	ExpiresAt   int64  `json:"expiresAt"`
	ObtainedAt  int64  `json:"obtainedAt"`
	Scope       string `json:"scope"`
	Generation  int64  `json:"generation"`
	Fingerprint string `json:"fingerprint"`
	ClientID    string `json:"clientId"`
}

func asJSON(token Token) tokenJSON {
	return tokenJSON{
		AccessToken: token.AccessToken, TokenType: token.TokenType, ExpiresAt: token.ExpiresAt.UnixMilli(), ObtainedAt: token.ObtainedAt.UnixMilli(),
		Scope: token.Scope, Generation: token.Generation, Fingerprint: token.Fingerprint, ClientID: token.ClientID,
	}
}

// tokenFields is a complete hash as the worker writes it, valid for a minute by the real clock.
func tokenFields(clientID string, generation int64) map[string]any {
	now := time.Now().UnixMilli()
	return map[string]any{
		"access_token": fmt.Sprintf("token-%s-%d", clientID, generation), "token_type": "Bearer", "expires_at": now + 60_000, "obtained_at": now,
		"scope": "", "generation": generation, "fingerprint": fmt.Sprintf("%016x", generation), "client_id": clientID,
	}
}

// storeHash replaces key with a hash of fields.
func storeHash(t *testing.T, client *redis.Client, key string, fields map[string]any) {
	t.Helper()
	ctx := context.Background()
	if err := client.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.HSet(ctx, key, fields).Err(); err != nil {
		t.Fatal(err)
	}
}

// eventually polls check every 50 ms until it is true, and fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
