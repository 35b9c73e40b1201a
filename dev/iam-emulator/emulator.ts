/**
 * An IAM emulator: a small real HTTP server that behaves like the provider (a Keycloak realm)
 * for the client credentials grant, with the provider's edge (per-IP rate limit, IP blocks after
 * failed logins), injectable faults, a request log, and a tiny protected resource API.
 *
 * For the demo and for integration tests that need faults; never for production. Uses Node
 * built-ins only.
 *
 * ```ts
 * const iam = await startIamEmulator({ clients: [{ clientId: 'orders', clientSecret: 's3cret' }] });
 * iam.inject({ kind: 'rate_limit', retryAfter: 2 }, { times: 1 });
 * // … point the code under test at iam.tokenUrl() …
 * expect(iam.requestsFor('orders').map((entry) => entry.outcome)).toEqual(['fault:rate_limit', 'issued']);
 * await iam.close();
 * ```
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { AUTH_METHODS, MTLS_AUTH_METHODS, type AuthMethod } from '../../workflows/registration.js';
import { ClientRegistry, type EmulatorClient } from './clients.js';
import { LoginBlocker, RateLimiter } from './edge.js';
import { FaultQueue, proxyErrorPage, retryAfterHeaderValue, type Fault, type FaultOptions } from './faults.js';
import type { RequestLogEntry, ResourceRequestLogEntry } from './request-log.js';
import { answerResourceRequest, RESOURCE_API_PREFIX } from './resource-api.js';
import { answerTokenRequest, loggableParams, readTokenRequest, type PresentedCertificate, type TokenRequest } from './token-endpoint.js';
import { TokenStore, type IssuedToken } from './tokens.js';

export type { EmulatorClient } from './clients.js';
export type { Fault, FaultKind, FaultOptions } from './faults.js';
export type {
  ClientAuthMethod,
  RequestLogEntry,
  ResourceRequestLogEntry,
  ResourceRequestOutcome,
  TokenRequestOutcome,
} from './request-log.js';
export { ADMIN_PATH, RESOURCE_PATH } from './resource-api.js';
export type { IssuedToken } from './tokens.js';

/** Options of {@link startIamEmulator}. */
export interface IamEmulatorOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (a free port chosen by the kernel) */
  port?: number;
  /** The Keycloak realm in the URLs; requests for another realm get 404. @default 'demo' */
  realm?: string;
  /** The realm's confidential clients. */
  clients: EmulatorClient[];
  /** `expires_in` of issued tokens, a positive integer of seconds. @default 300 */
  tokenLifetimeSeconds?: number;
  /**
   * The edge's limit on token requests per source IP in any one-second window; above it, 429
   * with `Retry-After: 1`. `Infinity` turns it off. @default 50
   */
  rateLimitPerSecond?: number;
  /**
   * Failed client authentications from one IP within `blockWindowMs` after which the IP is
   * blocked. `Infinity` turns blocking off. @default 10
   */
  blockAfterFailedLogins?: number;
  /** @default 60_000 */
  blockWindowMs?: number;
  /** How long an IP stays blocked. @default 60_000 */
  blockDurationMs?: number;
  /**
   * Leave `expires_in` out of token responses (RFC 6749 §5.1 only RECOMMENDS it); tokens still
   * expire after `tokenLifetimeSeconds`. @default false
   */
  omitExpiresIn?: boolean;
  /**
   * Serve HTTPS with this certificate and key (PEM), asking every client for a certificate; the
   * mTLS methods need it. `clientCa` is what `tls_client_auth` certificates must chain to.
   * @default plain HTTP
   */
  tls?: { cert: string; key: string; clientCa?: string };
  /**
   * `token_endpoint_auth_methods_supported` of the discovery document. @default every method the
   * emulator serves: all six with `tls`, the four without a certificate otherwise
   */
  authMethodsSupported?: AuthMethod[];
  /** The clock, in Unix milliseconds, for token expiry and the edge's windows. @default Date.now */
  now?: () => number;
  /** Called with each token request's log entry as it is recorded, e.g. to print it. */
  onRequest?: (entry: RequestLogEntry) => void;
}

