package tokenlifecycle

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors, one per condition, for errors.Is. The typed errors below match them and carry
// the details; each also has a stable Code, the same string as the Node library's `code`.
var (
	// ErrTokenUnavailable: Redis holds no usable token for the client.
	ErrTokenUnavailable = errors.New("tokenlifecycle: token unavailable")
	// ErrRedisUnavailable: Redis did not answer.
	ErrRedisUnavailable = errors.New("tokenlifecycle: Redis unavailable")
	// ErrMalformedStoredToken: the key holds something other than the contract's layout.
	ErrMalformedStoredToken = errors.New("tokenlifecycle: malformed stored token")
	// ErrTokenWaitTimeout: no newer token arrived in time.
	ErrTokenWaitTimeout = errors.New("tokenlifecycle: token wait timeout")
	// ErrRefreshRequestFailed: a refresh request could not be delivered.
	ErrRefreshRequestFailed = errors.New("tokenlifecycle: refresh request failed")
	// ErrInvalidWWWAuthenticate: a WWW-Authenticate header does not follow RFC 9110 §11.6.1.
	ErrInvalidWWWAuthenticate = errors.New("tokenlifecycle: invalid WWW-Authenticate header")
	// ErrReaderClosed: the Reader was closed; create a new one.
	ErrReaderClosed error = &codedError{code: "token_reader_closed", message: "tokenlifecycle: the Reader was closed"}
)

// CodeOf returns the stable code of the first error in err's chain that has one (for example
// "token_unavailable"), or "" when none has.
func CodeOf(err error) string {
	var coded interface{ Code() string }
	if errors.As(err, &coded) {
		return coded.Code()
	}
	return ""
}

// TokenUnavailableError: Redis holds no usable token for the client. The worker has not stored
// one yet, the last one expired (the key expires with the token), or the client is not
// registered. Retrying later, or [Reader.WaitForToken], may help; an expired token never does.
type TokenUnavailableError struct {
	ClientID string
	// Key is the Redis key that was read, e.g. "oauth:token:orders".
	Key string
}

func (e *TokenUnavailableError) Error() string {
	return fmt.Sprintf("tokenlifecycle: no current token for client %q in Redis (key %s): none was stored yet, it expired, or the client is not registered", e.ClientID, e.Key)
}

// Code returns "token_unavailable".
func (e *TokenUnavailableError) Code() string { return "token_unavailable" }

// Is reports whether target is [ErrTokenUnavailable].
func (e *TokenUnavailableError) Is(target error) bool { return target == ErrTokenUnavailable }

// RedisUnavailableError: Redis did not answer the reader (down, unreachable, or refusing the
// command). The worker keeps tokens fresh meanwhile; retry later. Err is go-redis's error.
type RedisUnavailableError struct {
	ClientID string
	Err      error
}

func (e *RedisUnavailableError) Error() string {
	return fmt.Sprintf("tokenlifecycle: could not read the token of client %q from Redis: %v", e.ClientID, e.Err)
}

// Code returns "redis_unavailable".
func (e *RedisUnavailableError) Code() string { return "redis_unavailable" }

// Is reports whether target is [ErrRedisUnavailable].
func (e *RedisUnavailableError) Is(target error) bool { return target == ErrRedisUnavailable }

func (e *RedisUnavailableError) Unwrap() error { return e.Err }

// MalformedStoredTokenError: the key holds something other than the contract's layout (something
// other than the worker wrote it). It names the key and the field, never the token.
type MalformedStoredTokenError struct {
	Key string
	// Field is the hash field at fault, "" when the key is not a hash at all.
	Field   string
	Problem string
}

func (e *MalformedStoredTokenError) Error() string {
	return fmt.Sprintf("tokenlifecycle: Redis record %s %s", e.Key, e.Problem)
}

// Code returns "malformed_stored_token".
func (e *MalformedStoredTokenError) Code() string { return "malformed_stored_token" }

// Is reports whether target is [ErrMalformedStoredToken].
func (e *MalformedStoredTokenError) Is(target error) bool { return target == ErrMalformedStoredToken }

// TokenWaitTimeoutError: [Reader.WaitForToken] saw no token newer than NewerThan within Timeout.
type TokenWaitTimeoutError struct {
	ClientID  string
	NewerThan int64
	Timeout   time.Duration
}

func (e *TokenWaitTimeoutError) Error() string {
	return fmt.Sprintf("tokenlifecycle: no token for client %q with a generation above %d arrived within %s", e.ClientID, e.NewerThan, e.Timeout)
}

// Code returns "token_wait_timeout".
func (e *TokenWaitTimeoutError) Code() string { return "token_wait_timeout" }

// Is reports whether target is [ErrTokenWaitTimeout].
func (e *TokenWaitTimeoutError) Is(target error) bool { return target == ErrTokenWaitTimeout }

// RefreshRequestError: the refresh request's stream entry was not stored. Err is go-redis's
// error, if any. Problem is empty when Redis refused the entry; otherwise it says why no entry
// was added (no token to make its origin proof with, or reading it failed).
type RefreshRequestError struct {
	ClientID string
	Stream   string
	Problem  string
	Err      error
}

func (e *RefreshRequestError) Error() string {
	switch {
	case e.Problem == "":
		return fmt.Sprintf("tokenlifecycle: could not request a refresh for client %q: Redis refused the entry on %s: %v", e.ClientID, e.Stream, e.Err)
	case e.Err == nil:
		return fmt.Sprintf("tokenlifecycle: could not request a refresh for client %q: %s", e.ClientID, e.Problem)
	default:
		return fmt.Sprintf("tokenlifecycle: could not request a refresh for client %q: %s: %v", e.ClientID, e.Problem, e.Err)
	}
}

// Code returns "refresh_request_failed".
func (e *RefreshRequestError) Code() string { return "refresh_request_failed" }

// Is reports whether target is [ErrRefreshRequestFailed].
func (e *RefreshRequestError) Is(target error) bool { return target == ErrRefreshRequestFailed }

func (e *RefreshRequestError) Unwrap() error { return e.Err }

// WWWAuthenticateSyntaxError: the header does not follow the grammar; Position is the byte offset
// where parsing stopped.
type WWWAuthenticateSyntaxError struct {
	Header   string
	Position int
	Expected string
}

func (e *WWWAuthenticateSyntaxError) Error() string {
	return fmt.Sprintf("tokenlifecycle: malformed WWW-Authenticate header at offset %d: expected %s", e.Position, e.Expected)
}

// Code returns "invalid_www_authenticate".
func (e *WWWAuthenticateSyntaxError) Code() string { return "invalid_www_authenticate" }

// Is reports whether target is [ErrInvalidWWWAuthenticate].
func (e *WWWAuthenticateSyntaxError) Is(target error) bool {
	return target == ErrInvalidWWWAuthenticate
}

// codedError is a sentinel that needs no details but has a code.
type codedError struct{ code, message string }

func (e *codedError) Error() string { return e.message }
func (e *codedError) Code() string  { return e.code }
