/**
 * Ordered fallback credentials for a rotation window (`secretRefs`, `keyRefs`; docs/design.md,
 * "Fallback credentials"): which credential a request tries first, and when it may try the next.
 */
import { FALLBACK_FIELDS, type ClientRegistration, type FallbackField } from '../workflows/registration.js';
import { TokenEndpointError } from './errors.js';
import type { CredentialFields } from './request-credentials.js';

/** One credential a request may authenticate with: the registration with a single reference in place of the list. */
export interface CredentialCandidate {
  registration: CredentialFields;
  /**
   * Which one it is, for status and logs: `secretRefs[1] file:/run/secrets/old`. A reference, never
   * what it names. Undefined for a registration without a list.
   */
  label?: string;
}

/**
 * The credentials of `registration` in its order: one per entry of `secretRefs` or `keyRefs`, or
 * the registration itself when it has no list.
 */
export function credentialCandidates(registration: ClientRegistration): CredentialCandidate[] {
  for (const [list, single] of Object.entries(FALLBACK_FIELDS) as [FallbackField, (typeof FALLBACK_FIELDS)[FallbackField]][]) {
    const refs = registration[list];
    if (refs === undefined) continue;
    return refs.map((ref, index) => ({
      registration: { ...withoutLists(registration), [single]: ref },
      label: `${list}[${index}] ${ref}`,
    }));
  }
  return [{ registration: withoutLists(registration) }];
}

/**
 * `candidates` with the one the IAM accepted last time first (`accepted` is its index, if any), the
 * others after it in their own order.
 */
export function acceptedFirst<T>(candidates: readonly T[], accepted: number | undefined): T[] {
  if (accepted === undefined || accepted <= 0 || accepted >= candidates.length) return [...candidates];
  return [candidates[accepted]!, ...candidates.filter((_, index) => index !== accepted)];
}

/**
 * Whether a failed request may go on to the next fallback: only when the IAM said the client
 * authentication failed, an OAuth `invalid_client` (RFC 6749 §5.2). Any other refusal (a scope, a
 * grant) would be refused with every credential, and any other failure says nothing about this one.
 */
export function mayTryNextCredential(error: unknown): boolean {
  return error instanceof TokenEndpointError && error.kind === 'credentials_rejected' && error.details.oauthError === 'invalid_client';
}

function withoutLists(registration: ClientRegistration): ClientRegistration {
  const { secretRefs: _secrets, keyRefs: _keys, ...rest } = registration;
  return rest;
}
