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
  isSecretRef,
  RESERVED_EXTRA_PARAMS,
  type ClientRegistration,
} from '../workflows/registration.js';

/** A field's error message, or `is required` when the field is absent. */
function requiredOr(message: string): (issue: { input: unknown }) => string {
  return (issue) => (issue.input === undefined ? 'is required' : message);
}

const backoffRule = z.object({ baseMs: z.number().positive(), capMs: z.number().positive() }).partial().strict();

/** Every numeric field of the policy, from its defaults: a field the policy gains is accepted here too. */
const policyNumbers = Object.fromEntries(
  Object.keys(DEFAULT_POLICY)
    .filter((field) => field !== 'backoff')
    .map((field) => [field, z.number()]),
) as Record<Exclude<keyof RefreshPolicy, 'backoff'>, z.ZodNumber>;

export const policySchema = z
  .object({
    ...policyNumbers,
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

export const registrationSchema = z
  .object({
    clientId: z.string({ error: requiredOr('must be a string') }).regex(CLIENT_ID_PATTERN, `must be ${CLIENT_ID_RULE}`),
    tokenUrl: z
      .url({ protocol: /^https?$/, error: requiredOr('must be an http(s) URL') })
      .refine((url) => !/\/\/[^/]*@/.test(url), 'must not contain credentials'),
    authMethod: z.enum(AUTH_METHODS).default('client_secret_basic'),
    secretRef: z
      .string({ error: requiredOr('must be a string: env:NAME or file:/absolute/path') })
      .refine(isSecretRef, 'must be env:NAME or file:/absolute/path (the secret itself never goes here)'),
    scope: z.string().optional(),
    extraParams: z
      .record(z.string(), z.string())
      .refine((params) => !RESERVED_EXTRA_PARAMS.some((k) => k in params), `must not set ${RESERVED_EXTRA_PARAMS.join(', ')}`)
      .optional(),
    policy: policySchema.optional(),
  })
  .strict();

/** Thrown for an invalid registration; `problems` name each path. */
export class InvalidRegistrationError extends Error {
  readonly code = 'invalid_registration';
  constructor(readonly problems: string[]) {
    super(`Invalid registration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'InvalidRegistrationError';
  }
}

/** Formats zod issues as `path: message`, the path prefixed with `prefix`. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], prefix = ''): string[] {
  return issues.map((issue) => {
    const path = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    return `${`${prefix}${path}`.replace(/^\./, '') || '(root)'}: ${issue.message}`;
  });
}

/** Parses a registration, with defaults applied, or throws {@link InvalidRegistrationError}. */
export function parseRegistration(input: unknown): ClientRegistration {
  const result = registrationSchema.safeParse(input);
  if (!result.success) throw new InvalidRegistrationError(describeIssues(result.error.issues));
  return result.data;
}
