/**
 * The vocabulary of a client registration: what an operator registers, and what the workflow
 * carries. Pure types and constants only: this file is imported by workflow code, and the
 * registration schema (client/registration-schema.ts) derives its rules from these constants.
 */
import type { PolicyOverrides } from './policy.js';

/**
 * Client authentication methods at the token endpoint, by their IANA names.
 * @see RFC 7591 §2 (token_endpoint_auth_method), RFC 6749 §2.3.1 (client password), RFC 7523 §2.2
 *   and OpenID Connect Core §9 (JWT assertions), RFC 8705 §2 (mutual TLS)
 */
export const AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'client_secret_jwt',
  'private_key_jwt',
  'tls_client_auth',
  'self_signed_tls_client_auth',
] as const;

export type AuthMethod = (typeof AUTH_METHODS)[number];

/** The method a registration uses when it names none (RFC 7591 §2's default). */
export const DEFAULT_AUTH_METHOD: AuthMethod = 'client_secret_basic';

/** Methods that authenticate with a JWT assertion (RFC 7523 §2.2, OpenID Connect Core §9). */
export const ASSERTION_AUTH_METHODS = ['client_secret_jwt', 'private_key_jwt'] as const satisfies readonly AuthMethod[];

/** Methods that authenticate with the TLS client certificate (RFC 8705 §2): the mTLS endpoint aliases apply. */
export const MTLS_AUTH_METHODS = ['tls_client_auth', 'self_signed_tls_client_auth'] as const satisfies readonly AuthMethod[];

/**
 * The grants the worker requests tokens with: the client credentials grant (RFC 6749 §4.4), or the
 * JWT-bearer grant (RFC 7523 §2.1), whose assertion comes from `assertionRef` or is signed with
 * `keyRef`; the client still authenticates by its `authMethod`.
 */
export const GRANTS = ['client_credentials', 'jwt-bearer'] as const;

export type Grant = (typeof GRANTS)[number];

/** The grant of a registration that names none, as before `grant` existed. */
export const DEFAULT_GRANT: Grant = 'client_credentials';

/** The `grant_type` each grant sends (RFC 6749 §4.4.2, RFC 7523 §2.1). */
export const GRANT_TYPES: Record<Grant, string> = {
  client_credentials: 'client_credentials',
  'jwt-bearer': 'urn:ietf:params:oauth:grant-type:jwt-bearer',
};

/**
 * The methods a `jwt-bearer` registration authenticates with: those whose credential is not also
 * the grant's (`client_secret_jwt` would make `signingAlg` ambiguous, the mTLS methods' `keyRef` is
 * a TLS key). With `private_key_jwt`, `keyRef` signs the client assertion and, without
 * `assertionRef`, the grant's.
 */
export const JWT_BEARER_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
] as const satisfies readonly AuthMethod[];

/** What a `jwt-bearer` registration without its assertion lacks, in messages. */
export const JWT_BEARER_ASSERTION_NEEDED = 'the jwt-bearer grant needs assertionRef, or keyRef to sign its assertion';

/** The registration fields that hold a reference ({@link CredentialRef}) rather than a value. */
export const REFERENCE_FIELDS = ['secretRef', 'keyRef', 'assertionRef', 'certRef', 'caRef'] as const;

export type ReferenceField = (typeof REFERENCE_FIELDS)[number];

/** What each reference stands for, in messages: `private_key_jwt needs a key reference`. */
export const REFERENCE_MEANING: Record<ReferenceField, string> = {
  secretRef: 'a client secret reference',
  keyRef: 'a key reference',
  assertionRef: 'a client assertion reference',
  certRef: 'a certificate reference',
  caRef: 'a CA certificate reference',
};

/**
 * The credentials each method authenticates with: the references a registration of that method must
 * give, and the only credential references it may give (`caRef` is not a credential: any method may
 * trust a private CA).
 */
export const CREDENTIALS_OF_METHOD: Record<AuthMethod, readonly Exclude<ReferenceField, 'caRef'>[]> = {
  client_secret_basic: ['secretRef'],
  client_secret_post: ['secretRef'],
  client_secret_jwt: ['secretRef'],
  private_key_jwt: ['keyRef'],
  tls_client_auth: ['certRef', 'keyRef'],
  self_signed_tls_client_auth: ['certRef', 'keyRef'],
};

