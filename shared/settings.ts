/**
 * Connection settings from the environment (docs/design.md, "Settings"), shared by the
 * worker, `tokenctl` and the consumer library. Every problem is reported at once, naming the
 * variable, so a misconfigured deployment fails at start with one clear message.
 */
import { z } from 'zod';
import { isCredentialRef, REFERENCE_FORM } from '../workflows/registration.js';
import { DEFAULT_KEY_PREFIX } from './redis-layout.js';

const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const;

const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** A setting that names a secret or a file instead of holding it, resolved by activities/references.ts. */
const reference = z.string().refine(isCredentialRef, `must be ${REFERENCE_FORM} (a reference, never the value itself)`);

/**
 * The Redis connection, read by the worker, `tokenctl` and the consumer library alike
 * (docs/design.md, "Redis over TLS"). The TLS material is given as references, like a client
 * secret: `file:/path` of a PEM file (a mounted Kubernetes secret) or `env:NAME` holding the PEM.
 */
const redisSettingsShape = {
  REDIS_URL: z.string().min(1).default('redis://127.0.0.1:6379'),
  /** The CA that signed the Redis server's certificate; unset: Node.js's public CAs. */
  REDIS_TLS_CA: reference.optional(),
  /** The client certificate, for a Redis with `tls-auth-clients yes`; with {@link REDIS_TLS_KEY}. */
  REDIS_TLS_CERT: reference.optional(),
  /** The client certificate's private key. */
  REDIS_TLS_KEY: reference.optional(),
};

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
  ...redisSettingsShape,
  TOKEN_KEY_PREFIX: z.string().default(DEFAULT_KEY_PREFIX),
  IAM_MAX_RPS: z.coerce.number().positive().max(10_000).default(40),
  METRICS_PORT: z.coerce.number().int().min(0).max(65_535).default(9464),
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
   * 2 otherwise. Default: the SDK's, which scales with the heap.
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
  LOGIN_PROOF_KEY: z
    .string()
    .refine(isCredentialRef, `must be ${REFERENCE_FORM} (a reference to the key, never the key itself)`)
    .optional(),
});

export type Settings = z.output<typeof settingsSchema>;

const redisSettingsSchema = z.object(redisSettingsShape);

/** The settings of a Redis connection: `REDIS_URL` and `REDIS_TLS_*`. */
export type RedisSettings = z.output<typeof redisSettingsSchema>;

/** The URL schemes of a connection over TLS (shared/redis-connection.ts). */
const TLS_URL = /^rediss(\+sentinel|\+cluster)?:\/\//;

/** Thrown when the environment holds invalid settings; the message lists every problem. */
export class SettingsError extends Error {
  readonly code = 'invalid_settings';
  constructor(readonly problems: string[]) {
    super(`Invalid settings:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SettingsError';
  }
}

/**
 * `env` read through `schema` (a `z.object` of variable names): an empty value counts as unset, and
 * every problem is reported at once, each naming its variable.
 *
 * @throws {@link SettingsError}
 */
export function parseEnvironment<Schema extends z.ZodObject>(schema: Schema, env: NodeJS.ProcessEnv): z.output<Schema> {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const result = schema.safeParse(present);
  if (!result.success) {
    throw new SettingsError(result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  return result.data;
}

/** Reads the settings from `env`, with the defaults of the README's settings table. */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const settings = parseEnvironment(settingsSchema, env);
  if ((settings.TEMPORAL_TLS_CERT_PATH === undefined) !== (settings.TEMPORAL_TLS_KEY_PATH === undefined)) {
    throw new SettingsError(['TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH must be given together (mTLS)']);
  }
  checkRedisTls(settings);
  return settings;
}

/**
 * Only the Redis connection's settings from `env`, for the consumer library, whose process has
 * no other setting of this project.
 *
 * @throws {@link SettingsError}
 */
export function readRedisSettings(env: NodeJS.ProcessEnv = process.env): RedisSettings {
  const settings = parseEnvironment(redisSettingsSchema, env);
  checkRedisTls(settings);
  return settings;
}

/** TLS material for a URL without TLS would be ignored silently: refuse it, and a half client certificate. */
function checkRedisTls(settings: RedisSettings): void {
  const problems: string[] = [];
  if ((settings.REDIS_TLS_CERT === undefined) !== (settings.REDIS_TLS_KEY === undefined)) {
    problems.push('REDIS_TLS_CERT and REDIS_TLS_KEY must be given together (a client certificate and its key)');
  }
  const tlsSettings = (['REDIS_TLS_CA', 'REDIS_TLS_CERT', 'REDIS_TLS_KEY'] as const).filter((name) => settings[name] !== undefined);
  if (tlsSettings.length > 0 && !TLS_URL.test(settings.REDIS_URL)) {
    problems.push(`${tlsSettings.join(', ')} need a TLS REDIS_URL: rediss://, rediss+sentinel:// or rediss+cluster://`);
  }
  if (problems.length > 0) throw new SettingsError(problems);
}
