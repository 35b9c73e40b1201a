/**
 * Access tokens: a type that cannot be printed by accident, with the fingerprint that stands for
 * the token everywhere outside Redis (Temporal, logs, refresh requests).
 */
import { createHash } from 'node:crypto';
import { Redacted } from '../shared/redacted.js';

/**
 * An OAuth 2.0 access token (RFC 6749 §1.4), here always a Bearer token (RFC 6750). Printing,
 * logging or serializing it yields `[redacted]`; only {@link Redacted.reveal} gives the value.
 *
 * @see RFC 6749 §1.4
 * @see RFC 6750 §1.2
 */
export class AccessToken extends Redacted {
  /**
   * First 16 hex digits (lowercase) of the SHA-256 of the token: names a token in Temporal, logs
   * and refresh requests without revealing it (docs/design.md, "Redis layout").
   */
  fingerprint(): string {
    return tokenFingerprint(this.reveal());
  }
}

/**
 * The fingerprint of a token given as a string, for code that reads tokens back from Redis.
 * Same value as {@link AccessToken.fingerprint}.
 */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 16);
}
