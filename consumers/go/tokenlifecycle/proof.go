package tokenlifecycle

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// refreshRequestProofContext is the first line of every proven message: it names the purpose and
// version, so the MAC is useful for nothing else (consumers/node/src/refresh-request-proof.ts).
const refreshRequestProofContext = "token-lifecycle refresh-request v1"

// refreshRequestProofMessage is the exact bytes the proof is computed over:
// "token-lifecycle refresh-request v1\n<clientId>\n<rejectedFingerprint, or nothing>".
func refreshRequestProofMessage(clientID, rejectedFingerprint string) string {
	return refreshRequestProofContext + "\n" + clientID + "\n" + rejectedFingerprint
}

// refreshRequestProof is the origin proof of a refresh-requests entry (docs/redis-contract.md,
// "The refresh request on <prefix>refresh-requests"): base64url without padding of
// HMAC-SHA256 (RFC 2104) keyed with accessToken, the token the requester holds. It shows the
// worker that the entry's author can read the client's token; a fingerprint alone is public.
// The token never leaves the process. Never log the proof.
func refreshRequestProof(accessToken, clientID, rejectedFingerprint string) string {
	mac := hmac.New(sha256.New, []byte(accessToken))
	mac.Write([]byte(refreshRequestProofMessage(clientID, rejectedFingerprint)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
