/**
 * The access tokens the emulator issued, so its resource API (and tests) can tell an active token
 * from an expired, revoked or unknown one.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';

/** An access token the emulator issued. Times are Unix milliseconds. */
export interface IssuedToken {
  accessToken: string;
  clientId: string;
  /** The granted scope, space separated; `''` when none. */
  scope: string;
  issuedAt: number;
  expiresAt: number;
  /** When {@link TokenStore.revoke} revoked it. */
  revokedAt?: number;
}

/** Why a token is not active. */
export type TokenInactiveReason = 'unknown' | 'expired' | 'revoked';

/** Tokens issued by one emulator, signed with a key of its own. */
export class TokenStore {
  readonly #byToken = new Map<string, IssuedToken>();
  readonly #issued: IssuedToken[] = [];
  // A fresh key per emulator: tokens look and decode like Keycloak's JWTs, but only the emulator
  // that issued one accepts it.
  readonly #signingKey = randomBytes(32);
  readonly #keyId = randomUUID();

  /**
   * Issues a JWT-shaped token like Keycloak's; each one is unique (its `jti`).
   * `issuer` is the realm's issuer URL, for the `iss` claim; `audience` the request's, if any.
   */
  issue(request: {
    clientId: string;
    scope: string;
    lifetimeSeconds: number;
    /** When the `exp` claim says otherwise than `expires_in`: the token lives this long. */
    expClaimLifetimeSeconds?: number;
    now: number;
    issuer: string;
    audience?: string | undefined;
  }): IssuedToken {
    const { clientId, scope, now, audience } = request;
    const lifetimeSeconds = request.expClaimLifetimeSeconds ?? request.lifetimeSeconds;
    const iat = Math.floor(now / 1000);
    const header = { alg: 'HS256', typ: 'JWT', kid: this.#keyId };
    const payload = {
      // The instant the emulator stops accepting the token, rounded up to whole seconds: a
      // client that caps the lifetime by `exp` then sees `expires_in` from when it sent, not a
      // lifetime up to a second shorter (which short-lived test tokens would feel).
      exp: Math.ceil((now + lifetimeSeconds * 1000) / 1000),
      iat,
      jti: randomUUID(),
      iss: request.issuer,
      ...(audience === undefined ? {} : { aud: audience }),
      sub: `service-account-${clientId}`,
      typ: 'Bearer',
      azp: clientId,
      scope,
      client_id: clientId,
    };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    const signature = createHmac('sha256', this.#signingKey).update(signingInput).digest('base64url');
    const token: IssuedToken = {
      accessToken: `${signingInput}.${signature}`,
      clientId,
      scope,
      issuedAt: now,
      expiresAt: now + lifetimeSeconds * 1000,
    };
    this.#byToken.set(token.accessToken, token);
    this.#issued.push(token);
    return token;
  }

  get(accessToken: string): IssuedToken | undefined {
    return this.#byToken.get(accessToken);
  }

  /** Why the token cannot be used at `now`, or `undefined` when it is active. */
  inactiveReason(accessToken: string, now: number): TokenInactiveReason | undefined {
    const token = this.#byToken.get(accessToken);
    if (token === undefined) return 'unknown';
    if (token.revokedAt !== undefined) return 'revoked';
    if (now >= token.expiresAt) return 'expired';
    return undefined;
  }

  /** Revokes an issued token; false when the emulator never issued it. */
  revoke(accessToken: string, now: number): boolean {
    const token = this.#byToken.get(accessToken);
    if (token === undefined) return false;
    token.revokedAt ??= now;
    return true;
  }

  /** Copies, so a caller cannot revoke by mutating them. */
  all(): IssuedToken[] {
    return this.#issued.map((token) => ({ ...token }));
  }
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
