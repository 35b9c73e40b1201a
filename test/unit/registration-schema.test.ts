/**
 * The registration schema (client/registration-schema.ts) and the clients file (cli/clients-file.ts)
 * for the six methods, the references, the issuer and the network settings: every mistake listed
 * by its path, the rules derived from workflows/registration.ts; and how `reconfigure` changes a
 * registration (`null` removes a field).
 */
import { describe, expect, test } from 'vitest';
import { InvalidClientsFileError, parseClientsFile } from '../../cli/clients-file.js';
import { InvalidRegistrationError, parseRegistration } from '../../client/registration-schema.js';
import {
  applyRegistrationChanges,
  AUTH_METHODS,
  CREDENTIALS_OF_METHOD,
  iamUrlOf,
  REFERENCE_MEANING,
  type ClientRegistration,
} from '../../workflows/registration.js';

const TOKEN_URL = 'https://iam.example.com/realms/prod/protocol/openid-connect/token';
const ISSUER = 'https://iam.example.com/realms/prod';

function problems(input: unknown): string[] {
  try {
    parseRegistration(input);
  } catch (error) {
    if (error instanceof InvalidRegistrationError) return error.problems;
    throw error;
  }
  return [];
}

function fileProblems(text: string): readonly string[] {
  try {
    parseClientsFile(text, 'clients.yaml');
  } catch (error) {
    if (error instanceof InvalidClientsFileError) return error.problems;
    throw error;
  }
  return [];
}

/** The references a valid registration of `method` gives. */
const credentialsOf = (method: (typeof AUTH_METHODS)[number]) =>
  Object.fromEntries(CREDENTIALS_OF_METHOD[method].map((field) => [field, `file:/run/${field}`]));

