/**
 * Validation of client registrations at the edge (tokenctl, the admin API), before anything reaches
 * Temporal. Every problem is reported at once with its path, e.g. `clients[2].secretRef: …`.
 */
import { z } from 'zod';
import { RETRYABLE_FAILURE_KINDS, type RetryableFailureKind } from '../workflows/failures.js';
import { DEFAULT_POLICY, policyProblems, resolvePolicy, type RefreshPolicy } from '../workflows/policy.js';
import {
  AUTH_METHODS,
  CLIENT_ID_PATTERN,
  CLIENT_ID_RULE,
  CLIENT_SECRET_JWT_ALGORITHMS,
  CREDENTIALS_OF_METHOD,
  credentialFieldsOf,
  FALLBACK_FIELDS,
  GRANTS,
  JWT_BEARER_ASSERTION_NEEDED,
  JWT_BEARER_AUTH_METHODS,
  MAX_FALLBACKS,
  DEFAULT_AUTH_METHOD,
  isAssertionMethod,
  isCredentialRef,
  isServiceAccountRef,
  parseServiceAccountRef,
  PRIVATE_KEY_JWT_ALGORITHMS,
  REFERENCE_FIELDS,
  REFERENCE_FORM,
  REFERENCE_MEANING,
  RESERVED_EXTRA_PARAMS,
  SERVICE_ACCOUNT_REF_FORM,
  sendsMintedClientAssertion,
  signingAlgorithmsOf,
  type AssertionRef,
  type AuthMethod,
  type ClientRegistration,
  type FallbackField,
} from '../workflows/registration.js';

/** A field's error message, or `is required` when the field is absent. */
function requiredOr(message: string): (issue: { input: unknown }) => string {
  return (issue) => (issue.input === undefined ? 'is required' : message);
}

const backoffRule = z.object({ baseMs: z.number().positive(), capMs: z.number().positive() }).partial().strict();

/** Every field of the policy but `backoff`, typed as its default: a field the policy gains is accepted here too. */
const policyFields = Object.fromEntries(
  Object.entries(DEFAULT_POLICY)
    .filter(([field]) => field !== 'backoff')
    .map(([field, value]) => [field, typeof value === 'boolean' ? z.boolean() : z.number()]),
) as { [Field in Exclude<keyof RefreshPolicy, 'backoff'>]: RefreshPolicy[Field] extends boolean ? z.ZodBoolean : z.ZodNumber };

export const policySchema = z
  .object({
    ...policyFields,
    backoff: z
      .object(
        Object.fromEntries(RETRYABLE_FAILURE_KINDS.map((kind) => [kind, backoffRule])) as Record<RetryableFailureKind, typeof backoffRule>,
      )
      .partial()
      .strict(),
  })
  .partial()
  .strict()
  .superRefine((policy, ctx) => {
    for (const message of policyProblems(resolvePolicy(policy))) ctx.addIssue({ code: 'custom', message });
  });

/**
 * The message for a value that is not a `CredentialRef`: a `serviceaccount:` one belongs in
 * `assertionRef`, anything else may be the secret itself (not echoed).
 */
const notAReference =
  (what: string) =>
  (issue: { input: unknown }): string =>
    typeof issue.input === 'string' && issue.input.startsWith('serviceaccount:')
      ? `${SERVICE_ACCOUNT_REF_FORM} names an assertion to mint: only assertionRef takes it`
      : `must be ${REFERENCE_FORM} (${what} itself never goes here)`;

const reference = z
  .string({ error: requiredOr(`must be a string: ${REFERENCE_FORM}`) })
  .refine(isCredentialRef, { error: notAReference('the secret, key or certificate') })
  .optional();

/** `assertionRef`: a reference to an assertion something else writes, or a service account to mint one for. */
const assertionReference = z
  .string({ error: requiredOr(`must be a string: ${REFERENCE_FORM} or ${SERVICE_ACCOUNT_REF_FORM}`) })
  .refine((ref): ref is AssertionRef => isServiceAccountRef(ref) || isCredentialRef(ref), {
    error: (issue) => {
      const account = typeof issue.input === 'string' ? parseServiceAccountRef(issue.input) : undefined;
      return account !== undefined && 'problem' in account
        ? `${String(issue.input)}: ${account.problem}`
        : `must be ${REFERENCE_FORM} or ${SERVICE_ACCOUNT_REF_FORM} (the assertion itself never goes here)`;
    },
  })
  .optional();

const referenceList = z
  .array(
    z.string({ error: `must be a string: ${REFERENCE_FORM}` }).refine(isCredentialRef, { error: notAReference('the secret or key') }),
    { error: `must be a list of references: ${REFERENCE_FORM}` },
  )
  .min(1, 'must name at least one reference')
  .max(MAX_FALLBACKS, `must name at most ${MAX_FALLBACKS} references`)
  .refine((refs) => new Set(refs).size === refs.length, 'must not name a reference twice')
  .optional();

