/**
 * The four client authentication methods beyond a plain secret, end to end through the workflow
 * against panva's oidc-provider (a certified OpenID Provider that implements all of them): a
 * token in Redis, its renewal, and wrong credentials parked after exactly one request. The
 * provider serves HTTPS with a private CA (the registrations trust it with `caRef`) and asks every
 * client for a certificate, as an mTLS endpoint does (RFC 8705 §2). Keys and certificates are made
 * fresh for this run (test/support/test-pki.ts); none is committed.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startOidcProvider, type ClientAuthMethod, type OidcProviderClient, type OidcProviderFixture } from '../support/oidc-provider.js';
import { createTestPki, type IssuedCertificate, type TestPki } from '../support/test-pki.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { firstRenewal } from '../support/workflow-history.js';

const ROOT = join(import.meta.dirname, '..', '..');
const TTL_SECONDS = 3;
const SCOPE = 'api:read';
const JWT_SECRET = 'client-secret-jwt-s3cret-that-is-long-enough';
const WRONG_SECRET = 'not-the-client-secret-jwt-s3cret-at-all';
const ANY_TIME = expect.any(Number) as number;

interface Case {
  name: string;
  authMethod: ClientAuthMethod;
  clientId: string;
  /** The registration's credential fields, and those of a registration the provider refuses. */
  fields: () => Partial<ClientRegistration>;
  wrongFields: () => Partial<ClientRegistration>;
}

let pki: TestPki;
let keyDir: string;
let provider: OidcProviderFixture;
let stack: TokenStack;
const keyPems: Record<string, string> = {};
const tokensSeen: string[] = [];
let tlsClient: IssuedCertificate;
let tlsWrongSubject: IssuedCertificate;
let selfSigned: IssuedCertificate;
let selfSignedUnregistered: IssuedCertificate;

const run = promisify(execFile);

/** Writes a private key as PEM (or JWK) to a file and returns its reference. */
async function keyFile(
  name: string,
  key: KeyObject,
  form: 'pem' | 'jwk' = 'pem',
  extra: Record<string, unknown> = {},
): Promise<`file:${string}`> {
  const text =
    form === 'pem'
      ? (key.export({ format: 'pem', type: 'pkcs8' }) as string)
      : JSON.stringify({ ...key.export({ format: 'jwk' }), ...extra });
  const path = join(keyDir, name);
  await writeFile(path, text, { mode: 0o600 });
  keyPems[name] = text;
  return `file:${path}`;
}

/** The public JWK Set `tokenctl jwks` prints for references: what an operator pastes into the IAM. */
async function tokenctlJwks(...args: string[]): Promise<{ keys: Array<Record<string, unknown>> }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'cli/tokenctl.ts', 'jwks', ...args], { cwd: ROOT, timeout: 60_000 });
  return JSON.parse(stdout) as { keys: Array<Record<string, unknown>> };
}

const es256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rs256 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ps256 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const unregistered = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const refs: Record<string, `file:${string}`> = {};

const CASES: Case[] = [
  {
    name: 'client_secret_jwt (HS256 with the client secret)',
    authMethod: 'client_secret_jwt',
    clientId: 'conformance-secret-jwt',
    fields: () => ({ secretRef: 'env:JWT_SECRET' }),
    wrongFields: () => ({ secretRef: 'env:WRONG_SECRET' }),
  },
  {
    name: 'private_key_jwt with an ES256 JWK naming its kid',
    authMethod: 'private_key_jwt',
    clientId: 'conformance-es256',
    fields: () => ({ keyRef: refs.es256! }),
    wrongFields: () => ({ keyRef: refs.unregistered! }),
  },
  {
    name: 'private_key_jwt with an RS256 PEM, kid its thumbprint',
    authMethod: 'private_key_jwt',
    clientId: 'conformance-rs256',
    fields: () => ({ keyRef: refs.rs256! }),
    wrongFields: () => ({ keyRef: refs.unregisteredPem! }),
  },
  {
    name: 'private_key_jwt with PS256 and a registered keyId',
    authMethod: 'private_key_jwt',
    clientId: 'conformance-ps256',
    fields: () => ({ keyRef: refs.ps256!, signingAlg: 'PS256', keyId: 'ps256-key-1' }),
    wrongFields: () => ({ keyRef: refs.unregisteredRsa!, signingAlg: 'PS256', keyId: 'ps256-key-1' }),
  },
  {
    name: 'tls_client_auth with a certificate of the private CA',
    authMethod: 'tls_client_auth',
    clientId: 'conformance-tls',
    fields: () => ({ certRef: `file:${tlsClient.certPath}`, keyRef: `file:${tlsClient.keyPath}` }),
    wrongFields: () => ({ certRef: `file:${tlsWrongSubject.certPath}`, keyRef: `file:${tlsWrongSubject.keyPath}` }),
  },
  {
    name: 'self_signed_tls_client_auth with a registered certificate',
    authMethod: 'self_signed_tls_client_auth',
    clientId: 'conformance-self-signed',
    fields: () => ({ certRef: `file:${selfSigned.certPath}`, keyRef: `file:${selfSigned.keyPath}` }),
    wrongFields: () => ({ certRef: `file:${selfSignedUnregistered.certPath}`, keyRef: `file:${selfSignedUnregistered.keyPath}` }),
  },
];

