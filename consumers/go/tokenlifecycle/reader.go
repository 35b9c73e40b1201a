package tokenlifecycle

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a [Reader]. The zero value reads without a cache under [DefaultPrefix].
type Options struct {
	// Prefix is the worker's TOKEN_KEY_PREFIX. Default [DefaultPrefix].
	Prefix string
	// Cache keeps each client's token in memory, so Token usually costs no round trip. An entry
	// is dropped when <prefix>token-updated announces a newer generation (read on a dedicated
	// subscriber connection), when that connection fails, and it is never served at or past its
	// ExpiresAt.
	Cache bool
	// WaitPollInterval is how often WaitForToken reads the key besides listening for
	// announcements (in case one is missed). Default 1s.
	WaitPollInterval time.Duration
	// RefreshRequestsMaxLen caps the refresh-requests stream at about this many entries
	// (XADD … MAXLEN ~ n), so it stays bounded when no worker reads it. Default 10000.
	RefreshRequestsMaxLen int64
	// Now is the clock that decides whether a token has expired. Default time.Now.
	Now func() time.Time
	// TraceParent gives the trace context that refresh requests carry, so that the worker's
	// spans of the forced refresh join the caller's trace: [Reader.RequestRefresh] calls it with
	// its ctx (the request's context, through [Transport]) unless [RefreshRequest.TraceParent]
	// is set, and sends a valid answer as the entry's traceparent field (a malformed one is left
	// out: tracing never stops a refresh). With OpenTelemetry, use tokenlifecycleotel.TraceParent.
	// Default: none.
	TraceParent TraceParentFunc
}

// DefaultRefreshRequestsMaxLen is the length producers cap <prefix>refresh-requests at, as the
// worker expects.
const DefaultRefreshRequestsMaxLen = 10_000

// Reader reads tokens from Redis in the contract's layout (docs/redis-contract.md) and asks the
// worker for new ones. It is safe for concurrent use; share one per process.
type Reader struct {
	redis   redis.UniversalClient
	prefix  string
	cache   bool
	poll    time.Duration
	maxLen  int64
	now     func() time.Time
	trace   TraceParentFunc
	updates *updates
	closed  chan struct{}
	once    sync.Once

	mu     sync.Mutex
	cached map[string]Token
	// announcements counts, per client, the announcements seen: a read that started before one
	// must not fill the cache (the announcement may name a newer token than the read saw).
	announcements map[string]uint64
	waiters       map[string]map[*waiter]struct{}
	replacements  map[string]*replacement
}

type waiter struct {
	newerThan int64
	wake      chan struct{}
}

type replacement struct {
	done  chan struct{}
	token Token
	ok    bool
	err   error
}