/**
 * Ordered fallbacks of a reference, for the rotation window: `secretRefs: [new, old]` instead of
 * `secretRef`, `keyRefs` instead of `keyRef` (`private_key_jwt` only). The worker uses the one the
 * IAM accepted last time and tries the next only after `invalid_client` (docs/design.md, "Fallback
 * credentials").
 */
export const FALLBACK_FIELDS = { secretRefs: 'secretRef', keyRefs: 'keyRef' } as const satisfies Record<string, ReferenceField>;

export type FallbackField = keyof typeof FALLBACK_FIELDS;

/** The most fallbacks a list may hold: a rotation needs two, a third covers a rotation gone wrong. */
export const MAX_FALLBACKS = 5;

/**
 * The credential references a registration must give: its method's ({@link CREDENTIALS_OF_METHOD}),
 * except that `private_key_jwt` with `assertionRef` sends the assertion a platform minted (a
 * Kubernetes service-account token, a SPIFFE JWT-SVID) instead of signing one with `keyRef`. The
 * `jwt-bearer` grant adds its assertion: `assertionRef`, or else `keyRef` to sign it.
 * @see RFC 7523 §2.1, §2.2
 */
export function credentialFieldsOf(
  registration: Pick<ClientRegistration, 'authMethod' | 'assertionRef' | 'grant'>,
): readonly ReferenceField[] {
  if (registration.grant === 'jwt-bearer') {
    const own = CREDENTIALS_OF_METHOD[registration.authMethod];
    const grantField = registration.assertionRef !== undefined ? 'assertionRef' : 'keyRef';
    return own.includes(grantField) ? own : [...own, grantField];
  }
  if (sendsMintedClientAssertion(registration)) return ['assertionRef'];
  return CREDENTIALS_OF_METHOD[registration.authMethod];
}

/** Whether the client authenticates with the assertion of `assertionRef` (for `jwt-bearer`, that one is the grant's). */
export function sendsMintedClientAssertion(registration: Pick<ClientRegistration, 'authMethod' | 'assertionRef' | 'grant'>): boolean {
  return registration.authMethod === 'private_key_jwt' && registration.assertionRef !== undefined && registration.grant !== 'jwt-bearer';
}

/** Signing algorithms of `client_secret_jwt` assertions: HMAC with the client secret (RFC 7518 §3.2). */
export const CLIENT_SECRET_JWT_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;

/** Signing algorithms of `private_key_jwt` assertions (RFC 7518 §3.3–3.5, RFC 8037 §3.1). */
export const PRIVATE_KEY_JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

export type SigningAlgorithm = (typeof CLIENT_SECRET_JWT_ALGORITHMS)[number] | (typeof PRIVATE_KEY_JWT_ALGORITHMS)[number];

/** The algorithms a method may sign its assertion with; empty for methods that send no assertion. */
export function signingAlgorithmsOf(method: AuthMethod): readonly SigningAlgorithm[] {
  if (method === 'client_secret_jwt') return CLIENT_SECRET_JWT_ALGORITHMS;
  if (method === 'private_key_jwt') return PRIVATE_KEY_JWT_ALGORITHMS;
  return [];
}

/** Whether `method` sends a JWT assertion (see {@link ASSERTION_AUTH_METHODS}). */
export function isAssertionMethod(method: AuthMethod): boolean {
  return (ASSERTION_AUTH_METHODS as readonly AuthMethod[]).includes(method);
}

/** Whether `method` authenticates with the TLS client certificate (see {@link MTLS_AUTH_METHODS}). */
export function isMtlsMethod(method: AuthMethod): boolean {
  return (MTLS_AUTH_METHODS as readonly AuthMethod[]).includes(method);
}

/**
 * A client ID as this project accepts it: 1–200 printable ASCII characters without spaces. It
 * becomes a workflow ID, a Redis key and an HTTP credential, so nothing that could break one.
 * @see RFC 6749 §2.2
 */
export const CLIENT_ID_PATTERN = /^[\x21-\x7e]{1,200}$/;

/** How {@link CLIENT_ID_PATTERN} reads in an error message. */
export const CLIENT_ID_RULE = '1–200 printable ASCII characters without spaces';