const rejectedId = (c: Case) => `${c.clientId}-rejected`;

beforeAll(async () => {
  pki = await createTestPki();
  keyDir = await mkdtemp(join(tmpdir(), 'conformance-keys-'));
  const [server, client, wrongSubject, self, selfOther] = await Promise.all([
    pki.serverCertificate(),
    pki.clientCertificate('conformance-tls'),
    pki.clientCertificate('someone-else'),
    pki.selfSignedCertificate('conformance-self-signed'),
    pki.selfSignedCertificate('conformance-self-signed'),
  ]);
  tlsClient = client;
  tlsWrongSubject = wrongSubject;
  selfSigned = self;
  selfSignedUnregistered = selfOther;

  refs.es256 = await keyFile('es256.jwk', es256.privateKey, 'jwk', { kid: 'es256-key-1' });
  refs.rs256 = await keyFile('rs256.pem', rs256.privateKey);
  refs.ps256 = await keyFile('ps256.pem', ps256.privateKey);
  refs.unregistered = await keyFile('unregistered.jwk', unregistered.privateKey, 'jwk', { kid: 'es256-key-1' });
  refs.unregisteredPem = await keyFile('unregistered.pem', unregistered.privateKey);
  refs.unregisteredRsa = await keyFile('unregistered-rsa.pem', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);

  const [rs256Jwks, selfSignedJwks] = await Promise.all([tokenctlJwks(refs.rs256), tokenctlJwks(`file:${selfSigned.certPath}`)]);
  // The thumbprint tokenctl prints is the kid the worker sends.
  expect(rs256Jwks.keys[0]!.kid).toBe(await calculateJwkThumbprint(await exportJWK(rs256.publicKey)));
  expect(selfSignedJwks.keys[0]!.x5c).toHaveLength(1);
  const jwks: Record<string, { keys: Array<Record<string, unknown>> }> = {
    'conformance-es256': { keys: [{ ...(await exportJWK(es256.publicKey)), kid: 'es256-key-1', alg: 'ES256', use: 'sig' }] },
    'conformance-rs256': rs256Jwks,
    'conformance-ps256': { keys: [{ ...(await exportJWK(ps256.publicKey)), kid: 'ps256-key-1', alg: 'PS256', use: 'sig' }] },
    'conformance-self-signed': selfSignedJwks,
  };
  const clientsFor = (c: Case, clientId: string): OidcProviderClient => ({
    clientId,
    authMethod: c.authMethod,
    ...(c.authMethod === 'client_secret_jwt' && { clientSecret: JWT_SECRET }),
    ...(jwks[c.clientId] !== undefined && { jwks: jwks[c.clientId] }),
    ...(c.authMethod === 'tls_client_auth' && { tlsClientAuthSubjectDn: tlsClient.subject }),
  });
  provider = await startOidcProvider({
    accessTokenTtlSeconds: TTL_SECONDS,
    tls: { cert: server.cert, key: server.key, clientCa: pki.ca.cert },
    clients: CASES.flatMap((c) => [clientsFor(c, c.clientId), clientsFor(c, rejectedId(c))]),
  });
  stack = await startTokenStack({ env: { JWT_SECRET, WRONG_SECRET } });
});

afterAll(async () => {
  await stack?.stop();
  await provider?.close();
  await pki?.remove();
  if (keyDir !== undefined) await rm(keyDir, { recursive: true, force: true });
});

function registration(c: Case, clientId: string, fields: Partial<ClientRegistration>): ClientRegistration {
  return { clientId, tokenUrl: provider.tokenUrl, authMethod: c.authMethod, caRef: `file:${pki.ca.certPath}`, scope: SCOPE, ...fields };
}

