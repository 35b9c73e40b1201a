import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessToken, tokenFingerprint } from '../../activities/access-token.js';
import { SecretUnavailableError } from '../../shared/secret-unavailable-error.js';
import { resolveReference, Secret } from '../../shared/references.js';
import type { CredentialRef } from '../../workflows/registration.js';

const SECRET = 'S3CRET-never-print-me-4f9a2c';
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.TOKEN-never-print-me.c2lnbmF0dXJl';

/** Every everyday way a value ends up in a log line, a JSON payload or a template. */
function renderings(value: unknown): string[] {
  return [
    String(value),
    `${value as string}`,
    JSON.stringify(value),
    JSON.stringify({ nested: { value } }),
    inspect(value),
    inspect({ nested: { value } }, { showHidden: true, depth: Infinity }),
    format('%s %o %O %j', value, value, value, value),
    JSON.stringify({ ...(value as object) }),
  ];
}

describe.each([
  ['Secret', () => new Secret(SECRET), SECRET],
  ['AccessToken', () => new AccessToken(TOKEN), TOKEN],
])('A %s', (_name, create, value) => {
  it('gives its value only through reveal()', () => {
    expect(create().reveal()).toBe(value);
  });

  it('prints, logs and serializes as [redacted]', () => {
    const redacted = create();
    expect(String(redacted)).toBe('[redacted]');
    expect(JSON.stringify(redacted)).toBe('"[redacted]"');
    expect(inspect(redacted)).toBe('[redacted]');
    for (const text of renderings(redacted)) {
      expect(text).not.toContain(value);
    }
  });

  it('has no enumerable properties to copy the value from', () => {
    expect(Object.keys(create())).toEqual([]);
    expect(Object.getOwnPropertyNames(create())).toEqual([]);
  });
});

describe('An AccessToken fingerprint', () => {
  it('is the first 16 lowercase hex digits of the SHA-256 of the token', () => {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad (FIPS 180-2 example)
    expect(new AccessToken('abc').fingerprint()).toBe('ba7816bf8f01cfea');
    expect(tokenFingerprint('abc')).toBe('ba7816bf8f01cfea');
    expect(new AccessToken(TOKEN).fingerprint()).toBe(createHash('sha256').update(TOKEN).digest('hex').slice(0, 16));
  });
});

describe('resolveReference', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secrets-test-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function secretFile(name: string, content: string): Promise<CredentialRef> {
    const path = join(dir, name);
    await writeFile(path, content);
    return `file:${path}`;
  }

  /** Awaits a SecretUnavailableError, checks it leaks nothing, and returns its message. */
  async function unavailable(promise: Promise<unknown>): Promise<string> {
    const error = await promise.then(
      () => {
        throw new Error('expected the secret to be unavailable, it resolved');
      },
      (rejection: unknown) => rejection,
    );
    expect(error).toBeInstanceOf(SecretUnavailableError);
    const failure = error as SecretUnavailableError;
    expect(failure.kind).toBe('secret_unavailable');
    expect(failure.code).toBe('secret_unavailable');
    for (const text of [failure.message, String(failure.stack), JSON.stringify(failure), inspect(failure, { showHidden: true })]) {
      expect(text).not.toContain(SECRET);
    }
    return failure.message;
  }

  it('reads env:NAME from the given environment, as it is', async () => {
    const secret = await resolveReference('env:BILLING_SECRET', { BILLING_SECRET: ` ${SECRET}\n` });
    expect(secret.reveal()).toBe(` ${SECRET}\n`);
  });

  it('reads env:NAME from process.env by default', async () => {
    process.env.SECRETS_TEST_DEFAULT_ENV = SECRET;
    try {
      expect((await resolveReference('env:SECRETS_TEST_DEFAULT_ENV')).reveal()).toBe(SECRET);
    } finally {
      delete process.env.SECRETS_TEST_DEFAULT_ENV;
    }
  });

  it('reports an unset variable', async () => {
    expect(await unavailable(resolveReference('env:FOO', {}))).toBe('env:FOO is not set');
  });

  it('reports an empty variable', async () => {
    expect(await unavailable(resolveReference('env:FOO', { FOO: '' }))).toBe('env:FOO is empty');
  });

  it.each([
    ['a file without a trailing newline', SECRET],
    ['a trailing \\n', `${SECRET}\n`],
    ['a trailing \\r\\n', `${SECRET}\r\n`],
    ['several trailing newlines', `${SECRET}\n\r\n\n`],
  ])('reads file:/path with %s', async (label, content) => {
    const ref = await secretFile(`secret-${label.replace(/\W+/g, '-')}`, content);
    expect((await resolveReference(ref)).reveal()).toBe(SECRET);
  });

  it('keeps newlines and spaces inside and before the secret', async () => {
    const ref = await secretFile('inner', ` line one\nline two \n`);
    expect((await resolveReference(ref)).reveal()).toBe(' line one\nline two ');
  });

  it('reports a missing file with its error code', async () => {
    expect(await unavailable(resolveReference('file:/x'))).toBe('file:/x could not be read: ENOENT');
  });

  it('reports a directory with its error code', async () => {
    expect(await unavailable(resolveReference(`file:${dir}`))).toBe(`file:${dir} could not be read: EISDIR`);
  });

  it.skipIf(process.getuid?.() === 0)('reports an unreadable file with its error code', async () => {
    const ref = await secretFile('unreadable', SECRET);
    await chmod(ref.slice('file:'.length), 0o000);
    expect(await unavailable(resolveReference(ref))).toBe(`${ref} could not be read: EACCES`);
  });

  it.each([
    ['', 'empty'],
    ['\n', 'only-newline'],
    ['\r\n\n', 'only-newlines'],
  ])('reports a file holding %j as empty', async (content, name) => {
    const ref = await secretFile(name, content);
    expect(await unavailable(resolveReference(ref))).toBe(`${ref} is empty`);
  });

  it.each([
    ['env:', 'env: is malformed: the variable name must match ^[A-Za-z_][A-Za-z0-9_]*$'],
    ['env:1ABC', 'env:1ABC is malformed: the variable name must match ^[A-Za-z_][A-Za-z0-9_]*$'],
    ['env:MY-SECRET', 'env:MY-SECRET is malformed: the variable name must match ^[A-Za-z_][A-Za-z0-9_]*$'],
    ['file:', 'file: is malformed: the path must be absolute'],
    ['file:secrets/billing', 'file:secrets/billing is malformed: the path must be absolute'],
  ])('reports the malformed reference %j', async (ref, message) => {
    expect(await unavailable(resolveReference(ref as CredentialRef, { MY: SECRET }))).toBe(message);
  });

  it('does not echo a reference that may be a pasted secret', async () => {
    expect(await unavailable(resolveReference(SECRET as CredentialRef))).toBe(
      `Reference is malformed: expected env:NAME or file:/absolute/path, got a ${SECRET.length}-character value with neither prefix`,
    );
  });

  it('reports a reference that is not a string', async () => {
    expect(await unavailable(resolveReference(42 as unknown as CredentialRef))).toBe(
      'Reference must be a string (env:NAME or file:/absolute/path), got number',
    );
  });
});
