/**
 * Private keys as operators hand them over (PEM or JWK), for signing client assertions (RFC 7523)
 * on the worker and for publishing their public half with `tokenctl jwks` (docs/design.md, "Client
 * authentication").
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import type { CredentialRef, ReferenceField, SigningAlgorithm } from '../workflows/registration.js';
import type { Secret } from './references.js';
import { SecretUnavailableError } from './secret-unavailable-error.js';

/**
 * Reads a private key given as PEM (PKCS #8, PKCS #1 or SEC 1) or as a JWK (or a JWK Set of one
 * key). Node.js parses every PEM form operators are handed; jose does the JOSE (signing, the JWK
 * and its thumbprint).
 */
export function parsePrivateKey(
  field: ReferenceField,
  ref: CredentialRef,
  text: Secret,
): { key: KeyObject; jwk?: Record<string, unknown> } {
  const value = text.reveal().trim();
  if (value.startsWith('{')) {
    let jwk: Record<string, unknown>;
    try {
      jwk = singleJwk(JSON.parse(value) as unknown);
    } catch (error) {
      throw new SecretUnavailableError(`${field}: ${ref} is not a JWK: ${(error as Error).message.split('\n')[0]}`);
    }
    try {
      return { key: createPrivateKey({ key: jwk, format: 'jwk' }), jwk };
    } catch {
      throw new SecretUnavailableError(`${field}: ${ref} is not a private JWK (it needs the private members, e.g. "d")`);
    }
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(value)) {
    throw new SecretUnavailableError(`${field}: ${ref} is an encrypted key: give it unencrypted (openssl pkcs8 -topk8 -nocrypt)`);
  }
  try {
    const key = createPrivateKey(value);
    return { key };
  } catch {
    throw new SecretUnavailableError(
      `${field}: ${ref} is not a private key in PEM (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) or JWK form`,
    );
  }
}

function singleJwk(json: unknown): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('expected a JSON object');
  const keys = (json as { keys?: unknown }).keys;
  if (keys === undefined) return json as Record<string, unknown>;
  if (!Array.isArray(keys) || keys.length !== 1) throw new Error('a JWK Set here must hold exactly one key');
  return singleJwk(keys[0]);
}

/** The algorithm a key type signs with when the registration names none. */
export function defaultAlgorithm(key: KeyObject): SigningAlgorithm | undefined {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'rsa-pss':
      return 'PS256';
    case 'ec':
      return ({ prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' } as const)[key.asymmetricKeyDetails?.namedCurve ?? ''];
    case 'ed25519':
      return 'EdDSA';
    default:
      return undefined;
  }
}

/** The RFC 7638 thumbprint of the key's public half: the `kid` when neither the JWK nor the registration names one. */
export async function publicKeyThumbprint(key: KeyObject): Promise<string> {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return calculateJwkThumbprint(await exportJWK(publicKey));
}
