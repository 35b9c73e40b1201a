/**
 * The credential material of one token request, resolved in one place (docs/design.md,
 * "References"): every reference of the registration (`secretRef`, `keyRef`, `assertionRef`, `certRef`, `caRef`)
 * is read again for each request, so a secret, key or certificate rewritten on disk is used from
 * the next request on. Parsing a key costs more than reading it, so parsed keys are kept per
 * process, keyed by the SHA-256 of what the reference held: new content is parsed anew, the same
 * content is not. Nothing here ever reaches Temporal.
 *
 * A `serviceaccount:<namespace>/<name>` assertion is minted through the Kubernetes TokenRequest API
 * instead (activities/service-account-tokens.ts), with the audience of the assertion the worker
 * would sign: `assertionAudience`, else the token endpoint URL (RFC 7523 §3).
 *
 * {@link credentialMac} identifies the credential a request is about to send without storing it:
 * a keyed MAC over the material, so code that must tell "the credential the IAM accepted last
 * time" from "a new one" (a budget of failed logins) compares MACs, never secrets.
 */
import { createHash, createHmac, createPrivateKey, createSecretKey, X509Certificate, type BinaryLike, type KeyObject } from 'node:crypto';
import { decodeJwt } from 'jose';
import {
  CLIENT_SECRET_JWT_ALGORITHMS,
  CREDENTIALS_OF_METHOD,
  JWT_BEARER_ASSERTION_NEEDED,
  parseServiceAccountRef,
  REFERENCE_MEANING,
  sendsMintedClientAssertion,
  type AssertionRef,
  type AuthMethod,
  type ClientRegistration,
  type CredentialRef,
  type ReferenceField,
  type SigningAlgorithm,
} from '../workflows/registration.js';
import { defaultAlgorithm, parsePrivateKey, publicKeyThumbprint } from '../shared/private-key.js';
import { resolveReference, Secret, type Environment } from '../shared/references.js';
import { SecretUnavailableError } from '../shared/secret-unavailable-error.js';
import { ServiceAccountTokens } from './service-account-tokens.js';

/** The key that signs a JWT assertion (RFC 7523 §2.2), with the header fields that name it. */
export interface AssertionSigningKey {
  /** A private key (`private_key_jwt`) or the client secret as an HMAC key (`client_secret_jwt`). */
  key: KeyObject;
  alg: SigningAlgorithm;
  /** The `kid` header; absent for a client secret without `keyId`. */
  kid?: string;
  /**
   * Where `kid` came from: the registration's `keyId`, the JWK's own `kid`, or derived (the RFC 7638
   * thumbprint), which an IAM that registered the key under another name refuses.
   */
  kidSource?: 'keyId' | 'jwk' | 'thumbprint';
}

/**
 * A client assertion a platform minted (`assertionRef`): sent as it is, never signed here. Its
 * identity, the claims that stay the same when the platform rotates it, is what the failed-login
 * budget proves (docs/design.md, "The failed-login budget").
 */
export interface MintedAssertion {
  jwt: Secret;
  /** `iss`, `sub` and `aud` (RFC 7519 §4.1.1–4.1.3), as they are in the assertion. */
  identity: { iss: string; sub: string; aud: string | string[] };
  /** The `exp` claim, in ms since the epoch. */
  expiresAt: number;
  /**
   * Called once the assertion went to the IAM, for one the worker minted for a service account:
   * the next request gets a new one, since an IAM may refuse a `jti` it has seen (RFC 7523 §3).
   */
  spend?: () => void;
}

/**
 * How long a minted assertion must still be valid when it is read: the time one token request may
 * take and a margin for clock skew, so the IAM never gets one that expired on the way.
 */
export const MINTED_ASSERTION_MIN_VALIDITY_MS = 30_000;

/**
 * The `jwt-bearer` grant's assertion: the one a platform minted (`assertionRef`), or the key that
 * signs one per request (`keyRef`), with `iss` the client ID and `sub` {@link subject}.
 */
