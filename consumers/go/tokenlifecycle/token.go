package tokenlifecycle

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// DefaultPrefix is the prefix of every Redis name when the worker's TOKEN_KEY_PREFIX is not set.
const DefaultPrefix = "oauth:"

// Token is a client's current token, as the worker stored it.
type Token struct {
	// AccessToken is what to send in "Authorization: Bearer <AccessToken>" (RFC 6750 §2.1).
	// Never log it: name a token by its Fingerprint.
	AccessToken string
	// TokenType is the IAM's token_type, normally "Bearer" (RFC 6749 §7.1).
	TokenType string
	// ExpiresAt is when the token becomes unusable; a Reader never returns it from then on.
	ExpiresAt time.Time
	// ObtainedAt is when the worker received the token from the IAM.
	ObtainedAt time.Time
	// Generation increases with every token the worker obtains for the client: higher is newer.
	Generation int64
	// Fingerprint is the first 16 hex digits of SHA-256 of the token.
	Fingerprint string
	// Scope is the space-delimited scope the IAM granted (RFC 6749 §3.3); it may be empty.
	Scope    string
	ClientID string
}

// String describes the token without the token itself, so that printing or logging a Token never
// leaks it.
func (t Token) String() string {
	return fmt.Sprintf("Token{ClientID: %s, Generation: %d, Fingerprint: %s, ExpiresAt: %s}", t.ClientID, t.Generation, t.Fingerprint, t.ExpiresAt.UTC().Format(time.RFC3339Nano))
}

// TokenKey is the hash that holds the current token of clientID: "<prefix>token:<clientId>".
func TokenKey(prefix, clientID string) string { return prefix + "token:" + clientID }

// TokenUpdatedChannel is the channel on which the worker announces every token it stores.
func TokenUpdatedChannel(prefix string) string { return prefix + "token-updated" }

// RefreshRequestsStream is the stream on which services ask the worker for a new token.
func RefreshRequestsStream(prefix string) string { return prefix + "refresh-requests" }

// storedFields are the hash fields a Reader reads, in the order parseStoredToken expects them.
var storedFields = []string{"access_token", "client_id", "token_type", "scope", "generation", "obtained_at", "expires_at", "fingerprint"}

// maxExactInteger is 2^53 - 1: the largest integer that every consumer language (JavaScript's
// numbers included) represents exactly.
const maxExactInteger = 1<<53 - 1

var decimalDigits = regexp.MustCompile(`^[0-9]+$`)

// parseStoredToken reads HMGET's answer for storedFields (nil for a missing field). It returns
// found=false when the hash holds no usable token: no access_token, no expires_at, or an
// expires_at at or before now.
func parseStoredToken(key string, values []any, now time.Time) (token Token, found bool, err error) {
	field := func(index int) (string, bool) {
		value, ok := values[index].(string)
		return value, ok
	}
	required := func(index int) (string, error) {
		value, ok := field(index)
		if !ok {
			return "", &MalformedStoredTokenError{Key: key, Field: storedFields[index], Problem: `has no "` + storedFields[index] + `" field`}
		}
		return value, nil
	}
	integer := func(index int) (int64, error) {
		value, err := required(index)
		if err != nil {
			return 0, err
		}
		parsed, parseErr := strconv.ParseInt(value, 10, 64)
		if !decimalDigits.MatchString(value) || parseErr != nil || parsed > maxExactInteger {
			return 0, &MalformedStoredTokenError{Key: key, Field: storedFields[index], Problem: `field "` + storedFields[index] + `" must be an integer, got ` + strconv.Quote(value)}
		}
		return parsed, nil
	}

	accessToken, ok := field(0)
	if !ok {
		return Token{}, false, nil
	}
	if _, ok := field(6); !ok {
		return Token{}, false, nil
	}
	token = Token{AccessToken: accessToken}
	if token.ClientID, err = required(1); err != nil {
		return Token{}, false, err
	}
	if token.TokenType, err = required(2); err != nil {
		return Token{}, false, err
	}
	if token.Scope, err = required(3); err != nil {
		return Token{}, false, err
	}
	if token.Generation, err = integer(4); err != nil {
		return Token{}, false, err
	}
	obtainedAt, err := integer(5)
	if err != nil {
		return Token{}, false, err
	}
	expiresAt, err := integer(6)
	if err != nil {
		return Token{}, false, err
	}
	if token.Fingerprint, err = required(7); err != nil {
		return Token{}, false, err
	}
	token.ObtainedAt = time.UnixMilli(obtainedAt)
	token.ExpiresAt = time.UnixMilli(expiresAt)
	// Redis expires the key itself; this covers a reader whose clock runs ahead of Redis's.
	if expiresAt <= now.UnixMilli() {
		return Token{}, false, nil
	}
	return token, true, nil
}
