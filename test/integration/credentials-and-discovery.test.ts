/**
 * What a registration's references and issuer mean over time, through the workflow against the
 * IAM emulator: a secret or key file rewritten on disk is used from the next request on without a
 * restart (docs/design.md, "References"), a JWT's `exp` caps the token's lifetime (docs/design.md,
 * "Token expiry"), and a registration by issuer finds its token endpoint (docs/design.md,
 * "Discovery"). Lifetimes of a few seconds stand in for the IAM's 300 s.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { eventually, startTokenStack, tokenAfterGeneration, type TokenStack } from '../support/token-stack.js';
import { historyEvents, issuedTokenMetadata, scheduledRenewals } from '../support/workflow-history.js';

const OLD_SECRET = 'rotation-old-secret-0d1e2f';
const NEW_SECRET = 'rotation-new-secret-9a8b7c';
const ISSUER_SECRET = 'issuer-client-secret-5e6f7a';
const EXPIRY_SECRET = 'expiry-client-secret-1b2c3d';

let iam: IamEmulator;
let stack: TokenStack;
let dir: string;
const oldKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const newKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = (key: KeyObject) => key.export({ format: 'pem', type: 'pkcs8' }) as string;
const publicJwk = async (key: KeyObject) => ({ ...(await exportJWK(key)), kid: await calculateJwkThumbprint(await exportJWK(key)) });

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: 3,
    clients: [
      { clientId: 'rotate-secret', clientSecret: OLD_SECRET },
      { clientId: 'rotate-key', authMethod: 'private_key_jwt', jwks: { keys: [await publicJwk(oldKey.publicKey)] } },
      { clientId: 'by-issuer', clientSecret: ISSUER_SECRET, authMethod: 'client_secret_jwt' },
      { clientId: 'jwt-exp', clientSecret: EXPIRY_SECRET },
    ],
  });
  dir = await mkdtemp(join(tmpdir(), 'credentials-test-'));
  stack = await startTokenStack({ env: { ISSUER_SECRET, EXPIRY_SECRET } });
});

afterAll(async () => {
  await stack?.stop();
  await iam?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Replaces a file the way a Kubernetes secret mount does: a new file renamed over the old one. */
async function replaceFile(path: string, content: string): Promise<void> {
  await writeFile(`${path}.new`, content, { mode: 0o600 });
  await rename(`${path}.new`, path);
}

const tokens: string[] = [];

describe('rotation without a restart', () => {
  test('a secret file rewritten between two renewals is used from the next request on, and the IAM accepts only the new one', async () => {
    const path = join(dir, 'rotate-secret');
    await writeFile(path, `${OLD_SECRET}\n`, { mode: 0o600 });
    await stack.admin.register({
      clientId: 'rotate-secret',
      tokenUrl: iam.tokenUrl(),
      authMethod: 'client_secret_basic',
      secretRef: `file:${path}`,
    });
    const first = await tokenAfterGeneration(stack, 'rotate-secret', 0);

    // The IAM rotates (Keycloak: the new secret, old one revoked) and the mount is updated.
    await replaceFile(path, `${NEW_SECRET}\n`);
    iam.setClientSecret('rotate-secret', NEW_SECRET);
    const second = await tokenAfterGeneration(stack, 'rotate-secret', 1);
    tokens.push(first.access_token!, second.access_token!);

    expect(iam.requestsFor('rotate-secret').map((entry) => entry.outcome)).toEqual(['issued', 'issued']);
    expect((await stack.admin.status('rotate-secret')).state).toBe('active');
  });

  test('a key file rewritten between two renewals signs the next assertion, and the IAM knows only the new key', async () => {
    const path = join(dir, 'rotate-key.pem');
    await writeFile(path, pem(oldKey.privateKey), { mode: 0o600 });
    await stack.admin.register({ clientId: 'rotate-key', tokenUrl: iam.tokenUrl(), authMethod: 'private_key_jwt', keyRef: `file:${path}` });
    const first = await tokenAfterGeneration(stack, 'rotate-key', 0);

    await replaceFile(path, pem(newKey.privateKey));
    iam.updateClient('rotate-key', { jwks: { keys: [await publicJwk(newKey.publicKey)] } });
    const second = await tokenAfterGeneration(stack, 'rotate-key', 1);
    tokens.push(first.access_token!, second.access_token!);

    const requests = iam.requestsFor('rotate-key');
    expect(requests.map((entry) => [entry.authMethod, entry.outcome])).toEqual([
      ['private_key_jwt', 'issued'],
      ['private_key_jwt', 'issued'],
    ]);
    // The kid is the key's thumbprint: it names the key that signed.
    expect(requests.map((entry) => entry.assertion?.kid)).toEqual([
      (await publicJwk(oldKey.publicKey)).kid,
      (await publicJwk(newKey.publicKey)).kid,
    ]);
  });
});

