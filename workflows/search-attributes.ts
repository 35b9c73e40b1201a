/**
 * The search attributes that make token workflows findable in the Temporal UI, e.g.
 * `TokenState="credentials_rejected"`. The worker registers them on its namespace when missing.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const TokenState = defineSearchAttributeKey('TokenState', SearchAttributeType.KEYWORD);
export const TokenClientId = defineSearchAttributeKey('TokenClientId', SearchAttributeType.KEYWORD);
export const TokenEndpointHost = defineSearchAttributeKey('TokenEndpointHost', SearchAttributeType.KEYWORD);
export const TokenExpiresAt = defineSearchAttributeKey('TokenExpiresAt', SearchAttributeType.DATETIME);
export const TokenNextRefreshAt = defineSearchAttributeKey('TokenNextRefreshAt', SearchAttributeType.DATETIME);
export const TokenFailures = defineSearchAttributeKey('TokenFailures', SearchAttributeType.INT);

/** Every key with its type, for registering them on a namespace or a dev server. */
export const TOKEN_SEARCH_ATTRIBUTES = [
  TokenState,
  TokenClientId,
  TokenEndpointHost,
  TokenExpiresAt,
  TokenNextRefreshAt,
  TokenFailures,
] as const;

/**
 * The host (and port) of a token endpoint URL, without user info. Written by hand because
 * the workflow sandbox is not guaranteed to provide `URL`.
 */
export function endpointHost(tokenUrl: string): string {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(tokenUrl)?.[1] ?? '';
  return authority.slice(authority.lastIndexOf('@') + 1).toLowerCase();
}
