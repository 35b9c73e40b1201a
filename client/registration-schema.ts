/**
 * Validation of client registrations at the edge (tokenctl, the admin API), before anything reaches
 * Temporal. Every problem is reported at once with its path, e.g. `clients[2].secretRef: …`.
 */
import { z } from 'zod';
import { policyProblems, resolvePolicy } from '../workflows/policy.js';
import type { ClientRegistration } from '../workflows/registration.js';

/** A field's error message, or `is required` when the field is absent. */
function requiredOr(message: string): (issue: { input: unknown }) => string {
  return (issue) => (issue.input === undefined ? 'is required' : message);
}

const backoffRule = z.object({ baseMs: z.number().positive(), capMs: z.number().positive() }).partial().strict();

export const policySchema = z
  .object({
    refreshFraction: z.number(),
    jitterFraction: z.number(),
    defaultExpiresInSeconds: z.number(),
    minForcedRefreshIntervalMs: z.number(),
    retryAfterMinMs: z.number(),
    retryAfterMaxMs: z.number(),
    rejectedProbeIntervalMs: z.number(),
    maxCyclesPerRun: z.number(),
    requestTimeoutMs: z.number(),
    backoff: z
      .object({
        rate_limited: backoffRule,
        blocked: backoffRule,
        server_error: backoffRule,
        malformed_response: backoffRule,
        secret_unavailable: backoffRule,
        store_unavailable: backoffRule,
      })
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
    clientId: z
      .string({ error: requiredOr('must be a string') })
      .min(1)
      .max(200)
      .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
    tokenUrl: z
      .url({ protocol: /^https?$/, error: requiredOr('must be an http(s) URL') })
      .refine((url) => !/\/\/[^/]*@/.test(url), 'must not contain credentials'),
    authMethod: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
    secretRef: z
      .string({ error: requiredOr('must be a string: env:NAME or file:/absolute/path') })
      .regex(/^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/, 'must be env:NAME or file:/absolute/path (the secret itself never goes here)')
      .transform((ref) => ref as ClientRegistration['secretRef']),
    scope: z.string().optional(),
    extraParams: z
      .record(z.string(), z.string())
      .refine(
        (params) => !['grant_type', 'client_id', 'client_secret', 'scope'].some((k) => k in params),
        'must not set grant_type, client_id, client_secret or scope',
      )
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