describe("the token's own expiry", () => {
  test('a JWT whose exp is earlier than expires_in is renewed before its exp, and its Redis key expires no later than exp', async () => {
    // expires_in says 60 s, the token itself says 3 s.
    iam.setTokenLifetime(60);
    iam.setExpClaimLifetime(3);
    try {
      await stack.admin.register({
        clientId: 'jwt-exp',
        tokenUrl: iam.tokenUrl(),
        authMethod: 'client_secret_basic',
        secretRef: 'env:EXPIRY_SECRET',
      });
      const first = await tokenAfterGeneration(stack, 'jwt-exp', 0);
      const exp = (JSON.parse(Buffer.from(first.access_token!.split('.')[1]!, 'base64url').toString()) as { exp: number }).exp * 1000;

      expect(Number(first.expires_at)).toBeLessThanOrEqual(exp);
      const expireTime = Number(await stack.redis.call('PEXPIRETIME', tokenKey('oauth:', 'jwt-exp')));
      expect(expireTime).toBeGreaterThan(0);
      expect(expireTime).toBeLessThanOrEqual(exp);

      // Renewed at 0.85 of the 3 s the token lives, not of the 60 s expires_in claims.
      const second = await tokenAfterGeneration(stack, 'jwt-exp', 1, 30_000);
      tokens.push(first.access_token!, second.access_token!);
      const events = await historyEvents(stack.client, workflowIdFor('jwt-exp'));
      const [renewal] = scheduledRenewals(events);
      expect(renewal!.generation).toBe(1);
      expect(renewal!.at).toBeLessThan(exp);
      const [metadata] = issuedTokenMetadata(events);
      // The cap is exp itself: the earlier of requestStartedAt + 60 s and exp.
      expect(metadata!.expiresAt).toBe(exp);
      expect(metadata!.expiresInSeconds).toBe((exp - metadata!.requestStartedAt) / 1000);
    } finally {
      iam.setTokenLifetime(3);
      iam.setExpClaimLifetime(undefined);
    }
  });
});

describe('discovery', () => {
  test("a registration by issuer gets its token from the discovery document's token endpoint, and lists under the issuer's host", async () => {
    const issuer = `${iam.url}/realms/demo`;
    await stack.admin.register({ clientId: 'by-issuer', issuer, authMethod: 'client_secret_jwt', secretRef: 'env:ISSUER_SECRET' });
    const first = await tokenAfterGeneration(stack, 'by-issuer', 0);
    tokens.push(first.access_token!);

    const [request] = iam.requestsFor('by-issuer');
    expect(request).toMatchObject({ path: new URL(iam.tokenUrl()).pathname, authMethod: 'client_secret_jwt', outcome: 'issued' });
    // aud is the token endpoint the document named.
    expect(request!.assertion?.aud).toBe(iam.tokenUrl());
    const listed = await eventually(
      async () => (await stack.admin.list()).find((row) => row.clientId === 'by-issuer' && row.tokenEndpointHost !== null),
      30_000,
      'by-issuer listed',
    );
    expect(listed.tokenEndpointHost).toBe(new URL(issuer).host);
  });
});

test('no workflow history holds a secret, a private key or a token', async () => {
  expect(tokens.length).toBeGreaterThanOrEqual(7);
  await expectNoSecretsInHistories(stack.client, ['rotate-secret', 'rotate-key', 'jwt-exp', 'by-issuer'].map(workflowIdFor), [
    OLD_SECRET,
    NEW_SECRET,
    ISSUER_SECRET,
    EXPIRY_SECRET,
    pem(oldKey.privateKey),
    pem(newKey.privateKey),
    ...tokens,
  ]);
});
