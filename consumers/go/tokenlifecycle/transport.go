package tokenlifecycle

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultRefreshTimeout is how long a refused request waits for the replacement token by default.
const DefaultRefreshTimeout = 5 * time.Second

// Transport is an [http.RoundTripper] whose requests carry the current token of ClientID, and
// that recovers once from a refused one:
//
//   - every request gets "Authorization: Bearer <token>" (RFC 6750 §2.1) from Reader;
//   - on a 401 whose Bearer challenge says error="invalid_token" (RFC 6750 §3.1) it asks for ONE
//     refresh naming the refused token's fingerprint (unless it was already replaced), waits for a
//     newer generation, and retries ONCE; a second refusal goes to the caller, so it never loops.
//     Concurrent requests refused with the same token share one refresh request and one wait.
//     When no newer token arrives within RefreshTimeout the caller gets the 401;
//   - a 401 without an error code, invalid_request, a 403 insufficient_scope and every other
//     answer go to the caller untouched: a new token would be refused alike, and refreshing on
//     them is how consumers end up hammering an IAM.
//
// A request whose body cannot be sent again (Body set, GetBody nil) is not retried. Errors of the
// Reader (for example [ErrTokenUnavailable]) reach the caller wrapped in [*url.Error] by
// [http.Client], so errors.Is and errors.As see them.
type Transport struct {
	// Reader provides the tokens and takes the refresh requests; share one per process.
	Reader *Reader
	// ClientID is the OAuth client whose token the requests carry.
	ClientID string
	// RefreshTimeout is how long a refused request waits for the replacement. The worker holds
	// forced refreshes to a minimum interval (10 s by default), so a token refused again soon after
	// a refresh is not replaced within this time. Default [DefaultRefreshTimeout].
	RefreshTimeout time.Duration
	// Base sends the requests. Default [http.DefaultTransport].
	Base http.RoundTripper
}

// RoundTrip implements [http.RoundTripper].
func (t *Transport) RoundTrip(request *http.Request) (*http.Response, error) {
	ctx := request.Context()
	token, err := t.Reader.Token(ctx, t.ClientID)
	if err != nil {
		closeBody(request)
		return nil, err
	}
	response, err := t.base().RoundTrip(authorized(request, token))
	if err != nil || response.StatusCode != http.StatusUnauthorized || !IsInvalidTokenChallenge(response.Header.Values("WWW-Authenticate")...) {
		return response, err
	}
	if request.Body != nil && request.Body != http.NoBody && request.GetBody == nil {
		return response, nil
	}

	refreshTimeout := t.RefreshTimeout
	if refreshTimeout <= 0 {
		refreshTimeout = DefaultRefreshTimeout
	}
	replacement, ok, err := t.Reader.ReplaceRejectedToken(ctx, t.ClientID, token, "401 invalid_token from "+host(request.URL), refreshTimeout)
	if err != nil {
		discard(response)
		return nil, err
	}
	if !ok {
		return response, nil
	}
	retry := authorized(request, replacement)
	if request.GetBody != nil {
		if retry.Body, err = request.GetBody(); err != nil {
			return response, nil
		}
	}
	discard(response)
	return t.base().RoundTrip(retry)
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// authorized is a copy of request with the token's Authorization header (a RoundTripper must not
// change the request it was given).
func authorized(request *http.Request, token Token) *http.Request {
	clone := request.Clone(request.Context())
	clone.Header.Set("Authorization", authScheme(token.TokenType)+" "+token.AccessToken)
	return clone
}

// authScheme is the scheme to send for a token_type. Token types are case-insensitive (RFC 6749
// §5.1) but some servers compare the scheme byte for byte, so "bearer" is sent as RFC 6750 §2.1
// spells it.
func authScheme(tokenType string) string {
	if strings.EqualFold(tokenType, "bearer") {
		return "Bearer"
	}
	return tokenType
}

// host is the URL's host as the Node library names it in refresh reasons (WHATWG URL.host):
// lower-case, without a default port.
func host(u *url.URL) string {
	name, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" || u.Scheme == "http" && port == "80" || u.Scheme == "https" && port == "443" {
		if strings.Contains(name, ":") {
			return "[" + name + "]"
		}
		return name
	}
	return net.JoinHostPort(name, port)
}

func discard(response *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(response.Body, 64<<10))
	_ = response.Body.Close()
}

func closeBody(request *http.Request) {
	if request.Body != nil {
		_ = request.Body.Close()
	}
}
