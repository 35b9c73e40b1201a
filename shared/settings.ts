/**
 * Connection settings from the environment (docs/design.md, "Settings"), shared by the
 * worker and `tokenctl`. Every problem is reported at once, naming the
 * variable, so a misconfigured deployment fails at start with one clear message.
 */
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { isCredentialRef, REFERENCE_FORM } from '../workflows/registration.js';
import { parseRedisSettings, type RedisSettings } from './redis-settings.js';
import { SettingsError } from './settings-error.js';

const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const;

const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const settingsSchema = z.object({
  TEMPORAL_ADDRESS: z.string().min(1).default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  /** Temporal Cloud API key; implies TLS. */
  TEMPORAL_API_KEY: z.string().min(1).optional(),
  TEMPORAL_TLS: flag.optional(),
  TEMPORAL_TLS_CERT_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_KEY_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_CA_PATH: z.string().min(1).optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  /** The workflow task queue; the IAM activity runs on `<queue>-iam`. */
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('token-lifecycle'),
  // REDIS_URL, REDIS_TLS_* and TOKEN_KEY_PREFIX: shared/redis-settings.ts.
  IAM_MAX_RPS: z.coerce.number().positive().max(10_000).default(40),
  METRICS_PORT: z.coerce.number().int().min(0).max(65_535).default(9464),
  /**
   * The address `/metrics` listens on: loopback unless an operator opens it (a container sets
   * 0.0.0.0 so that its port can be published).
   */
  METRICS_HOST: z.union([z.ipv4(), z.ipv6()], { error: 'must be an IP address, e.g. 127.0.0.1 or 0.0.0.0' }).default('127.0.0.1'),
  LOG_LEVEL: z
    .string()
    .transform((v) => v.toUpperCase())
    .pipe(z.enum(LOG_LEVELS))
    .default('INFO'),
  /** `pretty`: the SDK's readable lines; `json`: one JSON object per line, for log pipelines. */
  LOG_FORMAT: z.enum(['pretty', 'json']).default('pretty'),
  /**
   * Workflows kept in the worker's memory between their tasks (Temporal's sticky cache); others are
   * replayed from their short history when they wake. 0 turns the cache off; the SDK needs at least
   * 2 otherwise. Default: `DEFAULT_MAX_CACHED_WORKFLOWS` (worker/token-workers.ts).
   */
  MAX_CACHED_WORKFLOWS: z.coerce
    .number()
    .int()
    .refine((n) => n === 0 || n >= 2, 'must be 0 (no cache) or at least 2')
    .optional(),
  /** A prebuilt workflow bundle (`npm run build` writes dist/workflow-bundle.js). */
  WORKFLOW_BUNDLE_PATH: z.string().min(1).optional(),
  /**
   * The failed-login budget per IAM host (docs/design.md, "The failed-login budget"): after this many
   * rejected logins in the window, unproven credentials wait. Keep it well under the provider's
   * tolerance (a Keycloak-style edge blocks after a handful a minute); the same on every worker.
   */
  LOGIN_BUDGET_MAX_REJECTIONS: z.coerce.number().int().min(1).max(1000).default(2),
  LOGIN_BUDGET_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /**
   * The key of the proofs of accepted credentials, as a reference (`env:NAME` or `file:/path`, like a
   * client secret's): the same on every worker, known to no one else. Unset: a random key per process.
   */
  /**
   * Where the worker reads its own service-account `token` and `ca.crt` to mint `serviceaccount:`
   * assertions (activities/service-account-tokens.ts, which reads it per request): a pod's mount
   * by default; set for a worker outside the cluster, and in tests.
   */
  KUBERNETES_SERVICE_ACCOUNT_DIR: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  LOGIN_PROOF_KEY: z
    .string()
    .refine(isCredentialRef, `must be ${REFERENCE_FORM} (a reference to the key, never the key itself)`)
    .optional(),
});

/** Every setting: those of the schema above and the Redis settings. */
export type Settings = z.output<typeof settingsSchema> & RedisSettings;

/**
 * `env` read through `schema` (a `z.object` of variable names): an empty value counts as unset, and
 * every problem is reported at once, each naming its variable.
 *
 * @throws {@link SettingsError}
 */
export function parseEnvironment<Schema extends z.ZodObject>(schema: Schema, env: NodeJS.ProcessEnv): z.output<Schema> {
  const { data, problems } = checkEnvironment(schema, env);
  if (data === undefined) throw new SettingsError(problems);
  return data;
}

function checkEnvironment<Schema extends z.ZodObject>(
  schema: Schema,
  env: NodeJS.ProcessEnv,
): { data: z.output<Schema> | undefined; problems: string[] } {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const result = schema.safeParse(present);
  return result.success
    ? { data: result.data, problems: [] }
    : { data: undefined, problems: result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`) };
}

/** Reads the settings from `env`, with the defaults of the README's settings table. */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const { data, problems } = checkEnvironment(settingsSchema, env);
  const redis = parseRedisSettings(env);
  problems.push(...redis.problems);
  if (data !== undefined && (data.TEMPORAL_TLS_CERT_PATH === undefined) !== (data.TEMPORAL_TLS_KEY_PATH === undefined)) {
    problems.push('TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH must be given together (mTLS)');
  }
  if (data === undefined || problems.length > 0) throw new SettingsError(problems);
  return { ...data, ...redis.settings };
}