export type GrantAssertion = { minted: MintedAssertion } | { signingKey: AssertionSigningKey; subject: string };

/** The TLS client certificate and key of the mTLS methods (RFC 8705 §2), PEM. */
export interface ClientCertificate {
  certificate: string;
  key: Secret;
}

/**
 * Everything that authenticates the client in one request, and what the request trusts. Secrets
 * are {@link Secret}s and the key a `KeyObject`: none of them prints its value.
 */
export interface RequestCredentials {
  /** The client identifier (RFC 6749 §2.2). */
  clientId: string;
  /** How the client authenticates, by IANA name (RFC 7591 §2). */
  authMethod: AuthMethod;
  /** The client password (RFC 6749 §2.3.1): the client_secret_* methods. */
  clientSecret?: Secret;
  /** The assertion's key: `client_secret_jwt` and `private_key_jwt`. */
  signingKey?: AssertionSigningKey;
  /** Instead of {@link RequestCredentials.signingKey}: `private_key_jwt` with `assertionRef`. */
  mintedAssertion?: MintedAssertion;
  /** The mTLS methods' certificate and key. */
  clientCertificate?: ClientCertificate;
  /** The assertion of the `jwt-bearer` grant (RFC 7523 §2.1); absent for the client credentials grant. */
  grantAssertion?: GrantAssertion;
  /** PEM CA certificates of `caRef`, trusted in addition to the default store. */
  trustedCa?: string;
}

/** The registration fields this module reads. */
export type CredentialFields = Pick<
  ClientRegistration,
  | 'clientId'
  | 'authMethod'
  | 'grant'
  | 'secretRef'
  | 'keyRef'
  | 'assertionRef'
  | 'certRef'
  | 'caRef'
  | 'keyId'
  | 'signingAlg'
  | 'assertionSubject'
  | 'assertionAudience'
  | 'tokenUrl'
>;

/** The service-account tokens of this process: every request's `serviceaccount:` assertions come from it. */
const processServiceAccountTokens = new ServiceAccountTokens();

/**
 * Resolves and checks the credential material of one request: the references the method needs
 * (workflows/registration.ts, `credentialFieldsOf`) and the CA.
 *
 * @throws {@link SecretUnavailableError} naming the field and reference when one cannot be read,
 *   or holds something unusable: not a key, a key that cannot sign the algorithm, a certificate
 *   that is not the key's or has expired, a minted assertion that is not a JWT or expires within
 *   {@link MINTED_ASSERTION_MIN_VALIDITY_MS}; a service-account assertion the Kubernetes API did not
 *   mint (its subclass `ServiceAccountTokenError`). Such a request would only be a failed login.
 * @param env - Where `env:` references and the Kubernetes API's settings are read.
 * @param serviceAccountTokens - Where `serviceaccount:` assertions are minted and kept. @default the process's
 */
