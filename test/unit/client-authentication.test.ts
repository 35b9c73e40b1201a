/**
 * Client authentication of one token request (activities/request-credentials.ts and
 * activities/token-endpoint.ts): credentials resolved from references for each request, JWT
 * assertions as RFC 7523 and OpenID Connect Core §9 want them, against the IAM emulator in
 * process, and the token's own `exp` (docs/design.md, "Token expiry").
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tokenLifetime } from '../../activities/acquire-token.js';
import { TokenEndpointError } from '../../activities/errors.js';
import { SecretUnavailableError } from '../../shared/secret-unavailable-error.js';
import { Secret } from '../../shared/references.js';
import { credentialMac, resolveRequestCredentials, type CredentialFields } from '../../activities/request-credentials.js';
import {
  ASSERTION_LIFETIME_SECONDS,
  clientAuthentication,
  clientCredentialsGrantRequest,
  jwtExpiry,
  requestToken,
  type ClientCredentialsRequest,
} from '../../activities/token-endpoint.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';

const SECRET = 'client-secret-jwt-value-long-enough-for-hs256';
const keys = {
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ed25519: generateKeyPairSync('ed25519'),
  other: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
};

let iam: IamEmulator;
let dir: string;

const thumbprint = async (key: KeyObject) => calculateJwkThumbprint(await exportJWK(key));
const publicJwk = async (key: KeyObject, kid?: string) => ({ ...(await exportJWK(key)), kid: kid ?? (await thumbprint(key)) });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'client-auth-'));
  iam = await startIamEmulator({
    clients: [
      { clientId: 'secret-jwt', clientSecret: SECRET, authMethod: 'client_secret_jwt' },
      {
        clientId: 'key-jwt',
        authMethod: 'private_key_jwt',
        jwks: {
          keys: [
            await publicJwk(keys.rsa.publicKey),
            await publicJwk(keys.rsa.publicKey, 'rsa-by-registration'),
            await publicJwk(keys.p256.publicKey),
            await publicJwk(keys.ed25519.publicKey, 'ed-from-jwk'),
          ],
        },
      },
    ],
  });
});

afterAll(async () => {
  await iam?.close();
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string): Promise<`file:${string}`> {
  const path = join(dir, name);
  await writeFile(path, content);
  return `file:${path}`;
}

async function request(fields: CredentialFields, env: Record<string, string> = {}): Promise<ClientCredentialsRequest> {
  return { ...(await resolveRequestCredentials(fields, env)), tokenUrl: iam.tokenUrl(), timeoutMs: 5_000 };
}

describe('private_key_jwt', () => {
  test.each([
    [
      'an RSA key in PKCS #1 PEM signs RS256',
      () => keys.rsa.privateKey.export({ format: 'pem', type: 'pkcs1' }) as string,
      undefined,
      'RS256',
    ],
    [
      'an RSA key in PKCS #8 PEM signs PS256 when the registration says so',
      () => keys.rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      'PS256',
      'PS256',
    ],
    [
      'an EC P-256 key in SEC 1 PEM signs ES256',
      () => keys.p256.privateKey.export({ format: 'pem', type: 'sec1' }) as string,
      undefined,
      'ES256',
    ],
    [
      'an Ed25519 JWK signs EdDSA with its own kid',
      () => JSON.stringify({ ...keys.ed25519.privateKey.export({ format: 'jwk' }), kid: 'ed-from-jwk' }),
      undefined,
      'EdDSA',
    ],
  ] as const)('%s, and the IAM accepts it', async (name, text, signingAlg, alg) => {
    const keyRef = await file(name.replace(/\W+/g, '-'), text());
    const issued = await requestToken(
      await request({ clientId: 'key-jwt', authMethod: 'private_key_jwt', keyRef, ...(signingAlg && { signingAlg }) }),
    );

    expect(issued.tokenType).toBe('Bearer');
    const [entry] = iam.requestsFor('key-jwt').slice(-1);
    expect(entry).toMatchObject({ authMethod: 'private_key_jwt', outcome: 'issued', assertion: { alg } });
  });

  test('the kid is the registration keyId, else the JWK kid, else the RFC 7638 thumbprint of the public key', async () => {
    const pem = keys.rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    const keyRef = await file('kid.pem', pem);
    const byThumbprint = await resolveRequestCredentials({ clientId: 'key-jwt', authMethod: 'private_key_jwt', keyRef });
    const byRegistration = await resolveRequestCredentials({
      clientId: 'key-jwt',
      authMethod: 'private_key_jwt',
      keyRef,
      keyId: 'rsa-by-registration',
    });

    expect(byThumbprint.signingKey).toMatchObject({ alg: 'RS256', kid: await thumbprint(keys.rsa.publicKey) });
    expect(byRegistration.signingKey).toMatchObject({ alg: 'RS256', kid: 'rsa-by-registration' });
    await requestToken({ ...byRegistration, tokenUrl: iam.tokenUrl() });
    expect(iam.requestsFor('key-jwt').slice(-1)[0]).toMatchObject({ outcome: 'issued', assertion: { kid: 'rsa-by-registration' } });
  });

  test('an unknown key is refused as credentials_rejected, and the error shows neither the assertion nor the key', async () => {
    const pem = keys.other.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    const keyRef = await file('other.pem', pem);
    const tokenRequest = await request({ clientId: 'key-jwt', authMethod: 'private_key_jwt', keyRef });
    const authentication = await clientAuthentication(tokenRequest);
    const error = (await requestToken(tokenRequest).catch((e: unknown) => e)) as TokenEndpointError;

    expect(error).toBeInstanceOf(TokenEndpointError);
    expect(error).toMatchObject({ kind: 'credentials_rejected', details: { status: 401, oauthError: 'invalid_client' } });
    for (const text of [error.message, inspect(error, { showHidden: true, depth: Infinity }), JSON.stringify(error)]) {
      expect(text).not.toContain(authentication.params.client_assertion!.slice(0, 40));
      expect(text).not.toContain(pem.split('\n')[1]);
    }
  });

  test('a refused assertion whose kid was derived says so and names keyId; one with keyId or a JWK kid does not', async () => {
    const pem = keys.other.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    const keyRef = await file('derived-kid.pem', pem);
    const jwkRef = await file('derived-kid.jwk', JSON.stringify({ ...keys.other.privateKey.export({ format: 'jwk' }), kid: 'jwk-kid' }));
    const refusal = async (fields: Partial<CredentialFields>) =>
      (
        (await requestToken(await request({ clientId: 'key-jwt', authMethod: 'private_key_jwt', keyRef, ...fields })).catch(
          (e: unknown) => e,
        )) as Error
      ).message;

    expect(await refusal({})).toMatch(
      new RegExp(
        `^Token endpoint answered 401 invalid_client.*; the assertion's kid ${await thumbprint(keys.other.publicKey)} is the RFC 7638 thumbprint of the key, derived because neither keyId nor the JWK names one: if the IAM registered the key under another kid, set keyId to it$`,
      ),
    );
    expect(await refusal({ keyId: 'registered-kid' })).not.toContain('thumbprint');
    expect(await refusal({ keyRef: jwkRef })).not.toContain('thumbprint');
  });
});

describe('client assertions (RFC 7523 §3)', () => {
  test('two consecutive requests never reuse a jti, and each assertion lives at most 60 s with iss = sub = the client ID and aud = the token endpoint', async () => {
    const tokenRequest = await request({ clientId: 'secret-jwt', authMethod: 'client_secret_jwt', secretRef: 'env:S' }, { S: SECRET });
    await requestToken(tokenRequest);
    await requestToken(tokenRequest);

    const assertions = iam
      .requestsFor('secret-jwt')
      .slice(-2)
      .map((entry) => entry.assertion!);
    expect(assertions.map((assertion) => assertion.alg)).toEqual(['HS256', 'HS256']);
    expect(new Set(assertions.map((assertion) => assertion.jti)).size).toBe(2);
    for (const assertion of assertions) {
      expect(assertion).toMatchObject({ iss: 'secret-jwt', sub: 'secret-jwt', aud: iam.tokenUrl() });
      expect(assertion.exp! - assertion.iat!).toBeLessThanOrEqual(60);
      expect(assertion.exp! * 1000).toBeLessThanOrEqual(Date.now() + 60_000);
    }
    expect(ASSERTION_LIFETIME_SECONDS).toBeLessThanOrEqual(60);
  });

  test('the form carries client_id, client_assertion_type and client_assertion, and no secret', async () => {
    const tokenRequest = await request({ clientId: 'secret-jwt', authMethod: 'client_secret_jwt', secretRef: 'env:S' }, { S: SECRET });
    const { params, headers } = await clientAuthentication(tokenRequest);

    expect(Object.keys(params).sort()).toEqual(['client_assertion', 'client_assertion_type', 'client_id']);
    expect(params.client_assertion_type).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    expect(headers).toEqual({});
    expect(JSON.stringify(params)).not.toContain(SECRET);
  });

  test('assertionAudience replaces the token endpoint in aud, e.g. with the issuer', async () => {
    const issuer = `${iam.url}/realms/demo`;
    await requestToken({
      ...(await request({ clientId: 'secret-jwt', authMethod: 'client_secret_jwt', secretRef: 'env:S' }, { S: SECRET })),
      assertionAudience: issuer,
    });
    expect(iam.requestsFor('secret-jwt').slice(-1)[0]).toMatchObject({ outcome: 'issued', assertion: { aud: issuer } });
  });

  test('an assertion sent twice is refused the second time by an IAM that checks jti', async () => {
    const tokenRequest = await request({ clientId: 'secret-jwt', authMethod: 'client_secret_jwt', secretRef: 'env:S' }, { S: SECRET });
    const authentication = await clientAuthentication(tokenRequest);
    const first = await clientCredentialsGrantRequest(tokenRequest, authentication);
    const replayed = await clientCredentialsGrantRequest(tokenRequest, authentication);

    expect([first.status, replayed.status]).toEqual([200, 401]);
    expect(replayed.body).toContain('Token reuse detected');
  });

  test('a wrong client secret is credentials_rejected', async () => {
    const error = await requestToken(
      await request({ clientId: 'secret-jwt', authMethod: 'client_secret_jwt', secretRef: 'env:S' }, { S: 'not-the-secret-at-all' }),
    ).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'credentials_rejected', details: { status: 401, oauthError: 'invalid_client' } });
  });
});

describe('the credentials of one request', () => {
  const unavailable = async (fields: CredentialFields, env: Record<string, string> = {}) => {
    const error = await resolveRequestCredentials(fields, env).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretUnavailableError);
    return (error as Error).message;
  };

  test('each problem names the field and the reference, never the value', async () => {
    const notAKey = await file('not-a-key', 'S3CRET-looking-text');
    const ecKey = await file('ec.pem', keys.p256.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    const publicOnly = await file('public.jwk', JSON.stringify(keys.p256.publicKey.export({ format: 'jwk' })));

    expect(await unavailable({ clientId: 'c', authMethod: 'private_key_jwt', keyRef: 'file:/nonexistent/key.pem' })).toBe(
      'keyRef: file:/nonexistent/key.pem could not be read: ENOENT',
    );
    expect(await unavailable({ clientId: 'c', authMethod: 'private_key_jwt', keyRef: notAKey })).toBe(
      `keyRef: ${notAKey} is not a private key in PEM (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) or JWK form`,
    );
    expect(await unavailable({ clientId: 'c', authMethod: 'private_key_jwt', keyRef: publicOnly })).toBe(
      `keyRef: ${publicOnly} is not a private JWK (it needs the private members, e.g. "d")`,
    );
    expect(await unavailable({ clientId: 'c', authMethod: 'private_key_jwt', keyRef: ecKey, signingAlg: 'RS256' })).toBe(
      `keyRef: ${ecKey} is an EC prime256v1 key: it cannot sign RS256`,
    );
    expect(await unavailable({ clientId: 'c', authMethod: 'client_secret_jwt', secretRef: 'env:S' })).toBe('secretRef: env:S is not set');
    expect(await unavailable({ clientId: 'c', authMethod: 'private_key_jwt' })).toBe('keyRef: private_key_jwt needs a key reference');
    expect(await unavailable({ clientId: 'c', authMethod: 'client_secret_basic', secretRef: 'env:S', caRef: notAKey }, { S: 'x' })).toBe(
      `caRef: ${notAKey} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
    );
  });

  test('a minted assertion is sent as it is; unreadable, malformed, expired or about to expire, it names the reference and its expiry', async () => {
    const now = Math.floor(Date.now() / 1000);
    const mint = (claims: Record<string, unknown>) =>
      new SignJWT({ iss: 'c', sub: 'c', aud: iam.tokenUrl(), ...claims }).setProtectedHeader({ alg: 'ES256' }).sign(keys.p256.privateKey);
    const valid = await mint({ exp: now + 3600 });
    const assertionRef = await file('minted.jwt', `${valid}\n`);
    const credentials = await resolveRequestCredentials({ clientId: 'c', authMethod: 'private_key_jwt', assertionRef });
    expect(credentials.signingKey).toBeUndefined();
    expect(credentials.mintedAssertion).toMatchObject({
      identity: { iss: 'c', sub: 'c', aud: iam.tokenUrl() },
      expiresAt: (now + 3600) * 1000,
    });
    const authentication = await clientAuthentication({ ...credentials, tokenUrl: iam.tokenUrl() });
    expect(authentication.params).toEqual({
      client_id: 'c',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: valid,
    });
    expect(authentication.sensitive).toContain(valid);
    expect(inspect(credentials, { depth: Infinity })).not.toContain(valid);

    const minted = async (content: string) =>
      unavailable({ clientId: 'c', authMethod: 'private_key_jwt', assertionRef: await file('minted-bad.jwt', content) });
    const ref = `file:${join(dir, 'minted-bad.jwt')}`;
    const at = (seconds: number) => new Date(seconds * 1000).toISOString();
    expect(await unavailable({ clientId: 'c', authMethod: 'private_key_jwt', assertionRef: 'file:/nonexistent/token' })).toBe(
      'assertionRef: file:/nonexistent/token could not be read: ENOENT',
    );
    expect(await minted('not-a-jwt')).toBe(`assertionRef: ${ref} holds no JWT (header.payload.signature, base64url)`);
    expect(await minted(await mint({}))).toBe(`assertionRef: the assertion in ${ref} has no exp claim`);
    expect(await minted(await mint({ exp: now - 5 }))).toBe(
      `assertionRef: the assertion in ${ref} expired at ${at(now - 5)}; whatever writes it has not rotated it`,
    );
    expect(await minted(await mint({ exp: now + 5 }))).toBe(
      `assertionRef: the assertion in ${ref} expires at ${at(now + 5)}, too soon to send; whatever writes it has not rotated it`,
    );
  });

  test('the credential MAC of a minted assertion is its identity: equal across rotations, different for another subject', async () => {
    const now = Math.floor(Date.now() / 1000);
    const macOf = async (claims: Record<string, unknown>) => {
      const jwt = await new SignJWT({ iss: 'https://kubernetes.default.svc', aud: 'iam', exp: now + 3600, ...claims })
        .setProtectedHeader({ alg: 'ES256' })
        .setJti(crypto.randomUUID())
        .sign(keys.p256.privateKey);
      const assertionRef = await file('identity.jwt', jwt);
      return credentialMac(await resolveRequestCredentials({ clientId: 'c', authMethod: 'private_key_jwt', assertionRef }), 'mac-key');
    };
    const first = await macOf({ sub: 'system:serviceaccount:billing:worker' });
    expect(await macOf({ sub: 'system:serviceaccount:billing:worker', exp: now + 7200 })).toBe(first);
    expect(await macOf({ sub: 'system:serviceaccount:orders:worker' })).not.toBe(first);
    expect(await macOf({ sub: 'system:serviceaccount:billing:worker', aud: 'another-iam' })).not.toBe(first);
  });

  test('a key file rewritten on disk is read again: the next request signs with the new key', async () => {
    const keyRef = await file('rotating.pem', keys.rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    const before = await resolveRequestCredentials({ clientId: 'c', authMethod: 'private_key_jwt', keyRef });
    await writeFile(keyRef.slice('file:'.length), keys.p256.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const after = await resolveRequestCredentials({ clientId: 'c', authMethod: 'private_key_jwt', keyRef });

    expect(before.signingKey).toMatchObject({ alg: 'RS256', kid: await thumbprint(keys.rsa.publicKey) });
    expect(after.signingKey).toMatchObject({ alg: 'ES256', kid: await thumbprint(keys.p256.publicKey) });
  });

  test('the credential MAC is equal for the same key in any form, differs for another secret or MAC key, and shows no secret', async () => {
    const pem = await file('mac.pem', keys.p256.privateKey.export({ format: 'pem', type: 'sec1' }) as string);
    const jwk = await file('mac.jwk', JSON.stringify(keys.p256.privateKey.export({ format: 'jwk' })));
    const macKey = Buffer.from('worker-mac-key');
    const mac = async (fields: CredentialFields, env: Record<string, string> = {}, key = macKey) =>
      credentialMac(await resolveRequestCredentials(fields, env), key);

    expect(await mac({ clientId: 'c', authMethod: 'private_key_jwt', keyRef: pem })).toBe(
      await mac({ clientId: 'c', authMethod: 'private_key_jwt', keyRef: jwk }),
    );
    const secretMac = await mac({ clientId: 'c', authMethod: 'client_secret_basic', secretRef: 'env:S' }, { S: SECRET });
    expect(secretMac).toMatch(/^[0-9a-f]{64}$/);
    expect(secretMac).not.toBe(await mac({ clientId: 'c', authMethod: 'client_secret_basic', secretRef: 'env:S' }, { S: `${SECRET}2` }));
    expect(secretMac).not.toBe(await mac({ clientId: 'c', authMethod: 'client_secret_post', secretRef: 'env:S' }, { S: SECRET }));
    expect(secretMac).not.toBe(
      await mac({ clientId: 'c', authMethod: 'client_secret_basic', secretRef: 'env:S' }, { S: SECRET }, Buffer.from('other')),
    );
  });

  test('resolved credentials print no secret and no key', async () => {
    const keyRef = await file('print.pem', keys.rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    const credentials = await resolveRequestCredentials({ clientId: 'c', authMethod: 'private_key_jwt', keyRef });
    const secretCredentials = await resolveRequestCredentials(
      { clientId: 'c', authMethod: 'client_secret_jwt', secretRef: 'env:S' },
      { S: SECRET },
    );
    const printed = [
      inspect(credentials, { depth: Infinity }),
      JSON.stringify(credentials),
      inspect(secretCredentials, { depth: Infinity }),
      JSON.stringify(secretCredentials),
    ];
    const pemBody = (keys.rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string).split('\n')[1]!;
    for (const text of printed) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(pemBody);
    }
    expect(new Secret(SECRET).toString()).toBe('[redacted]');
  });
});

describe("the token's own expiry", () => {
  const start = Date.UTC(2026, 0, 1);
  const jwt = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new Uint8Array(32));

  test('jwtExpiry decodes exp of a JWT and nothing of an opaque or encrypted token', async () => {
    expect(jwtExpiry(await jwt({ exp: 1_800_000_000 }))).toBe(1_800_000_000_000);
    expect(jwtExpiry(await jwt({ sub: 'no-exp' }))).toBeUndefined();
    expect(jwtExpiry('opaque-token-value')).toBeUndefined();
    expect(jwtExpiry('a.b.c.d.e')).toBeUndefined();
    expect(jwtExpiry('not.a.jwt')).toBeUndefined();
  });

  test.each([
    ['exp earlier than expires_in caps the lifetime', { expiresInSeconds: 300, jwtExpiresAt: start + 60_000 }, start + 60_000],
    ['expires_in earlier than exp is kept', { expiresInSeconds: 60, jwtExpiresAt: start + 300_000 }, start + 60_000],
    [
      'without expires_in, exp gives the lifetime before the default',
      { expiresInSeconds: undefined, jwtExpiresAt: start + 120_000 },
      start + 120_000,
    ],
    ['with neither, the default', { expiresInSeconds: undefined, jwtExpiresAt: undefined }, start + 300_000],
  ] as const)('%s, counted from the request start', (_name, response, expiresAt) => {
    expect(tokenLifetime({ ...response, requestStartedAt: start }, 300)).toEqual({
      expiresAt,
      expiresInSeconds: (expiresAt - start) / 1000,
    });
  });

  test('an exp that is not after the request start is malformed_response', () => {
    expect(() => tokenLifetime({ expiresInSeconds: 300, jwtExpiresAt: start - 5_000, requestStartedAt: start }, 300)).toThrow(
      expect.objectContaining({ kind: 'malformed_response' }),
    );
  });

  test('an issued JWT reports its exp with the token response', async () => {
    const issued = await requestToken(
      await request({ clientId: 'secret-jwt', authMethod: 'client_secret_jwt', secretRef: 'env:S' }, { S: SECRET }),
    );
    expect(issued.jwtExpiresAt).toBeGreaterThanOrEqual(issued.requestStartedAt + 300_000);
    expect(issued.jwtExpiresAt).toBeLessThanOrEqual(issued.receivedAt + 301_000);
  });
});