describe('the registration schema', () => {
  test.each(AUTH_METHODS)('%s registers with exactly the references it needs, by token URL or by issuer', (authMethod) => {
    for (const endpoint of [{ tokenUrl: TOKEN_URL }, { issuer: ISSUER }]) {
      expect(problems({ clientId: 'c', authMethod, ...endpoint, ...credentialsOf(authMethod) })).toEqual([]);
    }
  });

  test.each(AUTH_METHODS)('%s without its references names each one missing', (authMethod) => {
    expect(problems({ clientId: 'c', authMethod, tokenUrl: TOKEN_URL }).sort()).toEqual(
      CREDENTIALS_OF_METHOD[authMethod].map((field) => `${field}: ${authMethod} needs ${REFERENCE_MEANING[field]}`).sort(),
    );
  });

  test('a registration made before the new fields existed is still valid as it is', () => {
    const old = { clientId: 'c', tokenUrl: TOKEN_URL, authMethod: 'client_secret_post', secretRef: 'env:S', scope: 'a b' };
    expect(parseRegistration(old)).toEqual(old);
    expect(parseRegistration({ clientId: 'c', tokenUrl: TOKEN_URL, secretRef: 'env:S' }).authMethod).toBe('client_secret_basic');
  });

  test('every mistake is listed by its path at once', () => {
    expect(
      problems({
        clientId: 'c',
        tokenUrl: TOKEN_URL,
        issuer: 'https://iam.example.com/realms/prod?x=1',
        authMethod: 'tls_client_auth',
        secretRef: 'env:S',
        certRef: '-----BEGIN CERTIFICATE-----',
        caRef: 'file:relative/ca.pem',
        signingAlg: 'RS256',
        proxyUrl: 'http://user:password@proxy:3128',
      }).sort(),
    ).toEqual(
      [
        'issuer: must have no query or fragment (OpenID Connect Discovery 1.0 §2)',
        'certRef: must be env:NAME or file:/absolute/path (the secret, key or certificate itself never goes here)',
        'caRef: must be env:NAME or file:/absolute/path (the secret, key or certificate itself never goes here)',
        'proxyUrl: must not contain credentials: give an authenticated proxy to the worker as HTTPS_PROXY',
        // The rules between fields, in the same list.
        'issuer: give tokenUrl or issuer, not both',
        'secretRef: tls_client_auth does not use a client secret reference: remove it',
        'keyRef: tls_client_auth needs a key reference',
        'signingAlg: tls_client_auth sends no client assertion: remove it',
      ].sort(),
    );
    expect(
      problems({
        clientId: 'c',
        tokenUrl: TOKEN_URL,
        issuer: ISSUER,
        authMethod: 'tls_client_auth',
        secretRef: 'env:S',
        signingAlg: 'RS256',
        assertionAudience: ISSUER,
      }).sort(),
    ).toEqual(
      [
        'issuer: give tokenUrl or issuer, not both',
        'secretRef: tls_client_auth does not use a client secret reference: remove it',
        'certRef: tls_client_auth needs a certificate reference',
        'keyRef: tls_client_auth needs a key reference',
        'signingAlg: tls_client_auth sends no client assertion: remove it',
        'assertionAudience: tls_client_auth sends no client assertion: remove it',
      ].sort(),
    );
  });

  test('a registration needs an endpoint, and the signing algorithm must be its method’s', () => {
    expect(problems({ clientId: 'c', secretRef: 'env:S' })).toEqual(['tokenUrl: is required, or issuer instead (one of the two)']);
    expect(
      problems({ clientId: 'c', tokenUrl: TOKEN_URL, authMethod: 'client_secret_jwt', secretRef: 'env:S', signingAlg: 'ES256' }),
    ).toEqual(['signingAlg: client_secret_jwt signs with HS256, HS384, HS512']);
    expect(problems({ clientId: 'c', tokenUrl: TOKEN_URL, authMethod: 'private_key_jwt', keyRef: 'file:/k', signingAlg: 'HS512' })).toEqual(
      ['signingAlg: private_key_jwt signs with RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA'],
    );
    expect(problems({ clientId: 'c', tokenUrl: TOKEN_URL, authMethod: 'digest', secretRef: 'env:S' })).toEqual([
      `authMethod: must be one of ${AUTH_METHODS.join(', ')}`,
    ]);
  });

  test('fallback secrets and keys: a list instead of the single reference, for the methods that take one', () => {
    const base = { clientId: 'c', tokenUrl: TOKEN_URL };
    expect(parseRegistration({ ...base, secretRefs: ['file:/run/secrets/new', 'file:/run/secrets/old'] })).toMatchObject({
      authMethod: 'client_secret_basic',
      secretRefs: ['file:/run/secrets/new', 'file:/run/secrets/old'],
    });
    expect(parseRegistration({ ...base, authMethod: 'private_key_jwt', keyRefs: ['file:/k2', 'file:/k1'] })).toMatchObject({
      keyRefs: ['file:/k2', 'file:/k1'],
    });
    expect(problems({ ...base, secretRef: 'env:S', secretRefs: ['env:T'] })).toEqual([
      'secretRefs: give secretRef or secretRefs, not both',
    ]);
    expect(problems({ ...base, secretRefs: [] })).toEqual(['secretRefs: must name at least one reference']);
    expect(problems({ ...base, secretRefs: ['env:S', 'env:S'] })).toEqual(['secretRefs: must not name a reference twice']);
    expect(problems({ ...base, secretRefs: ['env:S', 'the-secret itself'] })).toEqual([
      'secretRefs[1]: must be env:NAME or file:/absolute/path (the secret or key itself never goes here)',
    ]);
    expect(problems({ ...base, authMethod: 'private_key_jwt', secretRefs: ['env:S'], keyRef: 'file:/k' })).toEqual([
      'secretRefs: private_key_jwt does not use a client secret reference: remove it',
    ]);
    expect(problems({ ...base, authMethod: 'tls_client_auth', certRef: 'file:/c', keyRefs: ['file:/k1', 'file:/k2'] })).toEqual([
      'keyRefs: tls_client_auth pairs one key with its certificate: use keyRef (keyRefs is for private_key_jwt)',
    ]);
  });

  test('private_key_jwt sends a platform-minted assertion instead of signing with a key: one of the two, and nothing to sign with', () => {
    const minted = { clientId: 'c', tokenUrl: TOKEN_URL, authMethod: 'private_key_jwt', assertionRef: 'file:/var/run/secrets/tokens/iam' };
    expect(parseRegistration(minted)).toMatchObject({ assertionRef: 'file:/var/run/secrets/tokens/iam' });
    expect(problems({ ...minted, keyRef: 'file:/k' })).toEqual(['keyRef: private_key_jwt does not use a key reference: remove it']);
    expect(problems({ ...minted, keyId: 'k1', signingAlg: 'ES256' })).toEqual([
      'keyId: assertionRef names an assertion the platform signed: the worker signs nothing, remove it',
      'signingAlg: assertionRef names an assertion the platform signed: the worker signs nothing, remove it',
    ]);
    expect(problems({ ...minted, authMethod: 'client_secret_basic', secretRef: 'env:S' })).toEqual([
      'assertionRef: client_secret_basic does not use a client assertion reference: remove it',
    ]);
    expect(problems({ ...minted, assertionRef: 'eyJhbGciOi.eyJpc3Mi.sig' })).toEqual([
      'assertionRef: must be env:NAME or file:/absolute/path or serviceaccount:<namespace>/<name> (the assertion itself never goes here)',
    ]);
  });

  test('the jwt-bearer grant: its assertion from assertionRef or signed with keyRef, the client authenticated by its method', () => {
    const base = { clientId: 'c', tokenUrl: TOKEN_URL, grant: 'jwt-bearer', secretRef: 'env:S' };
    expect(parseRegistration({ ...base, assertionRef: 'file:/run/assertion' })).toMatchObject({
      grant: 'jwt-bearer',
      authMethod: 'client_secret_basic',
      assertionRef: 'file:/run/assertion',
    });
    expect(parseRegistration({ ...base, keyRef: 'file:/k', assertionSubject: 'svc', signingAlg: 'ES256', keyId: 'k1' })).toMatchObject({
      keyRef: 'file:/k',
      assertionSubject: 'svc',
    });
    // private_key_jwt's key signs both assertions; with assertionRef, that one is the grant's.
    const keyJwt = { clientId: 'c', tokenUrl: TOKEN_URL, grant: 'jwt-bearer', authMethod: 'private_key_jwt', keyRef: 'file:/k' };
    expect(problems(keyJwt)).toEqual([]);
    expect(problems({ ...keyJwt, assertionRef: 'file:/run/assertion', keyId: 'k1' })).toEqual([]);

    expect(problems(base)).toEqual(['keyRef: the jwt-bearer grant needs assertionRef, or keyRef to sign its assertion']);
    expect(problems({ ...base, keyRefs: ['file:/k1', 'file:/k2'] })).toEqual([
      'keyRefs: the jwt-bearer grant signs with one key: use keyRef (keyRefs is for private_key_jwt)',
    ]);
    expect(problems({ ...base, keyRef: 'file:/k', signingAlg: 'HS256' })).toEqual([
      'signingAlg: the jwt-bearer assertion signs with RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA',
    ]);
    expect(problems({ ...base, assertionRef: 'file:/run/assertion', assertionSubject: 'svc' })).toEqual([
      'assertionSubject: assertionRef names an assertion the platform signed: remove it',
    ]);
    expect(problems({ ...base, authMethod: 'tls_client_auth', secretRef: undefined, certRef: 'file:/c', keyRef: 'file:/k' })).toEqual([
      'authMethod: the jwt-bearer grant authenticates the client with client_secret_basic, client_secret_post, private_key_jwt',
    ]);
    expect(problems({ ...base, grant: 'password', assertionRef: 'file:/a' })).toEqual([
      'grant: must be one of client_credentials, jwt-bearer',
    ]);
    expect(problems({ clientId: 'c', tokenUrl: TOKEN_URL, secretRef: 'env:S', assertionSubject: 'svc' })).toEqual([
      "assertionSubject: is the sub of the jwt-bearer grant's assertion: remove it, or set grant: jwt-bearer",
    ]);
    expect(problems({ ...base, assertionRef: 'file:/a', extraParams: { assertion: 'x' } })).toEqual([
      expect.stringMatching(/^extraParams: must not set .*assertion/),
    ]);
  });
});

