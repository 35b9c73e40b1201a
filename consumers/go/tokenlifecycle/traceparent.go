package tokenlifecycle

import (
	"context"
	"regexp"
	"strings"
)

// TraceParentFunc returns the W3C traceparent header value of the span active in ctx, or "" when
// there is none. [Options.TraceParent] takes one; the module
// github.com/token-lifecycle-worker/token-lifecycle-worker/consumers/go/tokenlifecycleotel
// supplies it from OpenTelemetry, so that this package needs no OpenTelemetry itself.
type TraceParentFunc func(ctx context.Context) string

// traceParentPattern is a traceparent of W3C Trace Context Level 1, version 00 (§3.2.2):
// "00-<trace-id: 32 lower-case hex>-<parent-id: 16 lower-case hex>-<trace-flags: 2 lower-case hex>".
// A later version may append fields; the contract knows only 00 (docs/redis-contract.md).
var traceParentPattern = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// validTraceParent reports whether value is a traceparent a refresh request may carry, the
// contract's rule (test/contract/vectors.json, traceparents): version 00, lower-case hex, neither
// ID all zeros (W3C Trace Context §3.2.2.3, §3.2.2.4).
func validTraceParent(value string) bool {
	return traceParentPattern.MatchString(value) &&
		value[3:35] != strings.Repeat("0", 32) &&
		value[36:52] != strings.Repeat("0", 16)
}
