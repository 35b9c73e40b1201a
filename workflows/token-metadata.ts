/**
 * What the IAM activity tells the workflow about a token it stored: metadata only, never the
 * token (docs/design.md, "No secret in Temporal"). Pure types and constants: imported by workflow
 * code.
 */

/**
 * A token's fingerprint: the first 16 hex digits of SHA-256 of the access token. It names a token
 * in refresh requests, logs and the Temporal UI without revealing it.
 */
export const FINGERPRINT_PATTERN = /^[0-9a-f]{16}$/;

/**
 * What the IAM activity returns: metadata about the token it wrote to Redis. Never the token.
 * Times are Unix milliseconds.
 */
export interface TokenMetadata {
  clientId: string;
  generation: number;
  /** See {@link FINGERPRINT_PATTERN}. */
  fingerprint: string;
  tokenType: string;
  scope: string;
  /**
   * When the token request left the worker (after the endpoint breaker and the rate window):
   * renewals, the token's expiry and the minimum interval between forced refreshes count from here.
   */
  requestStartedAt: number;
  obtainedAt: number;
  expiresAt: number;
  /** `expires_in` as used (the IAM's value, or the default when it sent none). */
  expiresInSeconds: number;
  /**
   * False when Redis already held this or a newer generation (a retried activity): the metadata
   * then describes what Redis holds.
   */
  written: boolean;
  /**
   * Which of the registration's fallback credentials the IAM accepted (`secretRefs[1] file:/…`):
   * a reference, never what it names. Absent without `secretRefs` or `keyRefs`.
   */
  credential?: string;
}
