/**
 * The emulated realm's OAuth clients, and how a token request presents their credentials.
 */
import type { JSONWebKeySet } from 'jose';
import type { AuthMethod } from '../../workflows/registration.js';

/** An OAuth client of the emulated realm (a confidential Keycloak client). */
export interface EmulatorClient {
  clientId: string;
  /** The secret of the client_secret_* methods (and the HMAC key of client_secret_jwt). */
  clientSecret?: string;
  /**
   * The one client authentication method the client accepts (Keycloak's "Client Authenticator").
   * @default client_secret_basic or client_secret_post, either
   */
  authMethod?: AuthMethod;
  /** The public keys `private_key_jwt` assertions are verified with (Keycloak's "JWKS"). */
  jwks?: JSONWebKeySet;
  /**
   * `tls_client_auth`: the subject DN the certificate must have, as Node.js prints
   * `X509Certificate.subject` with its lines joined by commas (`CN=orders,O=Example`), and the
   * certificate must chain to the emulator's `tls.clientCa` (RFC 8705 §2.1).
   */
  tlsClientAuthSubjectDn?: string;
  /** `self_signed_tls_client_auth`: the certificates (PEM) registered for the client (RFC 8705 §2.2). */
  certificates?: string[];
  /**
   * Scopes the client may request (Keycloak's optional client scopes): only requested ones are
   * granted, so a request without `scope` gets `scope: ""`. @default []
   */
  scopes?: string[];
  /** A disabled client is refused with 401 `invalid_client`. @default true */
  enabled?: boolean;
  /**
   * Keycloak's "Service accounts roles" switch; without it the client credentials grant is
   * refused with 401 `unauthorized_client`. @default true
   */
  serviceAccountsEnabled?: boolean;
}

/** A client with every default applied. */
export type RegisteredClient = Required<
  Omit<EmulatorClient, 'clientSecret' | 'authMethod' | 'jwks' | 'tlsClientAuthSubjectDn' | 'certificates'>
> &
  Pick<EmulatorClient, 'clientSecret' | 'authMethod' | 'jwks' | 'tlsClientAuthSubjectDn' | 'certificates'>;

/** The realm's clients by ID; tests change them while the emulator runs. */
export class ClientRegistry {
  readonly #clients = new Map<string, RegisteredClient>();

  constructor(clients: readonly EmulatorClient[]) {
    for (const client of clients) {
      if (this.#clients.has(client.clientId)) throw new Error(`Duplicate emulator client '${client.clientId}'`);
      this.#clients.set(client.clientId, withDefaults(client));
    }
  }

  get(clientId: string): RegisteredClient | undefined {
    return this.#clients.get(clientId);
  }

  /** Changes a client's settings; throws for an unknown client, so a typo in a test fails loudly. */
  update(clientId: string, changes: Partial<Omit<EmulatorClient, 'clientId'>>): void {
    const client = this.#clients.get(clientId);
    if (client === undefined) throw new Error(`Unknown emulator client '${clientId}'`);
    this.#clients.set(clientId, withDefaults({ ...client, ...changes, clientId }));
  }

  /** Every scope some client may request, for the discovery document. */
  allScopes(): string[] {
    return [...new Set([...this.#clients.values()].flatMap((client) => client.scopes))].sort();
  }
}

function withDefaults(client: EmulatorClient): RegisteredClient {
  return {
    ...client,
    scopes: [...(client.scopes ?? [])],
    enabled: client.enabled ?? true,
    serviceAccountsEnabled: client.serviceAccountsEnabled ?? true,
  };
}

/** Client credentials as a request presented them, not yet checked. */
export interface PresentedCredentials {
  clientId: string;
  clientSecret: string;
}

/**
 * Decodes an `Authorization: Basic` header's credentials: base64 of
 * `form-urlencode(client_id) ":" form-urlencode(client_secret)`. The split is at the first `:`,
 * which the encoding guarantees is the separator, then each part is form-urldecoded (`+` is a
 * space, `%XX` are UTF-8 octets).
 *
 * Returns `undefined` when the header is not Basic at all (another scheme is not our business),
 * and `'malformed'` when it is Basic but cannot be decoded.
 *
 * @see RFC 6749 §2.3.1, RFC 7617 §2
 */
export function parseBasicCredentials(authorization: string | undefined): PresentedCredentials | 'malformed' | undefined {
  if (authorization === undefined) return undefined;
  const match = /^basic(?: +(.*))?$/i.exec(authorization.trim());
  if (match === null) return undefined;
  const encoded = match[1]?.trim() ?? '';
  // RFC 7617 §2: token68 is plain base64; Buffer.from would silently skip invalid characters.
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) return 'malformed';
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  const clientId = formUrlDecode(decoded.slice(0, colon));
  const clientSecret = formUrlDecode(decoded.slice(colon + 1));
  if (clientId === undefined || clientSecret === undefined || clientId === '') return 'malformed';
  return { clientId, clientSecret };
}

/**
 * Builds the `Authorization: Basic` value a conforming client sends: each part form-urlencoded
 * (RFC 6749 §2.3.1; `URLSearchParams` encodes exactly as application/x-www-form-urlencoded does).
 * For tests and the demo; the project's real client lives in `activities/`.
 */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => new URLSearchParams({ v: value }).toString().slice('v='.length);
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`, 'utf8').toString('base64')}`;
}

/** application/x-www-form-urlencoded decoding of one value; `undefined` for a bad `%` escape. */
function formUrlDecode(value: string): string | undefined {
  try {
    // decodeURIComponent rejects bad escapes, where URLSearchParams would pass them through:
    // a client that did not encode a secret containing `%` should fail visibly.
    return decodeURIComponent(value.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}