export async function resolveRequestCredentials(
  registration: CredentialFields,
  env: Environment = process.env,
  serviceAccountTokens: ServiceAccountTokens = processServiceAccountTokens,
): Promise<RequestCredentials> {
  const { clientId, authMethod } = registration;
  // The type says it is one of them, but the value comes from a registration (JSON), so check.
  if (!Object.hasOwn(CREDENTIALS_OF_METHOD, authMethod)) {
    throw new SecretUnavailableError(`authMethod: ${String(authMethod)} is not a client authentication method`);
  }
  // assertionRef is readAssertion's: it may name a service account rather than a value.
  const read = async (field: Exclude<ReferenceField, 'assertionRef'>): Promise<Secret> => {
    const ref = registration[field];
    if (ref === undefined) throw new SecretUnavailableError(`${field}: ${authMethod} needs ${REFERENCE_MEANING[field]}`);
    return resolveField(field, ref, env);
  };
  const readAssertion = async (ref: AssertionRef): Promise<MintedAssertion> => {
    const account = parseServiceAccountRef(ref);
    if (account === undefined) return mintedAssertion(ref, await resolveField('assertionRef', ref as CredentialRef, env));
    if ('problem' in account) throw new SecretUnavailableError(`assertionRef: ${ref} is malformed: ${account.problem}`);
    const audience = registration.assertionAudience ?? registration.tokenUrl;
    if (audience === undefined) {
      throw new SecretUnavailableError(
        `assertionAudience: ${ref} needs the audience to mint for: set assertionAudience, or register tokenUrl`,
      );
    }
    const minted = await serviceAccountTokens.token(account, audience, env);
    return { ...mintedAssertion(ref, minted.token), spend: minted.spend };
  };

  const credentials: RequestCredentials = { clientId, authMethod };
  if (registration.caRef !== undefined) credentials.trustedCa = parseCertificates('caRef', registration.caRef, await read('caRef')).pem;
  switch (authMethod) {
    case 'client_secret_basic':
    case 'client_secret_post':
      credentials.clientSecret = await read('secretRef');
      break;
    case 'client_secret_jwt': {
      const secret = await read('secretRef');
      credentials.clientSecret = secret;
      credentials.signingKey = secretSigningKey(secret, registration);
      break;
    }
    case 'private_key_jwt':
      if (sendsMintedClientAssertion(registration)) {
        credentials.mintedAssertion = await readAssertion(registration.assertionRef!);
      } else {
        credentials.signingKey = await privateSigningKey(registration.keyRef!, await read('keyRef'), registration);
      }
      break;
    case 'tls_client_auth':
    case 'self_signed_tls_client_auth':
      credentials.clientCertificate = clientCertificate(registration, await read('certRef'), await read('keyRef'));
      break;
  }
  if (registration.grant === 'jwt-bearer') {
    if (registration.assertionRef === undefined && registration.keyRef === undefined)
      throw new SecretUnavailableError(`keyRef: ${JWT_BEARER_ASSERTION_NEEDED}`);
    credentials.grantAssertion =
      registration.assertionRef !== undefined
        ? { minted: await readAssertion(registration.assertionRef) }
        : {
            // private_key_jwt's key signs both assertions: it is read and parsed once.
            signingKey: credentials.signingKey ?? (await privateSigningKey(registration.keyRef!, await read('keyRef'), registration)),
            subject: registration.assertionSubject ?? clientId,
          };
  }
  return credentials;
}

/**
 * A keyed MAC (HMAC-SHA-256, hex) of the credential a request sends: the method, the client ID,
 * and the secret, the private key (as PKCS #8, whatever form the reference held it in), or the
 * certificate and its key, plus the assertion's `alg` and `kid`. Equal MACs mean the same
 * credential; the material itself is never stored. The CA is not part of it: trust is not a
 * credential. A minted assertion counts by its identity (`iss`, `sub`, `aud`), not its bytes: the
 * platform rotates it every hour or so, and each rotation is the same credential to the IAM. So
 * does the `jwt-bearer` grant's minted assertion; a signed one counts by its key and subject.
 *
 * @param key - The MAC key, secret to the process (e.g. random per worker, or from the settings).
 */
