package tokenlifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Every contract vector (test/contract/vectors.json) through this library, against a real
// redis-server: the Node and Python libraries' tests read the same vectors, so the three give the
// same answers. Each group of vectors uses a key prefix of its own.

func TestStoredTokenVectors(t *testing.T) {
	vectors := loadVectors(t)
	client := newRedis(t)
	now := time.UnixMilli(vectors.StoredTokens.Now)
	for _, cache := range []bool{false, true} {
		prefix := fmt.Sprintf("contract-go-cache-%t:", cache)
		reader := newReader(t, client, Options{Prefix: prefix, Cache: cache, Now: func() time.Time { return now }})
		for _, vector := range vectors.StoredTokens.Vectors {
			t.Run(fmt.Sprintf("cache %t: %s", cache, vector.Name), func(t *testing.T) {
				ctx := context.Background()
				key := TokenKey(prefix, vector.ClientID)
				if err := client.Del(ctx, key).Err(); err != nil {
					t.Fatal(err)
				}
				if stored := vector.Stored; stored != nil && stored.Type == "hash" {
					storeHash(t, client, key, toAny(stored.Fields))
				} else if stored != nil {
					if err := client.Set(ctx, key, stored.Value, 0).Err(); err != nil {
						t.Fatal(err)
					}
				}

				token, err := reader.Token(ctx, vector.ClientID)

				if want := vector.Expect.Token; want != nil {
					if err != nil {
						t.Fatalf("Token: %v", err)
					}
					if got := asJSON(token); got != *want {
						t.Fatalf("Token = %+v, want %+v", got, *want)
					}
					return
				}
				if code := CodeOf(err); code != vector.Expect.Error {
					t.Fatalf("error %v has code %q, want %q", err, code, vector.Expect.Error)
				}
				var unavailable *TokenUnavailableError
				var malformed *MalformedStoredTokenError
				switch {
				case vector.Expect.Error == "token_unavailable" && errors.Is(err, ErrTokenUnavailable) && errors.As(err, &unavailable):
					if unavailable.Key != key || unavailable.ClientID != vector.ClientID {
						t.Fatalf("error %+v names another key or client than %s", unavailable, key)
					}
				case vector.Expect.Error == "malformed_stored_token" && errors.Is(err, ErrMalformedStoredToken) && errors.As(err, &malformed):
					if malformed.Key != key || malformed.Field != vector.Expect.Field || !strings.Contains(err.Error(), key) {
						t.Fatalf("error %q (field %q) should name key %s and field %q", err, malformed.Field, key, vector.Expect.Field)
					}
				default:
					t.Fatalf("error %#v is not a %s error", err, vector.Expect.Error)
				}
			})
		}
	}
}

func TestWWWAuthenticateVectors(t *testing.T) {
	for _, vector := range loadVectors(t).WWWAuthenticate {
		t.Run(vector.Name, func(t *testing.T) {
			lines := headerLines(t, vector.Header)
			challenges, err := ParseWWWAuthenticate(lines...)
			switch string(vector.Challenges) {
			case `"syntax_error"`:
				var syntaxError *WWWAuthenticateSyntaxError
				if !errors.Is(err, ErrInvalidWWWAuthenticate) || !errors.As(err, &syntaxError) || CodeOf(err) != "invalid_www_authenticate" {
					t.Fatalf("ParseWWWAuthenticate = %+v, %v; want a syntax error", challenges, err)
				}
			case "null":
			default:
				var want []Challenge
				if err := json.Unmarshal(vector.Challenges, &want); err != nil {
					t.Fatal(err)
				}
				if err != nil || !reflect.DeepEqual(challenges, want) {
					t.Fatalf("ParseWWWAuthenticate = %+v, %v; want %+v", challenges, err, want)
				}
			}

			bearer, found := FindBearerChallenge(lines...)
			if vector.Bearer == nil {
				if found {
					t.Fatalf("FindBearerChallenge = %+v, want none", bearer)
				}
			} else {
				want := BearerChallenge{Realm: vector.Bearer["realm"], Error: vector.Bearer["error"], ErrorDescription: vector.Bearer["errorDescription"], ErrorURI: vector.Bearer["errorUri"], Scope: vector.Bearer["scope"]}
				if !found || bearer != want {
					t.Fatalf("FindBearerChallenge = %+v, %t; want %+v", bearer, found, want)
				}
			}
			if got := IsInvalidTokenChallenge(lines...); got != vector.InvalidToken {
				t.Fatalf("IsInvalidTokenChallenge = %t, want %t", got, vector.InvalidToken)
			}
		})
	}
}

