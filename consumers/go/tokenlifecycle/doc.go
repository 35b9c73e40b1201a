// Package tokenlifecycle reads the OAuth 2.0 tokens that token-lifecycle-worker keeps fresh in
// Redis, and asks the worker for a new one when an API refuses a token. It follows the Redis
// contract of docs/redis-contract.md exactly as the project's Node library does; the shared
// vectors in test/contract/vectors.json hold both to it.
//
//   - [Reader] reads a client's token (never an expired one), optionally through an in-process
//     cache dropped when the worker announces a newer generation on <prefix>token-updated;
//     [Reader.RequestRefresh] adds an entry to <prefix>refresh-requests; [Reader.WaitForToken]
//     waits for a newer generation.
//   - [Transport] is an [net/http.RoundTripper] that sets Authorization and, on a 401 with a
//     Bearer error="invalid_token" challenge (RFC 6750 §3.1), asks for one refresh, waits for the
//     new token and retries once.
//   - [ParseWWWAuthenticate], [FindBearerChallenge] and [IsInvalidTokenChallenge] read
//     WWW-Authenticate headers (RFC 9110 §11.6.1) for other HTTP clients.
//
// Errors match the sentinels ([ErrTokenUnavailable], [ErrRedisUnavailable], …) with errors.Is,
// and carry their details as typed errors for errors.As; [CodeOf] gives the stable code string
// shared with the other languages' libraries.
package tokenlifecycle