export function credentialMac(credentials: RequestCredentials, key: BinaryLike): string {
  const mac = createHmac('sha256', key);
  const part = (value: string | Buffer) => {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    mac.update(length).update(bytes);
  };
  part(credentials.authMethod);
  part(credentials.clientId);
  part(credentials.clientSecret?.reveal() ?? '');
  const signing = credentials.signingKey;
  part(
    signing === undefined
      ? ''
      : signing.key.type === 'secret'
        ? signing.key.export()
        : signing.key.export({ format: 'der', type: 'pkcs8' }),
  );
  part(signing?.alg ?? '');
  part(signing?.kid ?? '');
  const minted = credentials.mintedAssertion;
  part(minted === undefined ? '' : JSON.stringify([minted.identity.iss, minted.identity.sub, minted.identity.aud]));
  const tls = credentials.clientCertificate;
  part(tls === undefined ? '' : new X509Certificate(tls.certificate).raw);
  part(tls === undefined ? '' : createPrivateKey(tls.key.reveal()).export({ format: 'der', type: 'pkcs8' }));
  // Only a jwt-bearer client's MAC has these parts: every other client's stays what it was, and
  // so does the proof stored for it.
  const grant = credentials.grantAssertion;
  if (grant !== undefined && 'minted' in grant)
    part(JSON.stringify(['minted', grant.minted.identity.iss, grant.minted.identity.sub, grant.minted.identity.aud]));
  if (grant !== undefined && 'signingKey' in grant) {
    part(JSON.stringify(['signed', grant.signingKey.alg, grant.signingKey.kid ?? '', grant.subject]));
    part(grant.signingKey.key.export({ format: 'der', type: 'pkcs8' }));
  }
  return mac.digest('hex');
}

// -------------------------------------------------------------------------------------------------

async function resolveField(field: ReferenceField, ref: CredentialRef, env: Environment): Promise<Secret> {
  try {
    return await resolveReference(ref, env);
  } catch (error) {
    if (error instanceof SecretUnavailableError) throw new SecretUnavailableError(`${field}: ${error.message}`);
    throw error;
  }
}

/** Decodes (without verifying: the IAM does) a minted assertion and checks it is not about to expire. */
function mintedAssertion(ref: AssertionRef, jwt: Secret): MintedAssertion {
  let claims: ReturnType<typeof decodeJwt>;
  try {
    claims = decodeJwt(jwt.reveal());
  } catch {
    throw new SecretUnavailableError(`assertionRef: ${ref} holds no JWT (header.payload.signature, base64url)`);
  }
  const { iss, sub, aud, exp } = claims;
  if (typeof exp !== 'number') throw new SecretUnavailableError(`assertionRef: the assertion in ${ref} has no exp claim`);
  if (typeof iss !== 'string' || typeof sub !== 'string' || aud === undefined) {
    throw new SecretUnavailableError(`assertionRef: the assertion in ${ref} lacks iss, sub or aud (RFC 7523 §3)`);
  }
  const expiresAt = exp * 1000;
  if (expiresAt - Date.now() < MINTED_ASSERTION_MIN_VALIDITY_MS) {
    const when = new Date(expiresAt).toISOString();
    throw new SecretUnavailableError(
      expiresAt <= Date.now()
        ? `assertionRef: the assertion in ${ref} expired at ${when}; whatever writes it has not rotated it`
        : `assertionRef: the assertion in ${ref} expires at ${when}, too soon to send; whatever writes it has not rotated it`,
    );
  }
  return { jwt, identity: { iss, sub, aud }, expiresAt };
}