func TestResponseVectors(t *testing.T) {
	vectors := loadVectors(t)
	client := newRedis(t)
	prefix := "contract-go-http:"
	reader := newReader(t, client, Options{Prefix: prefix, Cache: true})
	challenges := make([][]string, len(vectors.Responses))
	for index, vector := range vectors.Responses {
		challenges[index] = headerLines(t, vector.WWWAuthenticate)
	}
	var mu sync.Mutex
	hits := map[string][]string{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		index, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		mu.Lock()
		hits[r.URL.Path] = append(hits[r.URL.Path], r.Header.Get("Authorization"))
		mu.Unlock()
		for _, line := range challenges[index] {
			w.Header().Add("WWW-Authenticate", line)
		}
		w.WriteHeader(vectors.Responses[index].Status)
	}))
	t.Cleanup(server.Close)

	for index, vector := range vectors.Responses {
		t.Run(vector.Name, func(t *testing.T) {
			clientID := fmt.Sprintf("response-%d", index)
			fields := tokenFields(clientID, 1)
			storeHash(t, client, TokenKey(prefix, clientID), fields)
			// No newer token arrives: a refresh is asked for, waited on briefly, and the caller gets the answer.
			api := &http.Client{Transport: &Transport{Reader: reader, ClientID: clientID, RefreshTimeout: 300 * time.Millisecond}}

			response, err := api.Get(fmt.Sprintf("%s/%d", server.URL, index))
			if err != nil {
				t.Fatal(err)
			}
			_ = response.Body.Close()

			if response.StatusCode != vector.Status {
				t.Fatalf("status %d, want %d", response.StatusCode, vector.Status)
			}
			mu.Lock()
			sent := hits[fmt.Sprintf("/%d", index)]
			mu.Unlock()
			if want := []string{"Bearer " + fields["access_token"].(string)}; !slices.Equal(sent, want) {
				t.Fatalf("the server saw %q, want %q", sent, want)
			}
			var requested [][]string
			for _, entry := range streamEntries(t, client, RefreshRequestsStream(prefix), "-", "+") {
				if entry[1] == clientID {
					requested = append(requested, entry[:4])
				}
			}
			var want [][]string
			if vector.Refresh {
				want = [][]string{{"clientId", clientID, "rejectedFingerprint", fields["fingerprint"].(string)}}
			}
			if !reflect.DeepEqual(requested, want) {
				t.Fatalf("refresh requests %q, want %q", requested, want)
			}
		})
	}
}

func TestTokenUpdatedVectors(t *testing.T) {
	vectors := loadVectors(t)
	client := newRedis(t)
	cached := vectors.TokenUpdated.Cached
	for index, vector := range vectors.TokenUpdated.Messages {
		t.Run(vector.Name, func(t *testing.T) {
			ctx := context.Background()
			announced, ok := parseAnnouncement(vector.Payload)
			if vector.Announces == nil && ok || vector.Announces != nil && (!ok || announced != announcement{ClientID: vector.Announces.ClientID, Generation: vector.Announces.Generation}) {
				t.Fatalf("parseAnnouncement = %+v, %t; want %+v", announced, ok, vector.Announces)
			}

			prefix := fmt.Sprintf("contract-go-updates-%d:", index)
			reader := newReader(t, client, Options{Prefix: prefix, Cache: true})
			generation := func(clientID string) int64 {
				token, err := reader.Token(ctx, clientID)
				if err != nil {
					t.Fatal(err)
				}
				return token.Generation
			}
			storeHash(t, client, TokenKey(prefix, cached.ClientID), tokenFields(cached.ClientID, cached.Generation))
			if got := generation(cached.ClientID); got != cached.Generation {
				t.Fatalf("generation %d, want %d", got, cached.Generation)
			}
			// Behind the reader's back: only an announcement makes it read Redis again.
			storeHash(t, client, TokenKey(prefix, cached.ClientID), tokenFields(cached.ClientID, cached.Generation+1))
			if got := generation(cached.ClientID); got != cached.Generation {
				t.Fatalf("generation %d before any announcement, want the cached %d", got, cached.Generation)
			}

			publish(t, client, TokenUpdatedChannel(prefix), vector.Payload)
			// Announcements arrive in order on one connection: once this one is seen, so was the vector's.
			storeHash(t, client, TokenKey(prefix, "barrier"), tokenFields("barrier", 1))
			generation("barrier")
			storeHash(t, client, TokenKey(prefix, "barrier"), tokenFields("barrier", 2))
			publish(t, client, TokenUpdatedChannel(prefix), `{"clientId":"barrier","generation":2}`)
			eventually(t, 10*time.Second, "the barrier announcement", func() bool { return generation("barrier") == 2 })

			want := cached.Generation
			if vector.DropsCache {
				want++
			}
			if got := generation(cached.ClientID); got != want {
				t.Fatalf("generation %d after the announcement, want %d", got, want)
			}
		})
	}
}

