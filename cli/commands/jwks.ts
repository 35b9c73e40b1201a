/**
 * `tokenctl jwks`: the public JWK Set of key or certificate references, for the operator to
 * publish at the IAM (a `private_key_jwt` client's keys, a `self_signed_tls_client_auth` client's
 * certificate). Each key gets the `kid` the worker sends (docs/design.md, "Client authentication"):
 * `--key-id`, else the JWK's own, else its RFC 7638 thumbprint; `alg` as the worker signs; `use:
 * sig`. A certificate adds `x5c` (RFC 7517 §4.7). Several references make one set, e.g. the old and
 * the new key while a rotation is under way. Nothing private is printed.
 */
import { createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { exportJWK } from 'jose';
import { resolveReference, Secret } from '../../shared/references.js';
import { defaultAlgorithm, parsePrivateKey, publicKeyThumbprint } from '../../shared/private-key.js';
import { errorMessage } from '../../shared/error-message.js';
import { isCredentialRef, REFERENCE_FORM, type CredentialRef } from '../../workflows/registration.js';
import { CliError, print } from '../cli-error.js';

export async function jwks(refs: readonly string[], options: { keyId?: string; signingAlg?: string }): Promise<void> {
  if (options.keyId !== undefined && refs.length > 1) throw new CliError('--key-id names one key: give one reference with it');
  const problems = refs
    .filter((ref) => !isCredentialRef(ref))
    .map((ref) => `${ref.length > 40 ? 'a value' : ref}: must be ${REFERENCE_FORM}`);
  if (problems.length > 0) throw new CliError(`not references:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  const keys = await Promise.all(refs.map((ref) => publicJwk(ref as CredentialRef, options)));
  print(JSON.stringify({ keys }, null, 2));
}

async function publicJwk(ref: CredentialRef, options: { keyId?: string; signingAlg?: string }): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = (await resolveReference(ref)).reveal();
  } catch (err) {
    throw new CliError(`cannot read ${ref}: ${errorMessage(err)}`);
  }
  const { key, jwk, x5c } = publicKeyOf(ref, text);
  const kid = options.keyId ?? (typeof jwk?.kid === 'string' ? jwk.kid : await publicKeyThumbprint(key));
  const alg = options.signingAlg ?? (typeof jwk?.alg === 'string' ? jwk.alg : defaultAlgorithm(key));
  return { ...(await exportJWK(key)), kid, use: 'sig', ...(alg !== undefined && { alg }), ...(x5c !== undefined && { x5c }) };
}

/** The public key in a certificate, a public key (PEM or JWK) or a private key (PEM or JWK). */
function publicKeyOf(ref: CredentialRef, text: string): { key: KeyObject; jwk?: Record<string, unknown>; x5c?: string[] } {
  const trimmed = text.trim();
  try {
    if (trimmed.includes('-----BEGIN CERTIFICATE-----')) {
      const certificate = new X509Certificate(trimmed);
      return { key: certificate.publicKey, x5c: [certificate.raw.toString('base64')] };
    }
    if (trimmed.includes('-----BEGIN PUBLIC KEY-----')) return { key: createPublicKey(trimmed) };
    if (trimmed.startsWith('{') && !/"d"\s*:/.test(trimmed)) {
      const jwk = JSON.parse(trimmed) as JsonWebKey & Record<string, unknown>;
      return { key: createPublicKey({ key: jwk, format: 'jwk' }), jwk };
    }
  } catch (err) {
    throw new CliError(`cannot use ${ref}: ${errorMessage(err)}`);
  }
  try {
    const { key, jwk } = parsePrivateKey('keyRef', ref, new Secret(text));
    return { key: createPublicKey(key), ...(jwk !== undefined && { jwk }) };
  } catch (err) {
    throw new CliError(`cannot use ${errorMessage(err).replace(/^keyRef: /, '')}`);
  }
}