/**
 * Where the worker finds a credential (a client secret, a private key, a certificate, a CA):
 * `env:NAME` (an environment variable of the worker) or `file:/path` (a file, e.g. a mounted
 * Kubernetes secret; trailing newlines are ignored). Only the reference travels through Temporal,
 * never what it names, and it is resolved again for every request, so a rewritten file is used from
 * the next request on (docs/design.md, "References").
 */
export type CredentialRef = `env:${string}` | `file:${string}`;

/** How a {@link CredentialRef} reads in messages. */
export const REFERENCE_FORM = 'env:NAME or file:/absolute/path';

/** The variable names an `env:` reference may name (POSIX style); anything else is a typo. */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether `ref` has the form of a {@link CredentialRef}: `env:` and a variable name, or `file:` and an absolute path. */
export function isCredentialRef(ref: string): ref is CredentialRef {
  if (ref.startsWith('env:')) return ENV_NAME_PATTERN.test(ref.slice('env:'.length));
  return ref.startsWith('file:/') && ref.length > 'file:/'.length;
}

/**
 * An assertion the worker has the Kubernetes API mint for a named service account (the
 * TokenRequest API): `serviceaccount:<namespace>/<name>`. Only `assertionRef` takes it; each
 * client can so have a subject of its own, `system:serviceaccount:<namespace>:<name>`, where a
 * pod's projected token has one for all (docs/design.md, "Service-account assertions").
 */
export type ServiceAccountRef = `serviceaccount:${string}`;

/** How a {@link ServiceAccountRef} reads in messages. */
export const SERVICE_ACCOUNT_REF_FORM = 'serviceaccount:<namespace>/<name>';

/** What `assertionRef` holds: a reference to an assertion something else writes, or a service account to mint one for. */
export type AssertionRef = CredentialRef | ServiceAccountRef;

/** A namespace is a DNS-1123 label (Kubernetes' `IsDNS1123Label`: at most 63 characters). */
const DNS1123_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** A service account's name is a DNS-1123 subdomain (Kubernetes' `IsDNS1123Subdomain`: at most 253). */
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * The namespace and name of a {@link ServiceAccountRef}, or a sentence saying what is wrong with it
 * (for the schema's message and the worker's); undefined for a reference of another kind.
 */
export function parseServiceAccountRef(ref: string): { namespace: string; name: string } | { problem: string } | undefined {
  if (!ref.startsWith('serviceaccount:')) return undefined;
  const [namespace, name, ...rest] = ref.slice('serviceaccount:'.length).split('/');
  if (name === undefined || rest.length > 0) return { problem: `must be ${SERVICE_ACCOUNT_REF_FORM}` };
  if (!DNS1123_LABEL.test(namespace!)) {
    return { problem: `the namespace "${namespace}" is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)` };
  }
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return { problem: `the service account "${name}" is not a Kubernetes name (lowercase letters, digits, '-' and '.', at most 253)` };
  }
  return { namespace: namespace!, name };
}

/** Whether `ref` is a well-formed {@link ServiceAccountRef}. */
export function isServiceAccountRef(ref: string): ref is ServiceAccountRef {
  const parsed = parseServiceAccountRef(ref);
  return parsed !== undefined && !('problem' in parsed);
}

/**
 * Form parameters the grants set themselves: `extraParams` may not set them, or it would change
 * the grant or the client's authentication.
 * @see RFC 6749 §4.4.2, §2.3.1, RFC 7523 §2.1, §2.2
 */
export const RESERVED_EXTRA_PARAMS = [
  'grant_type',
  'client_id',
  'client_secret',
  'client_assertion',
  'client_assertion_type',
  'scope',
  'assertion',
] as const;

/**
 * A registration of one OAuth client whose token the worker keeps fresh. It holds references and
 * public settings only, never a secret, a key or a token (docs/design.md, "No secret in Temporal").
 *
 * Registrations made before a field existed lack it: every new field is optional, and its absence
 * means what the registration did before (docs/design.md, "Registrations that predate a field").
 */