async function tokenWithGenerationAbove(clientId: string, generation: number, timeoutMs: number): Promise<Record<string, string>> {
  const token = await eventually(
    async () => {
      const hash = await stack.redis.hgetall(tokenKey('oauth:', clientId));
      return Number(hash.generation ?? 0) > generation ? hash : undefined;
    },
    timeoutMs,
    `${clientId} generation > ${generation}`,
  );
  tokensSeen.push(token.access_token!);
  return token;
}

describe.each(CASES)('$name against oidc-provider', (c) => {
  test('the token lands in Redis after one accepted request and is renewed with a fresh client authentication', async () => {
    await stack.admin.register(registration(c, c.clientId, c.fields()));

    const first = await tokenWithGenerationAbove(c.clientId, 0, 30_000);
    expect(first).toMatchObject({ token_type: 'Bearer', scope: SCOPE, generation: '1', client_id: c.clientId });
    const second = await tokenWithGenerationAbove(c.clientId, 1, TTL_SECONDS * 1000 + 30_000);
    expect(second.access_token).not.toBe(first.access_token);

    const requests = provider.requests.filter((request) => request.clientId === c.clientId);
    expect(requests.slice(0, 2).map(({ authMethod, status }) => ({ authMethod, status }))).toEqual([
      { authMethod: c.authMethod, status: 200 },
      { authMethod: c.authMethod, status: 200 },
    ]);
    if (c.authMethod === 'client_secret_jwt' || c.authMethod === 'private_key_jwt') {
      // A fresh assertion per request: the provider refuses a reused jti (RFC 7523 §3), and each
      // lives at most 60 s.
      const [one, two] = requests.map((request) => request.assertion!);
      expect(one!.jti).not.toBe(two!.jti);
      for (const assertion of [one!, two!]) {
        expect(Number(assertion.exp) - Number(assertion.iat)).toBeLessThanOrEqual(60);
        expect(assertion.aud).toBe(provider.tokenUrl);
      }
    }
    const renewal = await firstRenewal(stack.client, workflowIdFor(c.clientId), TTL_SECONDS);
    expect(renewal.fraction).toBeGreaterThanOrEqual(0.8);
    expect(renewal.fraction).toBeLessThanOrEqual(0.85);
    expect(await stack.admin.status(c.clientId)).toMatchObject({ state: 'active', consecutiveFailures: 0, lastError: null });
  });

  test('a wrong key, certificate or secret parks the workflow in credentials_rejected after exactly one request', async () => {
    const clientId = rejectedId(c);
    await stack.admin.register(registration(c, clientId, c.wrongFields()));

    const status = await eventually(
      async () => {
        const s = await stack.admin.status(clientId);
        return s.state === 'credentials_rejected' ? s : undefined;
      },
      30_000,
      `${clientId} credentials_rejected`,
    );
    expect(status.lastError).toMatchObject({ kind: 'credentials_rejected', status: 401, oauthError: 'invalid_client' });
    // Only a kid the worker derived gets the hint: the IAM may know the key under another name.
    const derivedKid =
      c.authMethod === 'private_key_jwt' && c.wrongFields().keyId === undefined && !c.wrongFields().keyRef!.endsWith('.jwk');
    expect(status.lastError!.message.includes('is the RFC 7638 thumbprint of the key'), status.lastError!.message).toBe(derivedKid);
    if (derivedKid) expect(status.lastError!.message).toContain('set keyId to it');
    // Nothing more is sent: retrying rejected credentials is what gets an IP blocked.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const requests = provider.requests.filter((request) => request.clientId === clientId);
    expect(requests.map(({ at, authMethod, status, error }) => ({ at, authMethod, status, error }))).toEqual([
      { at: ANY_TIME, authMethod: c.authMethod, status: 401, error: 'invalid_client' },
    ]);
    expect(await stack.redis.exists(tokenKey('oauth:', clientId))).toBe(0);
  });
});

test('no workflow history holds a secret, a private key, a certificate key or a token', async () => {
  const workflowIds = CASES.flatMap((c) => [workflowIdFor(c.clientId), workflowIdFor(rejectedId(c))]);
  const privateKeys = [
    ...Object.values(keyPems),
    ...[tlsClient, tlsWrongSubject, selfSigned, selfSignedUnregistered].map((certificate) => certificate.key),
    // A JWK's private member on its own.
    ...[es256, unregistered].map(({ privateKey }) => privateKey.export({ format: 'jwk' }).d!),
  ];
  expect(tokensSeen.length).toBeGreaterThanOrEqual(CASES.length * 2);
  await expectNoSecretsInHistories(stack.client, workflowIds, [JWT_SECRET, WRONG_SECRET, ...privateKeys, ...tokensSeen]);
});
