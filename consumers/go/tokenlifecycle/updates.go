package tokenlifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// announcement is what a consumer reads from a token-updated message: which client has a token
// of which generation (docs/token-updated.schema.json).
type announcement struct {
	ClientID   string
	Generation int64
}

// parseAnnouncement reads a token-updated payload the way every consumer library does: a JSON
// object whose clientId is a string and whose generation is an integral JSON number within
// ±(2^53 - 1). Anything else is not an announcement (ok=false) and is ignored.
func parseAnnouncement(payload string) (a announcement, ok bool) {
	var members map[string]any
	if err := json.Unmarshal([]byte(payload), &members); err != nil {
		return announcement{}, false
	}
	clientID, isString := members["clientId"].(string)
	generation, isNumber := members["generation"].(float64)
	if !isString || !isNumber || generation != math.Trunc(generation) || math.Abs(generation) > maxExactInteger {
		return announcement{}, false
	}
	return announcement{ClientID: clientID, Generation: int64(generation)}, true
}

// updates is one lazily opened subscription to the token-updated channel. A connection that
// subscribes can run nothing else, so it holds its own (go-redis's PubSub).
type updates struct {
	client   redis.UniversalClient
	channel  string
	onUpdate func(announcement)
	// onConnectionLost is called when the subscription's connection failed: announcements made
	// until it is back are lost, so whatever was kept because none said otherwise must be dropped.
	onConnectionLost func()

	mu      sync.Mutex
	started bool
	pubsub  *redis.PubSub
	live    atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

// healthCheckInterval is how long the subscription may stay silent before it is pinged: a
// connection that died without a FIN would otherwise keep the cache alive on no news.
const healthCheckInterval = 15 * time.Second

func newUpdates(client redis.UniversalClient, channel string, onUpdate func(announcement), onConnectionLost func()) *updates {
	ctx, cancel := context.WithCancel(context.Background())
	return &updates{client: client, channel: channel, onUpdate: onUpdate, onConnectionLost: onConnectionLost, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// isLive reports whether the subscription is confirmed and its connection has not failed since:
// only then can the absence of an announcement be trusted.
func (u *updates) isLive() bool { return u.live.Load() }

// start opens the subscription once and returns when Redis has confirmed it. A failure is not
// kept: the next call tries again, so a Reader created while Redis was down works once it is back.
func (u *updates) start(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started {
		return nil
	}
	if u.ctx.Err() != nil {
		return ErrReaderClosed
	}
	pubsub, err := u.subscribe(ctx)
	if err != nil {
		return err
	}
	u.started = true
	u.pubsub = pubsub
	u.live.Store(true)
	go u.run(pubsub)
	return nil
}

// subscribe opens a PubSub and waits for Redis's confirmation.
func (u *updates) subscribe(ctx context.Context) (*redis.PubSub, error) {
	pubsub := u.client.Subscribe(ctx, u.channel)
	if _, err := pubsub.Receive(ctx); err != nil {
		_ = pubsub.Close()
		return nil, err
	}
	return pubsub, nil
}

// run delivers announcements until close. When the connection fails it reports the loss, then
// subscribes again on a new connection, backing off while Redis stays away.
func (u *updates) run(pubsub *redis.PubSub) {
	defer close(u.done)
	backoff := 100 * time.Millisecond
	pinged := false
	for {
		message, err := pubsub.ReceiveTimeout(u.ctx, healthCheckInterval)
		if u.ctx.Err() != nil {
			return
		}
		var netErr net.Error
		if err != nil && errors.As(err, &netErr) && netErr.Timeout() && !pinged {
			pinged = pubsub.Ping(u.ctx) == nil
			if pinged {
				continue
			}
		}
		pinged = false
		if err != nil {
			if u.live.Swap(false) {
				u.onConnectionLost()
			}
			_ = pubsub.Close()
			for {
				if !sleep(u.ctx, backoff) {
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				if pubsub, err = u.subscribe(u.ctx); err == nil {
					break
				}
			}
			u.mu.Lock()
			u.pubsub = pubsub
			u.mu.Unlock()
			if u.ctx.Err() != nil {
				_ = pubsub.Close()
				return
			}
			backoff = 100 * time.Millisecond
			u.live.Store(true)
			continue
		}
		if m, ok := message.(*redis.Message); ok && m.Channel == u.channel {
			if a, ok := parseAnnouncement(m.Payload); ok {
				u.onUpdate(a)
			}
		}
	}
}

// close ends the subscription and waits until its goroutine is gone.
func (u *updates) close() {
	u.mu.Lock()
	u.cancel()
	u.live.Store(false)
	started := u.started
	if u.pubsub != nil {
		// Unblocks a Receive waiting on the connection.
		_ = u.pubsub.Close()
	}
	u.mu.Unlock()
	if started {
		<-u.done
	}
}

// sleep waits for d or until ctx is done; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