func TestRefreshRequestVectors(t *testing.T) {
	client := newRedis(t)
	prefix := "contract-go-refresh:"
	reader := newReader(t, client, Options{Prefix: prefix})
	vectors := loadVectors(t)
	for _, vector := range append(vectors.RefreshRequests, vectors.TracedRefreshRequests...) {
		t.Run(vector.Name, func(t *testing.T) {
			id, err := reader.RequestRefresh(context.Background(), vector.ClientID, RefreshRequest{
				RejectedFingerprint: vector.Request.RejectedFingerprint,
				Reason:              vector.Request.Reason,
				AccessToken:         vector.AccessToken,
				TraceParent:         vector.Request.TraceParent,
			})
			if err != nil {
				t.Fatal(err)
			}
			entries := streamEntries(t, client, RefreshRequestsStream(prefix), id, id)
			if len(entries) != 1 || !slices.Equal(entries[0], vector.Fields) {
				t.Fatalf("entry %s holds %q, want %q", id, entries, vector.Fields)
			}
		})
	}
}

func TestTraceParentVectors(t *testing.T) {
	for _, vector := range loadVectors(t).Traceparents {
		t.Run(vector.Name, func(t *testing.T) {
			if got := validTraceParent(vector.Value); got != vector.Valid {
				t.Fatalf("validTraceParent(%q) = %t, want %t", vector.Value, got, vector.Valid)
			}
		})
	}
}

func TestRefreshRequestProofVectors(t *testing.T) {
	for _, vector := range loadVectors(t).RefreshRequestProofs {
		t.Run(vector.Name, func(t *testing.T) {
			if got := refreshRequestProofMessage(vector.ClientID, vector.RejectedFingerprint); got != vector.Message {
				t.Fatalf("message %q, want %q", got, vector.Message)
			}
			if got := refreshRequestProof(vector.AccessToken, vector.ClientID, vector.RejectedFingerprint); got != vector.Proof {
				t.Fatalf("proof %q, want %q", got, vector.Proof)
			}
		})
	}
}

// streamEntries is XRANGE's answer as each entry's fields in order (go-redis's XRange gives a map).
func streamEntries(t *testing.T, client *redis.Client, stream, start, end string) [][]string {
	t.Helper()
	reply, err := client.Do(context.Background(), "XRANGE", stream, start, end).Slice()
	if err != nil {
		t.Fatal(err)
	}
	entries := make([][]string, 0, len(reply))
	for _, entry := range reply {
		var fields []string
		for _, value := range entry.([]any)[1].([]any) {
			fields = append(fields, value.(string))
		}
		entries = append(entries, fields)
	}
	return entries
}

func publish(t *testing.T, client *redis.Client, channel, payload string) {
	t.Helper()
	if err := client.Publish(context.Background(), channel, payload).Err(); err != nil {
		t.Fatal(err)
	}
}

func toAny(fields map[string]string) map[string]any {
	converted := make(map[string]any, len(fields))
	for name, value := range fields {
		converted[name] = value
	}
	return converted
}

func TestPrintingATokenDoesNotShowIt(t *testing.T) {
	token := Token{AccessToken: "eyJ.secret.sig", ClientID: "orders", Generation: 3, Fingerprint: "0123456789abcdef", ExpiresAt: time.UnixMilli(1767225900000)}
	for _, printed := range []string{fmt.Sprint(token), fmt.Sprintf("%v", token), fmt.Sprintf("%+v", token), token.String()} {
		if strings.Contains(printed, "secret") || !strings.Contains(printed, "0123456789abcdef") {
			t.Fatalf("printed %q: want the fingerprint and not the token", printed)
		}
	}
}
