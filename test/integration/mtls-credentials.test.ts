/**
 * The mTLS methods' credentials (RFC 8705 §2) against the IAM emulator over HTTPS with a private
 * CA (test/support/test-pki.ts makes it with openssl, so this is an integration test): the client
 * certificate in the handshake, the CA from `caRef` on top of the public store, and the mistakes
 * caught before a request would be a failed login.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TokenEndpointError } from '../../activities/errors.js';
import { SecretUnavailableError } from '../../shared/secret-unavailable-error.js';
import { resolveRequestCredentials, type CredentialFields } from '../../activities/request-credentials.js';
import { requestToken } from '../../activities/token-endpoint.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { createTestPki, type IssuedCertificate, type TestPki } from '../support/test-pki.js';

let pki: TestPki;
let iam: IamEmulator;
let tlsClient: IssuedCertificate;
let selfSigned: IssuedCertificate;
let stranger: IssuedCertificate;

beforeAll(async () => {
  pki = await createTestPki();
  const server = await pki.serverCertificate();
  [tlsClient, selfSigned, stranger] = await Promise.all([
    pki.clientCertificate('mtls-orders'),
    pki.selfSignedCertificate('mtls-self'),
    pki.selfSignedCertificate('mtls-self'),
  ]);
  iam = await startIamEmulator({
    tls: { cert: server.cert, key: server.key, clientCa: pki.ca.cert },
    clients: [
      { clientId: 'mtls-orders', authMethod: 'tls_client_auth', tlsClientAuthSubjectDn: tlsClient.subject },
      { clientId: 'mtls-self', authMethod: 'self_signed_tls_client_auth', certificates: [selfSigned.cert] },
    ],
  });
});

afterAll(async () => {
  await iam?.close();
  await pki?.remove();
});

const fields = (
  clientId: string,
  authMethod: CredentialFields['authMethod'],
  certificate: IssuedCertificate,
  caRef = true,
): CredentialFields => ({
  clientId,
  authMethod,
  certRef: `file:${certificate.certPath}`,
  keyRef: `file:${certificate.keyPath}`,
  ...(caRef && { caRef: `file:${pki.ca.certPath}` }),
});

async function send(registration: CredentialFields) {
  return requestToken({ ...(await resolveRequestCredentials(registration, {})), tokenUrl: iam.tokenUrl(), timeoutMs: 5_000 });
}

describe('mutual TLS', () => {
  test.each([
    ['tls_client_auth with a certificate the CA signed', () => fields('mtls-orders', 'tls_client_auth', tlsClient)],
    ['self_signed_tls_client_auth with the registered certificate', () => fields('mtls-self', 'self_signed_tls_client_auth', selfSigned)],
  ])('%s gets a token, client_id in the body and the certificate in the handshake', async (_name, registration) => {
    const issued = await send(registration());

    expect(issued.tokenType).toBe('Bearer');
    const entry = iam.requestsFor(registration().clientId).slice(-1)[0]!;
    expect(entry).toMatchObject({
      authMethod: registration().authMethod,
      outcome: 'issued',
      params: { client_id: registration().clientId },
    });
    expect(entry.tlsClientSubject).toBe(`CN=${registration().clientId}`);
  });

  test('another certificate is refused as credentials_rejected', async () => {
    const error = await send(fields('mtls-self', 'self_signed_tls_client_auth', stranger)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TokenEndpointError);
    expect(error).toMatchObject({ kind: 'credentials_rejected', details: { status: 401, oauthError: 'invalid_client' } });
  });

  test('without caRef the private CA is not trusted: the handshake fails, which is blocked', async () => {
    const error = (await send(fields('mtls-orders', 'tls_client_auth', tlsClient, false)).catch((e: unknown) => e)) as TokenEndpointError;
    expect(error).toMatchObject({ kind: 'blocked' });
    expect(error.message).toMatch(
      /^Token endpoint could not be reached: .*(UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify|self-signed)/i,
    );
  });

  test('a key that is not the certificate’s is caught on the worker, before anything is sent', async () => {
    const before = iam.requests.length;
    const otherKey = join(pki.dir, 'other.key');
    await writeFile(otherKey, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const error = await send({ ...fields('mtls-orders', 'tls_client_auth', tlsClient), keyRef: `file:${otherKey}` }).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(SecretUnavailableError);
    expect((error as Error).message).toBe(
      `keyRef: file:${otherKey} is not the key of the certificate in certRef file:${tlsClient.certPath} (CN=mtls-orders)`,
    );
    expect(iam.requests.length).toBe(before);
  });
});
