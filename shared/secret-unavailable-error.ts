/**
 * The error of a credential reference that cannot be used (docs/design.md, "References"). Shared:
 * the worker's activities, `tokenctl` and the Redis TLS settings all resolve references.
 */
import type { FailureKind } from '../workflows/failures.js';

/**
 * A credential the request needs (client secret, private key, certificate, CA) could not be
 * resolved from its `env:NAME` or `file:/path` reference, or what it names is not usable (not a
 * PEM key, a key that cannot sign the algorithm, …). The message names the registration field, the
 * reference and what is wrong, never the value.
 */
export class SecretUnavailableError extends Error {
  override name = 'SecretUnavailableError';
  readonly kind = 'secret_unavailable' satisfies FailureKind;

  /** Same as {@link SecretUnavailableError.kind}, under the name Node.js errors use for codes. */
  get code(): 'secret_unavailable' {
    return this.kind;
  }
}