describe('a clients file', () => {
  test("each client's mistakes are listed with its index, and an entry's tokenUrl replaces the defaults' issuer", () => {
    expect(
      fileProblems(
        [
          'defaults:',
          `  issuer: ${ISSUER}`,
          '  caRef: file:/run/tls/ca.pem',
          'clients:',
          '  - clientId: a',
          '    secretRef: env:A',
          '  - clientId: b',
          '    authMethod: private_key_jwt',
          '  - clientId: c',
          `    tokenUrl: ${TOKEN_URL}`,
          '    authMethod: self_signed_tls_client_auth',
          '    keyRef: file:/run/c.key',
          '    privateKey: "-----BEGIN PRIVATE KEY-----"',
          '',
        ].join('\n'),
      ),
    ).toEqual([
      'clients[1].keyRef: private_key_jwt needs a key reference',
      'clients[2].privateKey: secrets and keys never go in this file (Temporal shows registrations to every operator); use secretRef or keyRef: env:NAME or file:/absolute/path',
      'clients[2].certRef: self_signed_tls_client_auth needs a certificate reference',
    ]);
  });

  test('the new fields come through with the defaults merged', () => {
    const [registration] = parseClientsFile(
      [
        'defaults:',
        `  issuer: ${ISSUER}`,
        '  proxyUrl: http://proxy.internal:3128',
        'clients:',
        '  - clientId: a',
        '    authMethod: private_key_jwt',
        '    keyRef: file:/run/a.pem',
        '    keyId: a-2026',
        '    signingAlg: PS256',
        `    assertionAudience: ${ISSUER}`,
        '',
      ].join('\n'),
      'clients.yaml',
    );
    expect(registration).toEqual({
      clientId: 'a',
      issuer: ISSUER,
      proxyUrl: 'http://proxy.internal:3128',
      authMethod: 'private_key_jwt',
      keyRef: 'file:/run/a.pem',
      keyId: 'a-2026',
      signingAlg: 'PS256',
      assertionAudience: ISSUER,
    });
  });
});

describe('reconfigure changes', () => {
  const current: ClientRegistration = {
    clientId: 'c',
    tokenUrl: TOKEN_URL,
    authMethod: 'client_secret_basic',
    secretRef: 'env:S',
    scope: 'a',
  };

  test('merge over the registration, null removes a field, and the client ID stays', () => {
    const changed = applyRegistrationChanges(current, {
      tokenUrl: null,
      issuer: ISSUER,
      authMethod: 'private_key_jwt',
      secretRef: null,
      keyRef: 'file:/k',
    });
    expect(changed).toEqual({ clientId: 'c', issuer: ISSUER, authMethod: 'private_key_jwt', keyRef: 'file:/k', scope: 'a' });
    expect(parseRegistration(changed)).toEqual(changed);
    expect(iamUrlOf(changed)).toBe(ISSUER);
    expect(applyRegistrationChanges(current, { clientId: 'other' } as never).clientId).toBe('c');
  });

  test('an empty scope, extraParams or policy is kept as before null existed', () => {
    expect(applyRegistrationChanges(current, { scope: '', extraParams: {} })).toEqual({ ...current, scope: '', extraParams: {} });
  });
});