export interface ClientRegistration {
  /** The OAuth client ID (RFC 6749 §2.2), see {@link CLIENT_ID_PATTERN}. One workflow per client ID. */
  clientId: string;
  /** The IAM's token endpoint (RFC 6749 §3.2). Exactly one of `tokenUrl` and `issuer`. */
  tokenUrl?: string;
  /**
   * The IAM's issuer identifier: the worker reads its discovery document and uses its
   * `token_endpoint` (OpenID Connect Discovery 1.0 §4, RFC 8414 §3). Exactly one of `tokenUrl` and
   * `issuer`.
   */
  issuer?: string;
  /** @default 'client_secret_basic' */
  authMethod: AuthMethod;
  /** The grant requested ({@link GRANTS}). @default 'client_credentials' */
  grant?: Grant;
  /** The client secret, for `client_secret_basic`, `client_secret_post` and `client_secret_jwt`. */
  secretRef?: CredentialRef;
  /**
   * The private key (PEM or JWK): signs the `private_key_jwt` assertion, or is the TLS client key
   * of the mTLS methods.
   */
  keyRef?: CredentialRef;
  /**
   * A client assertion (a JWT) that something else mints and rewrites, e.g. a projected Kubernetes
   * service-account token: `private_key_jwt` sends it as it is instead of signing one with `keyRef`
   * (RFC 7523 §2.2); with `grant: 'jwt-bearer'` it is the grant's assertion (RFC 7523 §2.1). It is
   * read for every request and checked for its `exp` before it is sent. `serviceaccount:<namespace>/<name>`
   * has the worker mint it through the Kubernetes TokenRequest API ({@link ServiceAccountRef}).
   */
  assertionRef?: AssertionRef;
  /** Instead of `secretRef`: secrets to try in order during a rotation ({@link FALLBACK_FIELDS}). */
  secretRefs?: CredentialRef[];
  /** Instead of `keyRef` (`private_key_jwt`): keys to try in order during a rotation ({@link FALLBACK_FIELDS}). */
  keyRefs?: CredentialRef[];
  /** The client certificate (PEM) of `tls_client_auth` and `self_signed_tls_client_auth`. */
  certRef?: CredentialRef;
  /** CA certificates (PEM) trusted for the IAM, in addition to the public store and `NODE_EXTRA_CA_CERTS`. */
  caRef?: CredentialRef;
  /** The assertion's `kid` header. @default the JWK's `kid`, else its RFC 7638 thumbprint */
  keyId?: string;
  /** The assertion's signing algorithm. @default HS256 for client_secret_jwt; per key type for private_key_jwt */
  signingAlg?: SigningAlgorithm;
  /**
   * The assertion's `aud` claim, when the IAM wants another than the token endpoint URL (e.g. the
   * issuer): of the assertions the worker signs, and of those it has minted for a service account.
   */
  assertionAudience?: string;
  /** The `sub` of the `jwt-bearer` assertion the worker signs (its `iss` is the client ID). @default the client ID */
  assertionSubject?: string;
  /** The HTTP proxy for this client's requests to the IAM, instead of `HTTPS_PROXY` / `HTTP_PROXY`. No credentials in it. */
  proxyUrl?: string;
  /** Space-delimited scope to request (RFC 6749 §3.3). */
  scope?: string;
  /** Extra form parameters for the token request, e.g. `audience` or `resource` (RFC 8707). */
  extraParams?: Record<string, string>;
  /** Overrides of the default refresh and backoff policy. */
  policy?: PolicyOverrides;
}

/**
 * What `reconfigure` may change: everything but the client ID. `null` removes a field (e.g.
 * `tokenUrl: null` with `issuer` set, or `secretRef: null` when moving to `private_key_jwt`); an
 * empty `scope`, `extraParams` or `policy` sets it empty, as before `null` existed.
 */
export type RegistrationChanges = { [Field in Exclude<keyof ClientRegistration, 'clientId'>]?: ClientRegistration[Field] | null };

/**
 * The registration after `reconfigure(changes)`: fields merged over it, `null` fields removed. One
 * definition for the workflow and for the admin API, which replays the same changes from a history.
 */
export function applyRegistrationChanges(registration: ClientRegistration, changes: RegistrationChanges): ClientRegistration {
  const merged: Record<string, unknown> = { ...registration, ...changes, clientId: registration.clientId };
  for (const [field, value] of Object.entries(merged)) if (value === null) delete merged[field];
  return merged as unknown as ClientRegistration;
}

/**
 * The URL that names the registration's IAM without network access: the token URL, or the issuer
 * when it is registered by issuer. The workflow shows its host (search attribute
 * `TokenEndpointHost`) and cannot read a discovery document.
 */
export function iamUrlOf(registration: Pick<ClientRegistration, 'tokenUrl' | 'issuer'>): string {
  return registration.tokenUrl ?? registration.issuer ?? '';
}
