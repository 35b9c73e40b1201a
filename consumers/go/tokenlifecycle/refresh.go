package tokenlifecycle

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// RefreshRequest is what a service says when it asks the worker for a new token.
type RefreshRequest struct {
	// RejectedFingerprint names the token that was refused (its Fingerprint). When the worker has
	// already replaced that token the request is ignored, so many services reporting the same
	// refusal cause one refresh. Empty: the current token is replaced.
	RejectedFingerprint string
	// Reason is free text for operators, shown in the Temporal UI, e.g.
	// "401 invalid_token from orders-api". Never a token.
	Reason string
}

// RequestRefresh asks the worker to replace the token of clientID by adding an entry to the
// stream <prefix>refresh-requests (XADD … MAXLEN ~ [Options.RefreshRequestsMaxLen]) with the
// fields clientId, then rejectedFingerprint and reason when given. The worker turns it into a
// forceRefresh signal, coalesced and held to the client's minimum interval. It returns the entry
// ID once Redis stored it; it does not wait for the new token: see [Reader.WaitForToken].
//
// Errors: [ErrRefreshRequestFailed] ([*RefreshRequestError]) when Redis refused the entry.
func (r *Reader) RequestRefresh(ctx context.Context, clientID string, request RefreshRequest) (entryID string, err error) {
	if r.isClosed() {
		return "", ErrReaderClosed
	}
	stream := RefreshRequestsStream(r.prefix)
	fields := []any{"clientId", clientID}
	if request.RejectedFingerprint != "" {
		fields = append(fields, "rejectedFingerprint", request.RejectedFingerprint)
	}
	if request.Reason != "" {
		fields = append(fields, "reason", request.Reason)
	}
	entryID, err = r.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: r.maxLen, Approx: true, ID: "*", Values: fields}).Result()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &RefreshRequestError{ClientID: clientID, Stream: stream, Err: err}
	}
	return entryID, nil
}
