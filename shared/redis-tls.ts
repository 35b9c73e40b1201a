/**
 * Redis over TLS (docs/design.md, "Redis over TLS"): the `REDIS_TLS_*` references resolved into
 * Node.js TLS options for every connection the worker and `tokenctl` open,
 * and TLS failures told in words that name the setting to fix.
 */
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { RedisOptions } from 'ioredis';
import { resolveReference, type Environment } from './references.js';
import { errorMessage } from './error-message.js';
import { createRedisClient, redactRedisUrl, type RedisClient } from './redis-connection.js';
import { readRedisSettings, type RedisSettings } from './redis-settings.js';
import { SettingsError } from './settings-error.js';

/**
 * The TLS options of `settings`: the private CA (`REDIS_TLS_CA`) and the client certificate and key
 * (`REDIS_TLS_CERT`, `REDIS_TLS_KEY`, for a Redis with `tls-auth-clients yes`), or `undefined` when
 * none is set (then a `rediss://` URL trusts Node.js's public CAs). The material is checked here, so
 * an unreadable file or a key that does not match its certificate stops the process at start.
 *
 * @param env - Where `env:` references are read from. @default process.env
 * @throws {@link SettingsError} naming the setting; never the value.
 */
export async function redisTlsOptions(settings: RedisSettings, env: Environment = process.env): Promise<ConnectionOptions | undefined> {
  const resolve = async (name: 'REDIS_TLS_CA' | 'REDIS_TLS_CERT' | 'REDIS_TLS_KEY'): Promise<string | undefined> => {
    const ref = settings[name];
    if (ref === undefined) return undefined;
    try {
      return (await resolveReference(ref, env)).reveal();
    } catch (error) {
      throw new SettingsError([`${name}: ${errorMessage(error)}`]);
    }
  };
  const [ca, cert, key] = await Promise.all([resolve('REDIS_TLS_CA'), resolve('REDIS_TLS_CERT'), resolve('REDIS_TLS_KEY')]);
  if (ca === undefined && cert === undefined) return undefined;
  const tls: ConnectionOptions = { ...(ca !== undefined && { ca }), ...(cert !== undefined && { cert, key }) };
  try {
    createSecureContext(tls);
  } catch (error) {
    // OpenSSL's code only ("ERR_OSSL_PEM_NO_START_LINE"): its message is about the PEM, not from it.
    throw new SettingsError([`REDIS_TLS_CA, REDIS_TLS_CERT, REDIS_TLS_KEY: not usable PEM (${codeOf(error) ?? 'invalid'})`]);
  }
  return tls;
}

/**
 * A client for `settings.REDIS_URL` with the TLS options of `REDIS_TLS_*` (see {@link redisTlsOptions}).
 *
 * @throws {@link SettingsError} when the TLS material cannot be read or used.
 */
export async function createRedisClientFromSettings(
  settings: RedisSettings,
  options: RedisOptions = {},
  env: Environment = process.env,
): Promise<RedisClient> {
  const tls = await redisTlsOptions(settings, env);
  return createRedisClient(settings.REDIS_URL, { ...options, ...(tls !== undefined && { tls }) });
}

/**
 * A client from the environment's `REDIS_URL` and `REDIS_TLS_*`: the same settings and TLS the
 * worker uses, for a program of this repository that reads tokens (the tests' consumers).
 *
 * @throws {@link SettingsError} when a setting is invalid or the TLS material cannot be used.
 */
export async function createRedisClientFromEnvironment(
  options: RedisOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<RedisClient> {
  return createRedisClientFromSettings(readRedisSettings(env), options, env);
}

/** What a reset connection means with TLS and no client certificate: the usual way a server refuses it. */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);

/** Node.js's codes for a server certificate that the client does not trust. */
const UNTRUSTED_SERVER_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
]);

/**
 * Why a connection failed, naming `REDIS_URL` (without its password), the cause, and for a TLS
 * failure the setting to look at (see {@link redisTlsProblem}).
 */
export function describeRedisConnectionError(error: unknown, settings: Pick<RedisSettings, 'REDIS_URL' | 'REDIS_TLS_CERT'>): string {
  const problem = redisTlsProblem(error, settings);
  return `REDIS_URL ${redactRedisUrl(settings.REDIS_URL)}: ${errorMessage(error).trim()}${problem === undefined ? '' : `: ${problem}`}`;
}

/**
 * What a TLS failure of a connection means, and which setting to fix, or `undefined` when it is not
 * one: an untrusted server certificate (`REDIS_TLS_CA`), a name the certificate does not cover, or
 * a server that wants a client certificate (`REDIS_TLS_CERT`, `REDIS_TLS_KEY`). A Redis with
 * `tls-auth-clients yes` refuses a client without a certificate by closing the connection once the
 * TLS 1.3 handshake ends, so that client sees a reset, not an alert.
 */
export function redisTlsProblem(error: unknown, settings: Pick<RedisSettings, 'REDIS_URL' | 'REDIS_TLS_CERT'>): string | undefined {
  const code = codeOf(error);
  const message = errorMessage(error);
  if (code !== undefined && UNTRUSTED_SERVER_CODES.has(code)) {
    return `the TLS certificate of the Redis server at REDIS_URL is not signed by a CA this process trusts: set REDIS_TLS_CA to the CA that signed it`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the TLS certificate of the Redis server does not name the host of REDIS_URL: use a host name the certificate names`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return `the TLS certificate of the Redis server at REDIS_URL is not valid now`;
  }
  if (/certificate required|alert (bad|unknown) certificate/i.test(message)) {
    return `the Redis server at REDIS_URL refused the TLS client certificate or wants one: set REDIS_TLS_CERT and REDIS_TLS_KEY to one its CA signed`;
  }
  if (/^rediss/.test(settings.REDIS_URL) && settings.REDIS_TLS_CERT === undefined && code !== undefined && RESET_CODES.has(code)) {
    return `the Redis server at REDIS_URL closed the TLS connection, as one with tls-auth-clients yes does to a client without a certificate: set REDIS_TLS_CERT and REDIS_TLS_KEY`;
  }
  return undefined;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
