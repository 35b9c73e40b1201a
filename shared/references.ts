/**
 * Credential references: resolution of the `env:NAME` / `file:/path` references that travel through
 * Temporal instead of secrets, keys and certificates (docs/design.md, "References"), and a type
 * that cannot be printed by accident for what they name.
 *
 * A reference is resolved on the worker for every request: a file rewritten on disk (a rotated
 * Kubernetes secret) is used from the next request on, without a restart or a signal.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ENV_NAME_PATTERN, REFERENCE_FORM, type CredentialRef } from '../workflows/registration.js';
import { Redacted } from './redacted.js';
import { SecretUnavailableError } from './secret-unavailable-error.js';

/**
 * What a reference names: a client secret (RFC 6749 §2.3.1 client password), a private key, a
 * certificate. Printing, logging or serializing it yields `[redacted]`; only {@link Redacted.reveal}
 * gives the value. Certificates are not secret, but one type for everything a reference names
 * keeps the rule simple: nothing resolved is ever printed.
 *
 * @see RFC 6749 §2.3.1
 */
export class Secret extends Redacted {}

/** Where `env:` references are read from: the worker's environment. */
export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Resolves a reference on the worker: `env:NAME` reads the environment variable `NAME`,
 * `file:/path` reads the file (e.g. a mounted Kubernetes secret) and drops trailing newlines,
 * which editors and `echo` add. Environment values are taken as they are. Nothing is cached: the
 * file is read on every call.
 *
 * @param env - The environment to read `env:` references from. @default process.env
 * @throws {@link SecretUnavailableError} when the reference is malformed, or names a variable that
 *   is not set, a file that cannot be read, or an empty value. The message names the reference and
 *   the problem, never the value.
 */
export async function resolveReference(ref: CredentialRef, env: Environment = process.env): Promise<Secret> {
  // The type says `env:…` or `file:…`, but the value comes from a registration (JSON), so check.
  const reference: unknown = ref;
  if (typeof reference !== 'string') {
    throw new SecretUnavailableError(`Reference must be a string (${REFERENCE_FORM}), got ${typeof reference}`);
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
    `Reference is malformed: expected ${REFERENCE_FORM}, got a ${reference.length}-character value with neither prefix`,
  );
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'unknown error';
}