/** A running IAM emulator. Close it in `afterEach`/`afterAll`. */
export interface IamEmulator {
  /** The base URL, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** The realm of {@link IamEmulatorOptions.realm}. */
  readonly realm: string;
  /** `${url}/realms/<realm>/protocol/openid-connect/token` (Keycloak ≥ 17). @see RFC 6749 §3.2 */
  tokenUrl(realm?: string): string;
  /** `${url}/auth/realms/<realm>/protocol/openid-connect/token` (Keycloak ≤ 16, or `--http-relative-path=/auth`). */
  legacyTokenUrl(realm?: string): string;
  /**
   * Every token request, oldest first, including connections reset because their IP was blocked
   * (logged at connect time, when the path is not known yet). A snapshot.
   */
  readonly requests: readonly RequestLogEntry[];
  /** The token requests that named `clientId`, oldest first. */
  requestsFor(clientId: string): RequestLogEntry[];
  /** Every resource API request, oldest first. A snapshot. */
  readonly resourceRequests: readonly ResourceRequestLogEntry[];
  /** Empties both logs. */
  clearLog(): void;
  /** Rotates a client's secret: requests with the old one now fail with `unauthorized_client`. */
  setClientSecret(clientId: string, secret: string): void;
  /** Changes a client's other settings, e.g. `{ enabled: false }` or `{ scopes: ['admin'] }`. */
  updateClient(clientId: string, changes: Partial<Omit<EmulatorClient, 'clientId'>>): void;
  /** The lifetime of tokens issued from now on, a positive integer of seconds. */
  setTokenLifetime(seconds: number): void;
  /**
   * From now on, tokens' JWT `exp` (and when they stop working) is `seconds` after issue while
   * `expires_in` stays the token lifetime; `undefined` makes both agree again.
   */
  setExpClaimLifetime(seconds: number | undefined): void;
  /** Makes matching token requests fail with `fault` (see {@link Fault}); faults apply in injection order. */
  inject(fault: Fault, options?: FaultOptions): void;
  clearFaults(): void;
  /** Every token issued, oldest first. Copies. */
  readonly issuedTokens: readonly IssuedToken[];
  /** Whether the token was issued here, has not expired, and was not revoked. */
  isTokenActive(accessToken: string): boolean;
  /** Revokes a token, so the resource API answers 401 `invalid_token` to it; false if unknown. */
  revoke(accessToken: string): boolean;
  /** IPs currently blocked. */
  readonly blockedAddresses: readonly string[];
  /**
   * Blocks an IP as repeated failed logins would, for `durationMs` (by default the
   * `blockDurationMs` option): its connections are reset until then or {@link unblockAll}.
   */
  block(remoteAddress: string, durationMs?: number): void;
  /** Lifts every IP block and forgets past failed logins. */
  unblockAll(): void;
  /** Stops the server and destroys every connection, hanging ones included. Idempotent. */
  close(): Promise<void>;
}

/** Token request bodies are tiny; a larger one is refused without being kept in memory. */
const MAX_BODY_BYTES = 64 * 1024;

const TOKEN_PATH = /^(\/auth)?\/realms\/([^/]+)\/protocol\/openid-connect\/token$/;
const DISCOVERY_PATH = /^(\/auth)?\/realms\/([^/]+)\/\.well-known\/openid-configuration$/;

/** RFC 6749 §5.1 forbids caching token responses; Keycloak sends the same on its errors. */
const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };

/**
 * Starts an IAM emulator listening on `host:port`, and resolves once it accepts connections.
 * @see RFC 6749 §4.4 (client credentials grant), RFC 6750 (the resource API)
 */
