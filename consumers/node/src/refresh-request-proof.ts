/**
 * The origin proof of a refresh-requests stream entry (docs/design.md, "The forced-refresh path";
 * docs/redis-contract.md, "The refresh request on `<prefix>refresh-requests`"). Anyone allowed to
 * add entries to the stream could name any client; the worker honours an entry only when it
 * carries a proof that its author can read the token it names:
 *
 *   proof = base64url(HMAC-SHA256(key = access token, message)), without padding
 *   message = "token-lifecycle refresh-request v1\n" + clientId + "\n" + (rejectedFingerprint or "")
 *
 * The key is the token the requester holds: the refused one (the one `rejectedFingerprint`
 * names), or the current one when the entry names none. A fingerprint is no proof on its own: it
 * is public (every `token-updated` message carries it). The token never leaves the requester; the
 * worker recomputes the MAC from the token it stored (RFC 2104; the HMAC key may be any length).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The first line of every proven message: names the purpose and version, so the MAC is useful for nothing else. */
export const REFRESH_REQUEST_PROOF_CONTEXT = 'token-lifecycle refresh-request v1';

/** The exact bytes (UTF-8) the proof is computed over. */
export function refreshRequestProofMessage(clientId: string, rejectedFingerprint: string | undefined): string {
  return `${REFRESH_REQUEST_PROOF_CONTEXT}\n${clientId}\n${rejectedFingerprint ?? ''}`;
}

/**
 * The proof for an entry about `clientId` naming `rejectedFingerprint` (or none), made with
 * `accessToken`: the token the requester was refused with, or the current one. Never log it.
 */
export function refreshRequestProof(accessToken: string, clientId: string, rejectedFingerprint: string | undefined): string {
  return createHmac('sha256', accessToken).update(refreshRequestProofMessage(clientId, rejectedFingerprint), 'utf8').digest('base64url');
}

/**
 * Whether `proof` (as read from the entry) was made with `accessToken` for this `clientId` and
 * `rejectedFingerprint`. Compared in constant time, so the time taken tells nothing of how much
 * of a forged proof was right.
 */
export function isValidRefreshRequestProof(
  proof: string | undefined,
  accessToken: string,
  clientId: string,
  rejectedFingerprint: string | undefined,
): boolean {
  if (proof === undefined || proof === '') return false;
  const expected = Buffer.from(refreshRequestProof(accessToken, clientId, rejectedFingerprint), 'utf8');
  const given = Buffer.from(proof, 'utf8');
  // timingSafeEqual needs equal lengths; every proof has the same length, so this leaks nothing.
  return given.length === expected.length && timingSafeEqual(given, expected);
}
