/** The options of `tokenctl register` and `reconfigure`, as registration fields. */
import {
  FALLBACK_FIELDS,
  REFERENCE_FIELDS,
  type AuthMethod,
  type ClientRegistration,
  type FallbackField,
} from '../../workflows/registration.js';

const FALLBACK_LIST_FIELDS = Object.keys(FALLBACK_FIELDS) as FallbackField[];

/** What commander parsed; validation is the registration schema's, so every mistake is listed at once. */
export interface RegistrationOptions {
  tokenUrl?: string;
  issuer?: string;
  auth?: AuthMethod;
  secret?: string;
  key?: string;
  assertion?: string;
  cert?: string;
  ca?: string;
  keyId?: string;
  signingAlg?: string;
  assertionAudience?: string;
  proxy?: string;
  scope?: string;
  param?: Record<string, string>;
  policy?: unknown;
}

/** The registration fields the options set, each flag to its field (cli/failure-message.ts maps them back). */
export function fieldsOfOptions(options: RegistrationOptions): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    tokenUrl: options.tokenUrl,
    issuer: options.issuer,
    authMethod: options.auth,
    secretRef: options.secret,
    keyRef: options.key,
    assertionRef: options.assertion,
    certRef: options.cert,
    caRef: options.ca,
    keyId: options.keyId,
    signingAlg: options.signingAlg,
    assertionAudience: options.assertionAudience,
    proxyUrl: options.proxy,
    scope: options.scope,
    extraParams: options.param,
    policy: options.policy,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** How a registration reads in tokenctl's output: where tokens come from and how the client authenticates. */
export function describeRegistration(registration: ClientRegistration): string {
  const endpoint = registration.tokenUrl ?? `the token endpoint of ${registration.issuer}`;
  const refs = [...REFERENCE_FIELDS, ...FALLBACK_LIST_FIELDS]
    .filter((field) => registration[field] !== undefined)
    .map((field) => `${field} ${String(registration[field])}`);
  return `tokens from ${endpoint} (${registration.authMethod}), ${refs.join(', ')}`;
}
