/**
 * Client secrets: a type that cannot be printed by accident, and resolution of the `env:NAME` /
 * `file:/path` references that travel through Temporal instead of the secrets themselves
 * (docs/design.md, "No secret in Temporal").
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ENV_NAME_PATTERN, type SecretRef } from '../workflows/registration.js';
import { SecretUnavailableError } from './errors.js';
import { Redacted } from './redacted.js';

export { SecretUnavailableError };

/**
 * A client secret (RFC 6749 §2.3.1 client password). Printing, logging or serializing it yields
 * `[redacted]`; only {@link Redacted.reveal} gives the value.
 *
 * @see RFC 6749 §2.3.1
 */
export class Secret extends Redacted {}

/**
 * Resolves a secret reference on the worker: `env:NAME` reads the environment variable `NAME`,
 * `file:/path` reads the file (e.g. a mounted Kubernetes secret) and drops trailing newlines,
 * which editors and `echo` add. Environment values are taken as they are.
 *
 * @param env - The environment to read `env:` references from. @default process.env
 * @throws {@link SecretUnavailableError} when the reference is malformed, or names a variable that
 *   is not set, a file that cannot be read, or an empty value. The message names the reference and
 *   the problem, never the secret.
 */
export async function resolveSecret(ref: SecretRef, env: Readonly<Record<string, string | undefined>> = process.env): Promise<Secret> {
  // The type says `env:…` or `file:…`, but the value comes from a registration (JSON), so check.
  const reference: unknown = ref;
  if (typeof reference !== 'string') {
    throw new SecretUnavailableError(`Secret reference must be a string (env:NAME or file:/absolute/path), got ${typeof reference}`);
  }

  if (reference.startsWith('env:')) {
    const name = reference.slice('env:'.length);
    if (!ENV_NAME_PATTERN.test(name)) {
      throw new SecretUnavailableError(`${reference} is malformed: the variable name must match ${ENV_NAME_PATTERN.source}`);
    }
    const value = env[name];
    if (value === undefined) {
      throw new SecretUnavailableError(`${reference} is not set`);
    }
    if (value === '') {
      throw new SecretUnavailableError(`${reference} is empty`);
    }
    return new Secret(value);
  }

  if (reference.startsWith('file:')) {
    const path = reference.slice('file:'.length);
    // A relative path would depend on the worker's working directory: refuse it up front.
    if (!isAbsolute(path)) {
      throw new SecretUnavailableError(`${reference} is malformed: the path must be absolute`);
    }
    let content: string;
    try {
      content = await readFile(path, 'utf8');
    } catch (error) {
      // Only the error code: a Node.js fs message adds nothing but the path we already print.
      throw new SecretUnavailableError(`${reference} could not be read: ${errorCode(error)}`);
    }
    const value = content.replace(/(?:\r?\n)+$/, '');
    if (value === '') {
      throw new SecretUnavailableError(`${reference} is empty`);
    }
    return new Secret(value);
  }

  // Someone may have pasted the secret itself where the reference belongs: do not echo it.
  throw new SecretUnavailableError(
    `Secret reference is malformed: expected env:NAME or file:/absolute/path, got a ${reference.length}-character value with neither prefix`,
  );
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'unknown error';
}