// NewReader returns a Reader on client (standalone, Sentinel or Cluster). The Reader does not
// close client; [Reader.Close] closes only the subscription it opened.
func NewReader(client redis.UniversalClient, options Options) *Reader {
	r := &Reader{
		redis:         client,
		prefix:        options.Prefix,
		cache:         options.Cache,
		poll:          options.WaitPollInterval,
		maxLen:        options.RefreshRequestsMaxLen,
		now:           options.Now,
		trace:         options.TraceParent,
		closed:        make(chan struct{}),
		cached:        map[string]Token{},
		announcements: map[string]uint64{},
		waiters:       map[string]map[*waiter]struct{}{},
		replacements:  map[string]*replacement{},
	}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.poll <= 0 {
		r.poll = time.Second
	}
	if r.maxLen <= 0 {
		r.maxLen = DefaultRefreshRequestsMaxLen
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.updates = newUpdates(client, TokenUpdatedChannel(r.prefix), r.onAnnouncement, r.dropCache)
	return r
}

// Prefix is the key prefix the Reader reads under.
func (r *Reader) Prefix() string { return r.prefix }

// Token returns the current token of clientID: from the cache when enabled and still valid, else
// from the hash <prefix>token:<clientID>. It never returns a token whose ExpiresAt has passed.
//
// Errors: [ErrTokenUnavailable] ([*TokenUnavailableError]) when Redis holds no unexpired token
// for the client, [ErrRedisUnavailable] when Redis did not answer, [ErrMalformedStoredToken] when
// the key holds something else than the contract's layout, ctx's error when it ended first.
func (r *Reader) Token(ctx context.Context, clientID string) (Token, error) {
	return r.token(ctx, clientID, false)
}

func (r *Reader) token(ctx context.Context, clientID string, skipCache bool) (Token, error) {
	if r.isClosed() {
		return Token{}, ErrReaderClosed
	}
	if r.cache {
		if err := r.updates.start(ctx); err != nil {
			return Token{}, r.redisError(ctx, clientID, err)
		}
		r.mu.Lock()
		cached, ok := r.cached[clientID]
		if ok && cached.ExpiresAt.After(r.now()) {
			if !skipCache {
				r.mu.Unlock()
				return cached, nil
			}
		} else if ok {
			delete(r.cached, clientID)
		}
		r.mu.Unlock()
	}
	token, found, err := r.read(ctx, clientID)
	if err != nil {
		return Token{}, r.redisError(ctx, clientID, err)
	}
	if !found {
		return Token{}, &TokenUnavailableError{ClientID: clientID, Key: TokenKey(r.prefix, clientID)}
	}
	return token, nil
}

// read reads the key, and caches what it read unless an announcement arrived meanwhile.
func (r *Reader) read(ctx context.Context, clientID string) (Token, bool, error) {
	key := TokenKey(r.prefix, clientID)
	r.mu.Lock()
	announcementsBefore := r.announcements[clientID]
	r.mu.Unlock()
	values, err := r.redis.HMGet(ctx, key, storedFields...).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "WRONGTYPE") {
			return Token{}, false, &MalformedStoredTokenError{Key: key, Problem: "is not a hash"}
		}
		return Token{}, false, err
	}
	token, found, err := parseStoredToken(key, values, r.now())
	if err != nil || !found {
		return Token{}, false, err
	}
	r.mu.Lock()
	if r.announcements[clientID] == announcementsBefore {
		r.remember(token)
	}
	r.mu.Unlock()
	return token, true, nil
}

// remember caches token unless the cache is off, announcements cannot be trusted, or it holds a
// newer one. Called with mu held.
func (r *Reader) remember(token Token) {
	if !r.cache || !r.updates.isLive() {
		return
	}
	if cached, ok := r.cached[token.ClientID]; !ok || cached.Generation < token.Generation {
		r.cached[token.ClientID] = token
	}
}

func (r *Reader) onAnnouncement(a announcement) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.announcements[a.ClientID]++
	if cached, ok := r.cached[a.ClientID]; ok && cached.Generation < a.Generation {
		delete(r.cached, a.ClientID)
	}
	for w := range r.waiters[a.ClientID] {
		if a.Generation > w.newerThan {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (r *Reader) dropCache() {
	r.mu.Lock()
	clear(r.cached)
	r.mu.Unlock()
}

// WaitForToken returns the first unexpired token of clientID whose generation is above
// newerThan (0: any token). It subscribes to <prefix>token-updated first and then reads the key,
// so a token stored in between is not missed; it reads the key again on every announcement for
// the client and every [Options.WaitPollInterval].
//
// Errors: [ErrTokenWaitTimeout] ([*TokenWaitTimeoutError]) after timeout without such a token,
// [ErrRedisUnavailable] when Redis did not answer the subscription, [ErrReaderClosed] when the
// Reader was closed meanwhile, ctx's error when it ended first.
func (r *Reader) WaitForToken(ctx context.Context, clientID string, newerThan int64, timeout time.Duration) (Token, error) {
	if r.isClosed() {
		return Token{}, ErrReaderClosed
	}
	if err := r.updates.start(ctx); err != nil {
		return Token{}, r.redisError(ctx, clientID, err)
	}
	w := &waiter{newerThan: newerThan, wake: make(chan struct{}, 1)}
	r.mu.Lock()
	if r.waiters[clientID] == nil {
		r.waiters[clientID] = map[*waiter]struct{}{}
	}
	r.waiters[clientID][w] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiters[clientID], w)
		if len(r.waiters[clientID]) == 0 {
			delete(r.waiters, clientID)
		}
		r.mu.Unlock()
	}()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(r.poll)
	defer poll.Stop()
	for {
		// A failed read is retried on the next wake-up; the deadline ends the wait if Redis stays away.
		if token, found, err := r.read(ctx, clientID); err == nil && found && token.Generation > newerThan {
			return token, nil
		}
		select {
		case <-w.wake:
		case <-poll.C:
		case <-deadline.C:
			return Token{}, &TokenWaitTimeoutError{ClientID: clientID, NewerThan: newerThan, Timeout: timeout}
		case <-ctx.Done():
			return Token{}, ctx.Err()
		case <-r.closed:
			return Token{}, ErrReaderClosed
		}
	}
}

