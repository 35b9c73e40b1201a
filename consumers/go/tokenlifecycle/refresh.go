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
	// AccessToken is the token the entry's origin proof is made with: the refused one (whose
	// fingerprint is RejectedFingerprint), else the current one. It never leaves the process:
	// only the proof (an HMAC keyed with it) is sent. Empty: the token Redis holds for the
	// client is read and used.
	AccessToken string
	// TraceParent is the W3C Trace Context traceparent of the caller's span
	// ("00-<trace-id>-<parent-id>-<flags>"), for an application that propagates trace context by
	// hand: the worker's spans of the forced refresh join that trace. A malformed one is not sent
	// (docs/redis-contract.md: the worker would drop it). Empty: the Reader's
	// [Options.TraceParent] is asked with ctx; without one the entry carries none.
	TraceParent string
}

// RequestRefresh asks the worker to replace the token of clientID by adding an entry to the
// stream <prefix>refresh-requests (XADD … MAXLEN ~ [Options.RefreshRequestsMaxLen]) with the
// fields clientId, then rejectedFingerprint and reason when given, then traceparent when there
// is a valid one ([RefreshRequest.TraceParent], else [Options.TraceParent] asked with ctx; it is
// outside the proof), then proof: the origin proof made with [RefreshRequest.AccessToken] or the
// token Redis holds for the client (the worker refuses entries without a valid one;
// docs/redis-contract.md). The worker turns it into a
// forceRefresh signal, coalesced and held to the client's minimum interval. It returns the entry
// ID once Redis stored it; it does not wait for the new token: see [Reader.WaitForToken].
//
// Errors: [ErrRefreshRequestFailed] ([*RefreshRequestError]) when Redis refused the entry or,
// without [RefreshRequest.AccessToken], when Redis holds no token of the client to prove the
// request with or could not be read.
func (r *Reader) RequestRefresh(ctx context.Context, clientID string, request RefreshRequest) (entryID string, err error) {
	if r.isClosed() {
		return "", ErrReaderClosed
	}
	stream := RefreshRequestsStream(r.prefix)
	traceParent := request.TraceParent
	if traceParent == "" && r.trace != nil {
		traceParent = r.trace(ctx)
	}
	accessToken := request.AccessToken
	if accessToken == "" {
		current, found, err := r.read(ctx, clientID)
		switch {
		case err != nil && ctx.Err() != nil:
			return "", ctx.Err()
		case err != nil:
			return "", &RefreshRequestError{ClientID: clientID, Stream: stream, Problem: "reading its token to prove the request failed", Err: err}
		case !found:
			return "", &RefreshRequestError{ClientID: clientID, Stream: stream, Problem: "Redis holds no token of it to prove the request with (the worker refuses unproven requests)"}
		}
		accessToken = current.AccessToken
	}
	fields := []any{"clientId", clientID}
	if request.RejectedFingerprint != "" {
		fields = append(fields, "rejectedFingerprint", request.RejectedFingerprint)
	}
	if request.Reason != "" {
		fields = append(fields, "reason", request.Reason)
	}
	// Only a valid one is sent: the worker would drop any other (W3C: ignore it, start a new trace).
	if validTraceParent(traceParent) {
		fields = append(fields, "traceparent", traceParent)
	}
	fields = append(fields, "proof", refreshRequestProof(accessToken, clientID, request.RejectedFingerprint))
	entryID, err = r.redis.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: r.maxLen, Approx: true, ID: "*", Values: fields}).Result()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &RefreshRequestError{ClientID: clientID, Stream: stream, Err: err}
	}
	return entryID, nil
}