function secretSigningKey(secret: Secret, registration: CredentialFields): AssertionSigningKey {
  const alg = registration.signingAlg ?? CLIENT_SECRET_JWT_ALGORITHMS[0];
  if (!(CLIENT_SECRET_JWT_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new SecretUnavailableError(`signingAlg: client_secret_jwt signs with ${CLIENT_SECRET_JWT_ALGORITHMS.join(', ')}, not ${alg}`);
  }
  return {
    key: createSecretKey(Buffer.from(secret.reveal(), 'utf8')),
    alg,
    ...(registration.keyId !== undefined && { kid: registration.keyId }),
  };
}

/** Parsed private keys by content hash, algorithm and key ID; bounded, oldest dropped first. */
const parsedKeys = new Map<string, Promise<AssertionSigningKey>>();
const MAX_PARSED_KEYS = 256;

function privateSigningKey(ref: CredentialRef, text: Secret, registration: CredentialFields): Promise<AssertionSigningKey> {
  const cacheKey = [sha256(text.reveal()), registration.signingAlg ?? '', registration.keyId ?? ''].join('\n');
  let parsed = parsedKeys.get(cacheKey);
  if (parsed === undefined) {
    parsed = parseSigningKey(ref, text, registration);
    parsedKeys.set(cacheKey, parsed);
    // A failure is not kept: the next request reads and parses again.
    parsed.catch(() => parsedKeys.delete(cacheKey));
    if (parsedKeys.size > MAX_PARSED_KEYS) parsedKeys.delete(parsedKeys.keys().next().value!);
  }
  return parsed;
}

async function parseSigningKey(ref: CredentialRef, text: Secret, registration: CredentialFields): Promise<AssertionSigningKey> {
  const { key, jwk } = parsePrivateKey('keyRef', ref, text);
  const alg = registration.signingAlg ?? (typeof jwk?.alg === 'string' ? (jwk.alg as SigningAlgorithm) : defaultAlgorithm(key));
  if (alg === undefined) {
    throw new SecretUnavailableError(`keyRef: ${ref} is ${describeKey(key)}: set signingAlg, it has no default algorithm`);
  }
  const problem = algorithmProblem(key, alg);
  if (problem !== undefined) throw new SecretUnavailableError(`keyRef: ${ref} is ${describeKey(key)}: ${problem}`);
  if (registration.keyId !== undefined) return { key, alg, kid: registration.keyId, kidSource: 'keyId' };
  if (typeof jwk?.kid === 'string') return { key, alg, kid: jwk.kid, kidSource: 'jwk' };
  return { key, alg, kid: await publicKeyThumbprint(key), kidSource: 'thumbprint' };
}

/** Why `key` cannot sign `alg` (RFC 7518 §3), or undefined when it can. */
function algorithmProblem(key: KeyObject, alg: SigningAlgorithm): string | undefined {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const ok =
    (/^RS/.test(alg) && type === 'rsa') ||
    (/^PS/.test(alg) && (type === 'rsa' || type === 'rsa-pss')) ||
    (alg === 'ES256' && curve === 'prime256v1') ||
    (alg === 'ES384' && curve === 'secp384r1') ||
    (alg === 'ES512' && curve === 'secp521r1') ||
    (alg === 'EdDSA' && type === 'ed25519');
  if (ok) return undefined;
  if (/^HS/.test(alg)) return `${alg} is client_secret_jwt's; private_key_jwt signs with the private key`;
  return `it cannot sign ${alg}`;
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return `an ${String(key.asymmetricKeyType).toUpperCase()}${curve === undefined ? '' : ` ${curve}`} key`;
}

function clientCertificate(registration: CredentialFields, certText: Secret, keyText: Secret): ClientCertificate {
  const { certificate, pem } = parseCertificates('certRef', registration.certRef!, certText);
  const { key } = parsePrivateKey('keyRef', registration.keyRef!, keyText);
  if (!certificate.checkPrivateKey(key)) {
    throw new SecretUnavailableError(
      `keyRef: ${registration.keyRef} is not the key of the certificate in certRef ${registration.certRef} (${certificate.subject.replace(/\n/g, ', ')})`,
    );
  }
  const expiresAt = Date.parse(certificate.validTo);
  if (expiresAt <= Date.now()) {
    throw new SecretUnavailableError(`certRef: the certificate in ${registration.certRef} expired at ${new Date(expiresAt).toISOString()}`);
  }
  return { certificate: pem, key: new Secret(key.export({ format: 'pem', type: 'pkcs8' }) as string) };
}

/** The first certificate of a PEM bundle (checked to parse), and the bundle. */
function parseCertificates(field: ReferenceField, ref: CredentialRef, text: Secret): { certificate: X509Certificate; pem: string } {
  const pem = text.reveal();
  const first = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(pem)?.[0];
  try {
    if (first === undefined) throw new Error('no certificate');
    return { certificate: new X509Certificate(first), pem: `${pem}\n` };
  } catch {
    throw new SecretUnavailableError(`${field}: ${ref} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