export async function startIamEmulator(options: IamEmulatorOptions): Promise<IamEmulator> {
  const emulator = new IamEmulatorServer(options);
  await emulator.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return emulator;
}

class IamEmulatorServer implements IamEmulator {
  readonly realm: string;
  #url = '';
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #now: () => number;
  readonly #onRequest: ((entry: RequestLogEntry) => void) | undefined;
  readonly #clients: ClientRegistry;
  readonly #tokens = new TokenStore();
  readonly #faults = new FaultQueue();
  readonly #rateLimiter: RateLimiter;
  readonly #blocker: LoginBlocker;
  readonly #blockDurationMs: number;
  readonly #omitExpiresIn: boolean;
  readonly #tls: boolean;
  readonly #authMethodsSupported: readonly AuthMethod[];
  readonly #usedAssertionIds = new Map<string, number>();
  #tokenLifetimeSeconds: number;
  #expClaimLifetimeSeconds: number | undefined;
  #requests: RequestLogEntry[] = [];
  #resourceRequests: ResourceRequestLogEntry[] = [];
  #closing: Promise<void> | undefined;

  constructor(options: IamEmulatorOptions) {
    this.realm = options.realm ?? 'demo';
    this.#now = options.now ?? Date.now;
    this.#onRequest = options.onRequest;
    this.#clients = new ClientRegistry(options.clients);
    this.#tokenLifetimeSeconds = checkLifetime(options.tokenLifetimeSeconds ?? 300, 'IamEmulatorOptions.tokenLifetimeSeconds');
    this.#omitExpiresIn = options.omitExpiresIn ?? false;
    this.#rateLimiter = new RateLimiter(checkPositive(options.rateLimitPerSecond ?? 50, 'IamEmulatorOptions.rateLimitPerSecond'));
    this.#blockDurationMs = checkPositive(options.blockDurationMs ?? 60_000, 'IamEmulatorOptions.blockDurationMs');
    this.#blocker = new LoginBlocker({
      threshold: checkPositive(options.blockAfterFailedLogins ?? 10, 'IamEmulatorOptions.blockAfterFailedLogins'),
      windowMs: checkPositive(options.blockWindowMs ?? 60_000, 'IamEmulatorOptions.blockWindowMs'),
      blockDurationMs: this.#blockDurationMs,
    });

    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch(() => {
        // The client went away mid-request (or close() destroyed the socket): nobody to answer.
        if (!res.headersSent && !res.destroyed) sendText(res, 500, 'text/plain', 'Internal error in the IAM emulator');
      });
    };
    this.#tls = options.tls !== undefined;
    this.#authMethodsSupported =
      options.authMethodsSupported ??
      AUTH_METHODS.filter((method) => this.#tls || !(MTLS_AUTH_METHODS as readonly string[]).includes(method));
    // With TLS every client is asked for a certificate, but none is required: the handshake
    // succeeds either way and the token endpoint decides, as a real IAM's mTLS endpoint does.
    this.#server = options.tls
      ? createHttpsServer(
          {
            cert: options.tls.cert,
            key: options.tls.key,
            requestCert: true,
            rejectUnauthorized: false,
            ...(options.tls.clientCa !== undefined && { ca: options.tls.clientCa }),
          },
          handler,
        )
      : createServer(handler);
    this.#server.on('connection', (socket: Socket) => this.#onConnection(socket));
  }

  async listen(host: string, port: number): Promise<void> {
    this.#server.listen(port, host);
    await once(this.#server, 'listening');
    const address = this.#server.address() as AddressInfo;
    const hostInUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.#url = `${this.#tls ? 'https' : 'http'}://${hostInUrl}:${address.port}`;
  }

  get url(): string {
    return this.#url;
  }

  tokenUrl(realm = this.realm): string {
    return `${this.#url}/realms/${encodeURIComponent(realm)}/protocol/openid-connect/token`;
  }

  legacyTokenUrl(realm = this.realm): string {
    return `${this.#url}/auth/realms/${encodeURIComponent(realm)}/protocol/openid-connect/token`;
  }

  get requests(): readonly RequestLogEntry[] {
    return [...this.#requests];
  }

  requestsFor(clientId: string): RequestLogEntry[] {
    return this.#requests.filter((entry) => entry.clientId === clientId);
  }

  get resourceRequests(): readonly ResourceRequestLogEntry[] {
    return [...this.#resourceRequests];
  }

  clearLog(): void {
    this.#requests = [];
    this.#resourceRequests = [];
  }

  setClientSecret(clientId: string, secret: string): void {
    this.#clients.update(clientId, { clientSecret: secret });
  }

  updateClient(clientId: string, changes: Partial<Omit<EmulatorClient, 'clientId'>>): void {
    this.#clients.update(clientId, changes);
  }

  setTokenLifetime(seconds: number): void {
    this.#tokenLifetimeSeconds = checkLifetime(seconds, 'setTokenLifetime(seconds)');
  }

  setExpClaimLifetime(seconds: number | undefined): void {
    this.#expClaimLifetimeSeconds = seconds === undefined ? undefined : checkLifetime(seconds, 'setExpClaimLifetime(seconds)');
  }

  inject(fault: Fault, options?: FaultOptions): void {
    this.#faults.add(fault, options);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  get issuedTokens(): readonly IssuedToken[] {
    return this.#tokens.all();
  }

  isTokenActive(accessToken: string): boolean {
    return this.#tokens.inactiveReason(accessToken, this.#now()) === undefined;
  }

  revoke(accessToken: string): boolean {
    return this.#tokens.revoke(accessToken, this.#now());
  }

  get blockedAddresses(): readonly string[] {
    return this.#blocker.blocked(this.#now());
  }

  block(remoteAddress: string, durationMs = this.#blockDurationMs): void {
    this.#blocker.block(remoteAddress, this.#now(), durationMs);
  }

  unblockAll(): void {
    this.#blocker.unblockAll();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const closed = once(this.#server, 'close');
      this.#server.close();
      // Hanging requests and keep-alive connections would keep close() waiting forever.
      for (const socket of this.#sockets) socket.destroy();
      await closed;
    })();
    return this.#closing;
  }

  #log(entry: RequestLogEntry): void {
    this.#requests.push(entry);
    this.#onRequest?.(entry);
  }

  #onConnection(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const now = this.#now();
    const remoteAddress = remoteAddressOf(socket);
    if (this.#blocker.isBlocked(remoteAddress, now)) {
      // A blocked IP sees what docs/design.md, "What the IAM does", describes: a reset, before any
      // HTTP is exchanged.
      this.#log({ at: now, remoteAddress, outcome: 'blocked' });
      socket.resetAndDestroy();
    }
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = this.#now();
    const remoteAddress = remoteAddressOf(req.socket);
    const path = new URL(req.url ?? '/', 'http://emulator').pathname;

    // The IP may have been blocked while this keep-alive connection was open.
    if (this.#blocker.isBlocked(remoteAddress, at)) {
      this.#log({ at, remoteAddress, path, outcome: 'blocked' });
      req.socket.resetAndDestroy();
      return;
    }

    const tokenPath = TOKEN_PATH.exec(path);
    if (tokenPath !== null) return this.#handleTokenRequest(req, res, { at, remoteAddress, path, realm: decodePathSegment(tokenPath[2]) });

    const discoveryPath = DISCOVERY_PATH.exec(path);
    if (discoveryPath !== null && req.method === 'GET' && decodePathSegment(discoveryPath[2]) === this.realm) {
      return sendJson(res, 200, this.#discoveryDocument(discoveryPath[1] ?? ''));
    }

    if (path.startsWith(RESOURCE_API_PREFIX)) {
      const answer = answerResourceRequest(
        { method: req.method ?? 'GET', path, authorization: req.headers.authorization },
        { realm: this.realm, tokens: this.#tokens, now: at },
      );
      this.#resourceRequests.push({
        at,
        method: req.method ?? 'GET',
        path,
        remoteAddress,
        outcome: answer.outcome,
        status: answer.status,
        ...(answer.clientId === undefined ? {} : { clientId: answer.clientId }),
        ...(answer.accessToken === undefined ? {} : { accessToken: answer.accessToken }),
      });
      req.resume();
      return sendJson(res, answer.status, answer.body, answer.headers);
    }

    req.resume();
    sendJson(res, 404, { error: 'not_found', error_description: `No resource at ${path}` });
  }

  async #handleTokenRequest(
    req: IncomingMessage,
    res: ServerResponse,
    seen: { at: number; remoteAddress: string; path: string; realm: string | undefined },
  ): Promise<void> {
    const { at, remoteAddress, path } = seen;
    // Read the whole body before answering: answering first and closing would make the client
    // see a reset instead of the answer.
    const body = await readBody(req, MAX_BODY_BYTES);
    const request: TokenRequest = readTokenRequest(
      {
        method: req.method ?? 'GET',
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
        body: body.text,
        peerCertificate: peerCertificateOf(req.socket),
      },
      this.#clients,
    );
    if (body.tooLarge) request.params = { unreadable: `Request body larger than ${MAX_BODY_BYTES} bytes` };
    const logged: RequestLogEntry = {
      at,
      remoteAddress,
      path,
      authMethod: request.authMethod,
      ...(request.clientId === undefined ? {} : { clientId: request.clientId }),
      ...(request.assertion === undefined ? {} : { assertion: request.assertion }),
      ...(request.peerCertificate === undefined
        ? {}
        : { tlsClientSubject: new X509Certificate(request.peerCertificate.raw).subject.split('\n').join(',') }),
      ...withParams(loggableParams(request)),
      outcome: 'invalid_request',
    };

    if (!this.#rateLimiter.admit(remoteAddress, at)) {
      this.#log({ ...logged, outcome: 'rate_limited', status: 429 });
      return sendJson(res, 429, { error: 'too_many_requests' }, { 'Retry-After': '1', ...NO_STORE });
    }

    const fault = this.#faults.take(request.clientId);
    if (fault?.kind === 'hold') {
      fault.onHeld?.();
      await fault.release;
    } else if (fault !== undefined) {
      return this.#applyFault(fault, req, res, logged);
    }

    if (seen.realm !== this.realm) {
      // Keycloak's answer for a realm it does not have.
      this.#log({ ...logged, outcome: 'invalid_request', status: 404 });
      return sendJson(res, 404, { error: 'Realm does not exist' }, NO_STORE);
    }

    const answer = await answerTokenRequest(request, {
      realm: this.realm,
      issuer: this.#issuer(seen.path.startsWith('/auth/') ? '/auth' : ''),
      clients: this.#clients,
      tokens: this.#tokens,
      tokenLifetimeSeconds: this.#tokenLifetimeSeconds,
      expClaimLifetimeSeconds: this.#expClaimLifetimeSeconds,
      omitExpiresIn: this.#omitExpiresIn,
      tokenUrl: seen.path.startsWith('/auth/') ? this.legacyTokenUrl() : this.tokenUrl(),
      usedAssertionIds: this.#usedAssertionIds,
      now: at,
    });
    if (answer.failedAuthentication) this.#blocker.recordFailure(remoteAddress, at);
    this.#log({
      ...logged,
      outcome: answer.outcome,
      status: answer.status,
      ...(answer.accessToken === undefined ? {} : { accessToken: answer.accessToken }),
    });
    sendJson(res, answer.status, answer.body, { ...answer.headers, ...NO_STORE });
  }

  #applyFault(fault: Exclude<Fault, { kind: 'hold' }>, req: IncomingMessage, res: ServerResponse, logged: RequestLogEntry): void {
    const outcome = `fault:${fault.kind}` as const;
    switch (fault.kind) {
      case 'rate_limit': {
        const retryAfter = retryAfterHeaderValue(fault.retryAfter);
        this.#log({ ...logged, outcome, status: 429 });
        sendJson(
          res,
          429,
          { error: 'too_many_requests' },
          { ...(retryAfter === undefined ? {} : { 'Retry-After': retryAfter }), ...NO_STORE },
        );
        return;
      }
      case 'reset':
        this.#log({ ...logged, outcome });
        req.socket.resetAndDestroy();
        return;
      case 'hang':
        // Never answer: the socket stays open until the client gives up or close() destroys it.
        this.#log({ ...logged, outcome });
        return;
      case 'status':
        this.#log({ ...logged, outcome, status: fault.status });
        sendText(res, fault.status, fault.contentType ?? 'text/html', fault.body ?? proxyErrorPage(fault.status));
        return;
      case 'body': {
        const status = fault.status ?? 200;
        this.#log({ ...logged, outcome, status });
        sendText(res, status, fault.contentType ?? 'application/json', fault.body, NO_STORE);
        return;
      }
    }
  }

  /** The realm's discovery document, for the demo and for tools that start from the issuer. */
  #discoveryDocument(pathPrefix: string): Record<string, unknown> {
    const tokenEndpoint = pathPrefix === '' ? this.tokenUrl() : this.legacyTokenUrl();
    return {
      issuer: this.#issuer(pathPrefix),
      token_endpoint: tokenEndpoint,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: this.#authMethodsSupported,
      token_endpoint_auth_signing_alg_values_supported: ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'ES256', 'EdDSA'],
      scopes_supported: this.#clients.allScopes(),
      // One endpoint serves both: it asks every client for a certificate (RFC 8705 §5).
      ...(this.#tls && { mtls_endpoint_aliases: { token_endpoint: tokenEndpoint } }),
    };
  }

  #issuer(pathPrefix: string): string {
    return `${this.#url}${pathPrefix}/realms/${encodeURIComponent(this.realm)}`;
  }
}

