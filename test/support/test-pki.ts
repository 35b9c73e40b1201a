/**
 * A private PKI made fresh for one test file with Debian's `openssl`, in a temporary directory
 * (nothing of it is committed): a CA, server certificates it signs for loopback names, client
 * certificates it signs, and self-signed client certificates. EC P-256 keys: they generate in
 * milliseconds.
 *
 * ```ts
 * const pki = await createTestPki();
 * const server = await pki.serverCertificate();          // for 127.0.0.1, 127.0.0.2, localhost
 * const client = await pki.clientCertificate('orders');  // CN=orders, signed by the CA
 * // pki.ca.certPath, client.certPath, client.keyPath: files for file: references
 * await pki.remove();
 * ```
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** `openssl req` arguments for a new unencrypted EC P-256 key. */
const NEW_EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A certificate and its key, as files and as PEM text. */
export interface IssuedCertificate {
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
  /** As Node.js prints `X509Certificate.subject`, lines joined by commas (the emulator's form). */
  subject: string;
}

export interface TestPki {
  dir: string;
  /** The CA: its certificate is what a `caRef` names. */
  ca: IssuedCertificate;
  /** A server certificate signed by the CA, for the given DNS names and IP addresses. */
  serverCertificate(names?: { dns?: string[]; ip?: string[] }): Promise<IssuedCertificate>;
  /** A client certificate (CN = `commonName`) signed by the CA, for `tls_client_auth`. */
  clientCertificate(commonName: string): Promise<IssuedCertificate>;
  /** A self-signed client certificate, for `self_signed_tls_client_auth`. */
  selfSignedCertificate(commonName: string): Promise<IssuedCertificate>;
  remove(): Promise<void>;
}

/** Creates a CA in a temporary directory. Remove it with {@link TestPki.remove}. */
export async function createTestPki(caName = 'Token Lifecycle Test CA'): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'test-pki-'));
  const path = (name: string) => join(dir, `${name}-${randomUUID().slice(0, 8)}`);

  async function selfSigned(commonName: string, extensions: string[]): Promise<IssuedCertificate> {
    const base = path(commonName.replace(/\W+/g, '-'));
    const files = { certPath: `${base}.crt`, keyPath: `${base}.key` };
    await run('openssl', [
      'req',
      '-x509',
      ...NEW_EC_KEY,
      '-keyout',
      files.keyPath,
      '-out',
      files.certPath,
      '-days',
      '2',
      '-subj',
      `/CN=${commonName}`,
      ...extensions.flatMap((extension) => ['-addext', extension]),
    ]);
    return read(files, commonName);
  }

  const ca = await selfSigned(caName, ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign']);

  async function signed(commonName: string, extensions: string[]): Promise<IssuedCertificate> {
    const base = path(commonName.replace(/\W+/g, '-'));
    const files = { certPath: `${base}.crt`, keyPath: `${base}.key` };
    const csr = `${base}.csr`;
    const extfile = `${base}.ext`;
    await run('openssl', ['req', '-new', ...NEW_EC_KEY, '-keyout', files.keyPath, '-out', csr, '-subj', `/CN=${commonName}`]);
    await writeFile(extfile, `${extensions.join('\n')}\n`);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-CAcreateserial',
      '-out',
      files.certPath,
      '-days',
      '2',
      '-extfile',
      extfile,
    ]);
    return read(files, commonName);
  }

  return {
    dir,
    ca,
    serverCertificate: ({ dns = ['localhost'], ip = ['127.0.0.1', '127.0.0.2'] } = {}) =>
      signed('iam.test', [
        `subjectAltName=${[...dns.map((name) => `DNS:${name}`), ...ip.map((address) => `IP:${address}`)].join(',')}`,
        'extendedKeyUsage=serverAuth',
      ]),
    clientCertificate: (commonName) => signed(commonName, ['extendedKeyUsage=clientAuth']),
    selfSignedCertificate: (commonName) => selfSigned(commonName, ['extendedKeyUsage=clientAuth']),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

async function read(files: { certPath: string; keyPath: string }, commonName: string): Promise<IssuedCertificate> {
  const [cert, key] = await Promise.all([readFile(files.certPath, 'utf8'), readFile(files.keyPath, 'utf8')]);
  return { ...files, cert, key, subject: `CN=${commonName}` };
}