/** An http(s) URL without user info: got would send it as credentials of its own. */
const httpUrl = (what: string, withCredentials = 'must not contain credentials') =>
  z
    .url({ protocol: /^https?$/, error: requiredOr(`must be an http(s) URL${what}`) })
    .refine((url) => !/\/\/[^/]*@/.test(url), withCredentials);

/**
 * Each field on its own. The rules between fields (which method needs which reference) are
 * {@link registrationSchema}'s; a clients file checks its entries and defaults field by field first.
 */
export const registrationFields = z
  .object({
    clientId: z.string({ error: requiredOr('must be a string') }).regex(CLIENT_ID_PATTERN, `must be ${CLIENT_ID_RULE}`),
    tokenUrl: httpUrl('').optional(),
    issuer: httpUrl(', the identifier its discovery document names')
      .refine((url) => !/[?#]/.test(url), 'must have no query or fragment (OpenID Connect Discovery 1.0 §2)')
      .optional(),
    authMethod: z.enum(AUTH_METHODS, { error: `must be one of ${AUTH_METHODS.join(', ')}` }).default(DEFAULT_AUTH_METHOD),
    grant: z.enum(GRANTS, { error: `must be one of ${GRANTS.join(', ')}` }).optional(),
    secretRef: reference,
    keyRef: reference,
    assertionRef: assertionReference,
    secretRefs: referenceList,
    keyRefs: referenceList,
    certRef: reference,
    caRef: reference,
    keyId: z
      .string()
      .regex(/^[\x21-\x7e]{1,200}$/, 'must be 1–200 printable ASCII characters without spaces')
      .optional(),
    signingAlg: z
      .enum([...CLIENT_SECRET_JWT_ALGORITHMS, ...PRIVATE_KEY_JWT_ALGORITHMS], {
        error: `must be one of ${[...CLIENT_SECRET_JWT_ALGORITHMS, ...PRIVATE_KEY_JWT_ALGORITHMS].join(', ')}`,
      })
      .optional(),
    assertionAudience: z.string().min(1, 'must not be empty').optional(),
    assertionSubject: z.string().min(1, 'must not be empty').optional(),
    proxyUrl: httpUrl(
      ' (http://host:port)',
      'must not contain credentials: give an authenticated proxy to the worker as HTTPS_PROXY',
    ).optional(),
    scope: z.string().optional(),
    extraParams: z
      .record(z.string(), z.string())
      .refine((params) => !RESERVED_EXTRA_PARAMS.some((k) => k in params), `must not set ${RESERVED_EXTRA_PARAMS.join(', ')}`)
      .optional(),
    policy: policySchema.optional(),
  })
  .strict();

type RegistrationFields = z.infer<typeof registrationFields>;

/**
 * The rules between fields, each problem at the field to fix: exactly one of `tokenUrl` and
 * `issuer`; the references the method needs (workflows/registration.ts, `credentialFieldsOf`),
 * and none it does not use (a stray `secretRef` next to `private_key_jwt` is a mistake to point
 * out, not to ignore); the assertion settings only with an assertion method.
 */
export function crossFieldProblems(registration: RegistrationFields): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  const method = registration.authMethod;
  if (registration.tokenUrl === undefined && registration.issuer === undefined) {
    problems.push({ path: 'tokenUrl', message: 'is required, or issuer instead (one of the two)' });
  }
  if (registration.tokenUrl !== undefined && registration.issuer !== undefined) {
    problems.push({ path: 'issuer', message: 'give tokenUrl or issuer, not both' });
  }
  // An unknown method is its own problem: which references it needs cannot be told.
  if (!Object.hasOwn(CREDENTIALS_OF_METHOD, method)) return problems;
  const credentials: readonly string[] = credentialFieldsOf(registration);
  const fallbacksOf = (field: string) =>
    Object.entries(FALLBACK_FIELDS).find(([, single]) => single === field)?.[0] as FallbackField | undefined;
  for (const field of REFERENCE_FIELDS) {
    if (field === 'caRef') continue;
    const list = fallbacksOf(field);
    const listGiven = list !== undefined && registration[list] !== undefined;
    const given = registration[field] !== undefined || listGiven;
    if (credentials.includes(field) && !given) {
      const grantsOwn = registration.grant === 'jwt-bearer' && !CREDENTIALS_OF_METHOD[method].includes(field);
      const message = grantsOwn ? JWT_BEARER_ASSERTION_NEEDED : `${method} needs ${REFERENCE_MEANING[field]}`;
      problems.push({ path: field, message });
    }
    if (!credentials.includes(field) && given)
      problems.push({ path: listGiven ? list : field, message: `${method} does not use ${REFERENCE_MEANING[field]}: remove it` });
    if (listGiven && registration[field] !== undefined) problems.push({ path: list, message: `give ${field} or ${list}, not both` });
  }
  if (registration.keyRefs !== undefined && method !== 'private_key_jwt' && credentials.includes('keyRef')) {
    problems.push({
      path: 'keyRefs',
      message:
        registration.grant === 'jwt-bearer' && !CREDENTIALS_OF_METHOD[method].includes('keyRef')
          ? 'the jwt-bearer grant signs with one key: use keyRef (keyRefs is for private_key_jwt)'
          : `${method} pairs one key with its certificate: use keyRef (keyRefs is for private_key_jwt)`,
    });
  }
  const jwtBearer = registration.grant === 'jwt-bearer';
  if (jwtBearer && !(JWT_BEARER_AUTH_METHODS as readonly AuthMethod[]).includes(method)) {
    problems.push({
      path: 'authMethod',
      message: `the jwt-bearer grant authenticates the client with ${JWT_BEARER_AUTH_METHODS.join(', ')}`,
    });
  }
  // What the worker signs: the client assertion of an assertion method, and the jwt-bearer
  // grant's assertion unless assertionRef holds one the platform minted.
  const signsClientAssertion = isAssertionMethod(method) && !sendsMintedClientAssertion(registration);
  const signsGrantAssertion = jwtBearer && registration.assertionRef === undefined;
  // A service-account assertion is minted for an audience: assertionAudience, else the token URL.
  const mintsForServiceAccount = registration.assertionRef !== undefined && isServiceAccountRef(registration.assertionRef);
  if (mintsForServiceAccount && registration.assertionAudience === undefined && registration.tokenUrl === undefined) {
    problems.push({
      path: 'assertionAudience',
      message: `is required with issuer: the audience of the ${SERVICE_ACCOUNT_REF_FORM} assertion (by default the tokenUrl, RFC 7523 §3)`,
    });
  }
  if (!signsClientAssertion && !signsGrantAssertion) {
    for (const field of ['keyId', 'signingAlg', 'assertionAudience'] as const) {
      if (registration[field] === undefined) continue;
      if (field === 'assertionAudience' && mintsForServiceAccount) continue;
      problems.push({
        path: field,
        message:
          registration.assertionRef !== undefined
            ? 'assertionRef names an assertion the platform signed: the worker signs nothing, remove it'
            : `${method} sends no client assertion: remove it`,
      });
    }
  } else if (registration.signingAlg !== undefined) {
    const algorithms = signingAlgorithmsOf(signsGrantAssertion ? 'private_key_jwt' : method);
    if (!algorithms.includes(registration.signingAlg)) {
      problems.push({
        path: 'signingAlg',
        message: `${signsGrantAssertion ? 'the jwt-bearer assertion' : method} signs with ${algorithms.join(', ')}`,
      });
    }
  }
  if (registration.assertionSubject !== undefined && !signsGrantAssertion) {
    problems.push({
      path: 'assertionSubject',
      message: jwtBearer
        ? 'assertionRef names an assertion the platform signed: remove it'
        : "is the sub of the jwt-bearer grant's assertion: remove it, or set grant: jwt-bearer",
    });
  }
  return problems;
}

export const registrationSchema = registrationFields.superRefine((registration, ctx) => {
  for (const { path, message } of crossFieldProblems(registration)) ctx.addIssue({ code: 'custom', path: [path], message });
});

/** Thrown for an invalid registration; `problems` name each path. */
export class InvalidRegistrationError extends Error {
  readonly code = 'invalid_registration';
  constructor(readonly problems: string[]) {
    super(`Invalid registration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'InvalidRegistrationError';
  }
}

/** Every field name a registration may hold, at any depth: what an unknown key is compared with. */
const KNOWN_FIELD_NAMES: readonly string[] = [
  ...Object.keys(registrationFields.shape),
  ...Object.keys(DEFAULT_POLICY),
  ...RETRYABLE_FAILURE_KINDS,
  'baseMs',
  'capMs',
];

/**
 * Formats zod issues as `path: message`, the path prefixed with `prefix`. An unknown key is named
 * on its own path, with the known field it is closest to (`scopes`: did you mean `scope`?), among
 * the registration's and `moreNames`.
 */
export function describeIssues(issues: readonly z.core.$ZodIssue[], prefix = '', moreNames: readonly string[] = []): string[] {
  return issues.flatMap((issue) => {
    const path = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    const at = (key = '') => `${`${prefix}${path}${key}`.replace(/^\./, '') || '(root)'}`;
    if (issue.code !== 'unrecognized_keys') return [`${at()}: ${issue.message}`];
    return issue.keys.map((key) => {
      const near = closestName(key, [...KNOWN_FIELD_NAMES, ...moreNames]);
      return `${at(`.${key}`)}: unknown field${near === null ? '' : `; did you mean ${near}?`}`;
    });
  });
}

/** The name within two edits of `key` (case aside), the nearest first; null when none is. */
function closestName(key: string, names: readonly string[]): string | null {
  let best: { name: string; distance: number } | null = null;
  for (const name of names) {
    const distance = editDistance(key.toLowerCase(), name.toLowerCase());
    if (distance <= 2 && distance < key.length && (best === null || distance < best.distance)) best = { name, distance };
  }
  return best?.name ?? null;
}

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Parses a registration, with defaults applied, or throws {@link InvalidRegistrationError}. */
export function parseRegistration(input: unknown): ClientRegistration {
  const result = registrationSchema.safeParse(input);
  if (!result.success) throw new InvalidRegistrationError(describeIssues(result.error.issues));
  return result.data;
}