function checkLifetime(seconds: number, name: string): number {
  // RFC 6749 §5.1: expires_in is an integer number of seconds.
  if (!Number.isInteger(seconds) || seconds <= 0) throw new RangeError(`${name} must be a positive integer of seconds, got ${seconds}`);
  return seconds;
}

function checkPositive(value: number, name: string): number {
  if (!(value > 0)) throw new RangeError(`${name} must be greater than 0, got ${value}`);
  return value;
}

/** The TLS client certificate of a connection, if it is TLS and the client sent one. */
function peerCertificateOf(socket: Socket): PresentedCertificate | undefined {
  const tls = socket as Partial<TLSSocket>;
  if (typeof tls.getPeerCertificate !== 'function') return undefined;
  const certificate = tls.getPeerCertificate();
  if (certificate.raw === undefined) return undefined;
  return { raw: certificate.raw, authorized: tls.authorized === true };
}

/** The peer's IP, with IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) as plain IPv4. */
function remoteAddressOf(socket: Socket): string {
  const address = socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}

function decodePathSegment(segment: string | undefined): string | undefined {
  try {
    return segment === undefined ? undefined : decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function withParams(params: Record<string, string> | undefined): { params?: Record<string, string> } {
  return params === undefined ? {} : { params };
}

async function readBody(req: IncomingMessage, limitBytes: number): Promise<{ text: string; tooLarge: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    // Keep draining past the limit, so the client can read the answer.
    if (size <= limitBytes) chunks.push(buffer);
  }
  return { text: Buffer.concat(chunks).toString('utf8'), tooLarge: size > limitBytes };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendText(res, status, 'application/json', JSON.stringify(body), headers);
}

function sendText(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
