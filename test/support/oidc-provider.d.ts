// oidc-provider ships no types and @types/oidc-provider is not installed: this declares only the
// surface the conformance fixture uses (test/support/oidc-provider.ts).
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  /** A stored artifact, as oidc-provider hands it to an {@link Adapter}. */
  export interface AdapterPayload {
    [key: string]: unknown;
    grantId?: string;
    userCode?: string;
    uid?: string;
    consumed?: unknown;
  }

  /** Persistence for one model (`AccessToken`, `ClientCredentials`, …). */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export type AdapterConstructor = new (model: string) => Adapter;

  /** Client metadata (RFC 7591 §2), only the members the fixture registers. */
  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    token_endpoint_auth_method?: string;
    grant_types?: string[];
    response_types?: string[];
    redirect_uris?: string[];
    scope?: string;
    id_token_signed_response_alg?: string;
    jwks?: { keys: Array<Record<string, unknown>> };
    tls_client_auth_subject_dn?: string;
  }

  export interface Configuration {
    adapter?: AdapterConstructor;
    clients?: ClientMetadata[];
    jwks?: { keys: Array<Record<string, unknown>> };
    scopes?: string[];
    ttl?: { ClientCredentials?: number };
    clientAuthMethods?: string[];
    features?: {
      clientCredentials?: { enabled: boolean };
      mTLS?: {
        enabled: boolean;
        tlsClientAuth?: boolean;
        selfSignedTlsClientAuth?: boolean;
        getCertificate?: (ctx: KoaContextWithOIDC) => string | undefined;
        certificateAuthorized?: (ctx: KoaContextWithOIDC) => boolean;
        certificateSubjectMatches?: (ctx: KoaContextWithOIDC, property: string, expected: string) => boolean;
      };
      devInteractions?: { enabled: boolean };
      resourceIndicators?: {
        enabled: boolean;
        getResourceServerInfo?: (ctx: KoaContextWithOIDC, resourceIndicator: string, client: unknown) => never;
      };
    };
  }

  /** What oidc-provider adds to the Koa context (`ctx.oidc`). */
  export interface OIDCContext {
    readonly route?: string;
    readonly params?: Record<string, unknown>;
    readonly body?: Record<string, unknown>;
  }

  export interface KoaContextWithOIDC {
    readonly method: string;
    readonly path: string;
    readonly headers: Record<string, string | string[] | undefined>;
    /** The connection (a TLSSocket when the server is HTTPS). */
    readonly socket: import('node:net').Socket;
    status: number;
    body: unknown;
    oidc?: OIDCContext;
  }

  export type Middleware = (ctx: KoaContextWithOIDC, next: () => Promise<void>) => Promise<void>;

  /** The provider is a Koa application. */
  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    /** Registers a pre/post middleware that runs around oidc-provider's own routes. */
    use(middleware: Middleware): this;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
  }

  export namespace errors {
    /** RFC 8707 §2 `invalid_target`. */
    class InvalidTarget extends Error {
      constructor(description?: string);
    }
  }

  export default Provider;
}
