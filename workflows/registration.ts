/**
 * The vocabulary of a client registration: what an operator registers, and what the workflow
 * carries. Pure types and constants only: this file is imported by workflow code, and the
 * registration schema (client/registration-schema.ts) derives its rules from these constants.
 */
import type { PolicyOverrides } from './policy.js';

/**
 * Client authentication methods, by their IANA names.
 * @see RFC 6749 §2.3.1 (client password), RFC 7591 §2 (token_endpoint_auth_method)
 */
export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post'] as const;

export type AuthMethod = (typeof AUTH_METHODS)[number];

/**
 * A client ID as this project accepts it: 1–200 printable ASCII characters without spaces. It
 * becomes a workflow ID, a Redis key and an HTTP credential, so nothing that could break one.
 * @see RFC 6749 §2.2
 */
export const CLIENT_ID_PATTERN = /^[\x21-\x7e]{1,200}$/;

/** How {@link CLIENT_ID_PATTERN} reads in an error message. */
export const CLIENT_ID_RULE = '1–200 printable ASCII characters without spaces';

/**
 * Where the worker finds a client secret: `env:NAME` (an environment variable of the worker) or
 * `file:/path` (a file, e.g. a mounted Kubernetes secret; trailing newlines are ignored).
 * Only the reference travels through Temporal, never the secret.
 */
export type SecretRef = `env:${string}` | `file:${string}`;

/** The variable names an `env:` reference may name (POSIX style); anything else is a typo. */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether `ref` has the form of a {@link SecretRef}: `env:` and a variable name, or `file:` and an absolute path. */
export function isSecretRef(ref: string): ref is SecretRef {
  if (ref.startsWith('env:')) return ENV_NAME_PATTERN.test(ref.slice('env:'.length));
  return ref.startsWith('file:/') && ref.length > 'file:/'.length;
}

/**
 * Form parameters the client credentials grant sets itself: `extraParams` may not set them, or it
 * would change the grant or the client's authentication.
 * @see RFC 6749 §4.4.2, §2.3.1
 */
export const RESERVED_EXTRA_PARAMS = ['grant_type', 'client_id', 'client_secret', 'scope'] as const;

/** A registration of one OAuth client whose token the worker keeps fresh. */
export interface ClientRegistration {
  /** The OAuth client ID (RFC 6749 §2.2), see {@link CLIENT_ID_PATTERN}. One workflow per client ID. */
  clientId: string;
  /** The IAM's token endpoint (RFC 6749 §3.2). */
  tokenUrl: string;
  /** @default 'client_secret_basic' */
  authMethod: AuthMethod;
  /** Reference to the client secret, resolved on the worker. */
  secretRef: SecretRef;
  /** Space-delimited scope to request (RFC 6749 §3.3). */
  scope?: string;
  /** Extra form parameters for the token request, e.g. `audience` or `resource` (RFC 8707). */
  extraParams?: Record<string, string>;
  /** Overrides of the default refresh and backoff policy. */
  policy?: PolicyOverrides;
}