// ReplaceRejectedToken is for after an API refused rejected (RFC 6750 §3.1 invalid_token): it
// returns the token that replaces it, asking the worker for one only if it has not been replaced
// already. Concurrent calls about the same refused token share one refresh request and one wait,
// so a burst of refusals in this process sends one request. ok is false when no newer token
// arrived within timeout (for example because the worker holds forced refreshes to their minimum
// interval).
//
// Errors: [ErrRefreshRequestFailed] when the request could not be delivered, the errors of
// [Reader.Token], ctx's error when it ended first (the shared work goes on for the others).
func (r *Reader) ReplaceRejectedToken(ctx context.Context, clientID string, rejected Token, reason string, timeout time.Duration) (token Token, ok bool, err error) {
	key := clientID + "\x00" + rejected.Fingerprint
	r.mu.Lock()
	shared, exists := r.replacements[key]
	if !exists {
		shared = &replacement{done: make(chan struct{})}
		r.replacements[key] = shared
		// Not bound to this caller's context: others may be waiting for the same outcome.
		go func() {
			shared.token, shared.ok, shared.err = r.replace(context.WithoutCancel(ctx), clientID, rejected, reason, timeout)
			r.mu.Lock()
			delete(r.replacements, key)
			r.mu.Unlock()
			close(shared.done)
		}()
	}
	r.mu.Unlock()
	select {
	case <-shared.done:
		return shared.token, shared.ok, shared.err
	case <-ctx.Done():
		return Token{}, false, ctx.Err()
	}
}

func (r *Reader) replace(ctx context.Context, clientID string, rejected Token, reason string, timeout time.Duration) (Token, bool, error) {
	// A caller whose request was in flight while the token rotated needs no new refresh.
	current, err := r.token(ctx, clientID, true)
	switch {
	case err == nil && current.Generation > rejected.Generation:
		return current, true, nil
	case err != nil && !errors.Is(err, ErrTokenUnavailable):
		return Token{}, false, err
	}
	if _, err := r.RequestRefresh(ctx, clientID, RefreshRequest{RejectedFingerprint: rejected.Fingerprint, Reason: reason, AccessToken: rejected.AccessToken}); err != nil {
		return Token{}, false, err
	}
	token, err := r.WaitForToken(ctx, clientID, rejected.Generation, timeout)
	if errors.Is(err, ErrTokenWaitTimeout) {
		return Token{}, false, nil
	}
	return token, err == nil, err
}

// Close closes the subscriber connection and ends pending waits with [ErrReaderClosed]. The
// Redis client given to [NewReader] stays open.
func (r *Reader) Close() error {
	r.once.Do(func() {
		close(r.closed)
		r.updates.close()
		r.dropCache()
	})
	return nil
}

func (r *Reader) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// redisError is err as the Reader reports it: a malformed record or a closed Reader stays what
// it is, an ended ctx is its own error, anything else means Redis did not answer.
func (r *Reader) redisError(ctx context.Context, clientID string, err error) error {
	var malformed *MalformedStoredTokenError
	switch {
	case errors.As(err, &malformed), errors.Is(err, ErrReaderClosed):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return &RedisUnavailableError{ClientID: clientID, Err: err}
	}
}
