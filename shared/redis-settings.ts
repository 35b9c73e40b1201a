/**
 * The Redis settings (docs/design.md, "Settings" and "Redis over TLS"): the connection (`REDIS_URL`,
 * `REDIS_TLS_*`) and the key prefix, read by the worker and `tokenctl` alike.
 *
 * Read by hand, not with the schema of shared/settings.ts: these are what `tokenctl token` needs,
 * and loading the schema library costs a command-line run more than all the rest of its start-up (docs/design.md, "tokenctl and the admin API").
 */
import { isCredentialRef, REFERENCE_FORM, type CredentialRef } from '../workflows/registration.js';
import { DEFAULT_KEY_PREFIX } from './redis-layout.js';
import { SettingsError } from './settings-error.js';

/** The TLS material, as references like a client secret's: `file:/path` of a PEM file, or `env:NAME` holding the PEM. */
const TLS_SETTINGS = ['REDIS_TLS_CA', 'REDIS_TLS_CERT', 'REDIS_TLS_KEY'] as const;

/** The URL schemes of a connection over TLS (consumers/node/src/redis-connection.ts). */
const TLS_URL = /^rediss(\+sentinel|\+cluster)?:\/\//;

/** The settings of the Redis connection and key layout. */
export interface RedisSettings {
  /** @default 'redis://127.0.0.1:6379' */
  REDIS_URL: string;
  /** The CA that signed the Redis server's certificate; unset: Node.js's public CAs. */
  REDIS_TLS_CA?: CredentialRef;
  /** The client certificate, for a Redis with `tls-auth-clients yes`; with {@link REDIS_TLS_KEY}. */
  REDIS_TLS_CERT?: CredentialRef;
  /** The client certificate's private key. */
  REDIS_TLS_KEY?: CredentialRef;
  /** The prefix of every key (docs/redis-contract.md). @default 'oauth:' */
  TOKEN_KEY_PREFIX: string;
}

/**
 * The Redis settings of `env` and every problem with them, each naming its variable (for
 * shared/settings.ts, which reports them with the other settings' problems). An empty value counts
 * as unset. TLS material for a URL without TLS would be ignored silently: it is refused, and so is
 * half a client certificate.
 */
export function parseRedisSettings(env: NodeJS.ProcessEnv): { settings: RedisSettings; problems: string[] } {
  const value = (name: string): string | undefined => (env[name] === '' ? undefined : env[name]);
  const settings: RedisSettings = {
    REDIS_URL: value('REDIS_URL') ?? 'redis://127.0.0.1:6379',
    TOKEN_KEY_PREFIX: value('TOKEN_KEY_PREFIX') ?? DEFAULT_KEY_PREFIX,
  };
  const problems: string[] = [];
  for (const name of TLS_SETTINGS) {
    const ref = value(name);
    if (ref === undefined) continue;
    if (isCredentialRef(ref)) settings[name] = ref;
    else problems.push(`${name}: must be ${REFERENCE_FORM} (a reference, never the value itself)`);
  }
  if ((value('REDIS_TLS_CERT') === undefined) !== (value('REDIS_TLS_KEY') === undefined)) {
    problems.push('REDIS_TLS_CERT and REDIS_TLS_KEY must be given together (a client certificate and its key)');
  }
  const tlsGiven = TLS_SETTINGS.filter((name) => value(name) !== undefined);
  if (tlsGiven.length > 0 && !TLS_URL.test(settings.REDIS_URL)) {
    problems.push(`${tlsGiven.join(', ')} need a TLS REDIS_URL: rediss://, rediss+sentinel:// or rediss+cluster://`);
  }
  return { settings, problems };
}

/**
 * Only the Redis settings of `env`: for `tokenctl token`, which needs no other.
 *
 * @throws {@link SettingsError} listing every problem.
 */
export function readRedisSettings(env: NodeJS.ProcessEnv = process.env): RedisSettings {
  const { settings, problems } = parseRedisSettings(env);
  if (problems.length > 0) throw new SettingsError(problems);
  return settings;
}
