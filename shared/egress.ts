/**
 * The way from this process to the IAM (docs/design.md, "Network"): the egress proxy, the CA
 * certificates trusted for the IAM, and the TLS client certificate, as got options. Used by the
 * worker's token and discovery requests and by tokenctl's discovery check, so both reach the IAM
 * the same way.
 *
 * - Proxy: a registration's `proxyUrl` when it has one; otherwise `HTTPS_PROXY` / `HTTP_PROXY` /
 *   `ALL_PROXY` and `NO_PROXY` of the process's environment, read by `proxy-from-env` as curl
 *   reads them (lowercase names first; `NO_PROXY` entries match the host exactly, or as a suffix
 *   when they start with `.` or `*`; `*` alone disables the proxy; an entry may name a port). The
 *   request goes through a CONNECT tunnel (`hpagent`), `https:` and `http:` alike, so the proxy
 *   never sees the request itself.
 * - Trust: `trustedCa` (a registration's `caRef`) is added to the default store, which already
 *   holds the public CAs and `NODE_EXTRA_CA_CERTS`; it does not replace them.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import { getCACertificates } from 'node:tls';
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent';
import { getProxyForUrl } from 'proxy-from-env';

/** What a request needs to reach the IAM, besides its URL. */
export interface EgressOptions {
  /** The registration's proxy, used instead of the environment's (and regardless of `NO_PROXY`). */
  proxyUrl?: string | undefined;
  /** PEM CA certificates trusted for the IAM in addition to the default store. */
  trustedCa?: string | undefined;
  /** The TLS client certificate and its key, PEM (RFC 8705 §2). */
  clientCertificate?: { certificate: string; key: string } | undefined;
}

/** The got options that send a request to `url` the way {@link EgressOptions} say. */
export interface EgressGotOptions {
  agent?: { http?: HttpAgent; https?: HttpsAgent };
  https?: { certificateAuthority?: string[]; certificate?: string; key?: string };
}

/**
 * The proxy could not tunnel the request: it could not be reached, answered the CONNECT with
 * something other than 200 (refused, could not reach the IAM, wants authentication), or timed out.
 * Like the IAM's own connection failures, this is `blocked` (docs/design.md, "Failures").
 */
export class ProxyError extends Error {
  override name = 'ProxyError';
  readonly code = 'proxy_failed';

  constructor(
    /** The proxy, without credentials (see {@link proxyName}). */
    readonly proxy: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The proxy for a request to `url`: the registration's `proxyUrl`, else the environment's per
 * curl's rules, else none.
 */
export function proxyFor(url: URL, proxyUrl?: string): URL | undefined {
  const chosen = proxyUrl ?? getProxyForUrl(url);
  if (chosen === '') return undefined;
  try {
    return new URL(chosen);
  } catch {
    // Only the variable's role: its value may hold credentials.
    throw new TypeError(
      `The proxy for ${url.origin} is not a URL: check HTTPS_PROXY / HTTP_PROXY / ALL_PROXY or the registration's proxyUrl`,
    );
  }
}

/** How a proxy is named in messages and logs: scheme, host and port, never its credentials. */
export function proxyName(proxy: URL): string {
  return `${proxy.protocol}//${proxy.host}`;
}

/**
 * The got options for a request to `url`. A proxied request gets an agent of its own without
 * keep-alive: token requests are minutes apart, and a fresh tunnel per request picks up a changed
 * proxy, CA or client certificate at once.
 */
export function egressOptions(url: URL, options: EgressOptions = {}): EgressGotOptions {
  const https: NonNullable<EgressGotOptions['https']> = {};
  if (options.trustedCa !== undefined) https.certificateAuthority = [...defaultCertificates(), options.trustedCa];
  if (options.clientCertificate !== undefined) {
    https.certificate = options.clientCertificate.certificate;
    https.key = options.clientCertificate.key;
  }
  const proxy = proxyFor(url, options.proxyUrl);
  return {
    ...(Object.keys(https).length > 0 && { https }),
    ...(proxy !== undefined && {
      agent: url.protocol === 'https:' ? { https: tunnelAgent(HttpsProxyAgent, proxy) } : { http: tunnelAgent(HttpProxyAgent, proxy) },
    }),
  };
}

let defaults: readonly string[] | undefined;

/** The store Node.js trusts by default: its bundled public CAs, plus `NODE_EXTRA_CA_CERTS`. */
function defaultCertificates(): readonly string[] {
  defaults ??= getCACertificates('default');
  return defaults;
}

type CreateConnection = (options: { host?: string; port?: number }, callback: (error: Error | null, socket: Socket | null) => void) => void;

/**
 * An hpagent tunnel agent whose failures to set up the tunnel are {@link ProxyError}s naming the
 * proxy (hpagent's own say `Bad response: 403`, or only the socket error).
 */
function tunnelAgent<Agent extends typeof HttpProxyAgent | typeof HttpsProxyAgent>(AgentClass: Agent, proxy: URL): InstanceType<Agent> {
  const agent = new AgentClass({ proxy, keepAlive: false }) as InstanceType<Agent>;
  const tunnel = agent as unknown as { createConnection: CreateConnection };
  const createConnection = tunnel.createConnection.bind(agent);
  const name = proxyName(proxy);
  tunnel.createConnection = (options, callback) =>
    createConnection(options, (error, socket) => {
      if (error === null) return callback(null, socket);
      const target = `${options.host ?? ''}:${options.port ?? ''}`;
      const status = /^Bad response: (\d{3})$/.exec(error.message)?.[1];
      const message =
        status !== undefined
          ? `Proxy ${name} refused the tunnel to ${target}: it answered ${status}${proxyAdvice(Number(status))}`
          : `Proxy ${name} could not be reached: ${oneLine(error.message)}${codeOf(error)}`;
      callback(new ProxyError(name, message, { cause: error }), null);
    });
  return agent;
}

function proxyAdvice(status: number): string {
  if (status === 407) return ' (Proxy Authentication Required: give the credentials in HTTPS_PROXY as http://user:password@host:port)';
  if (status === 403) return ' (Forbidden: the proxy does not allow this destination)';
  if (status === 502 || status === 503 || status === 504) return ' (the proxy could not reach the IAM)';
  return '';
}

function codeOf(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !error.message.includes(code) ? ` (${code})` : '';
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * Error codes that mean no HTTP answer came back: the IAM (or a firewall in front of it) refused,
 * dropped or cut the connection. An IP block looks exactly like this (docs/design.md, "What the IAM
 * does").
 */
const BLOCKED_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET', // also "socket hang up" and "Client network socket disconnected before secure TLS connection was established"
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EPROTO',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  // DNS: the endpoint's name does not resolve (now); every client of that endpoint is affected alike.
  'ENOTFOUND',
  'EAI_AGAIN',
  // got: the connection closed before the body that Content-Length announced had arrived.
  'ERR_HTTP_CONTENT_LENGTH_MISMATCH',
]);

/** TLS handshake failures: OpenSSL and Node.js TLS codes, and certificate verification codes. */
const TLS_CODE = /^(?:ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_)|SELF_SIGNED_CERT/;

/**
 * What a request that got no answer ran into, for the caller's message: `blocked` for a
 * connection reset, refused or cut, a TLS handshake failure, a DNS failure, a proxy that could not
 * tunnel ({@link ProxyError}) or a timeout in any phase (`timedOut`, the caller's to tell);
 * `unexpected` for anything else (an unparseable HTTP answer, a bug). `cause` names the error code
 * and Node.js message, never request headers or body (got's errors carry the request options).
 */
export function describeConnectionFailure(error: unknown): { kind: 'blocked' | 'unexpected'; cause: string } {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof ProxyError) return { kind: 'blocked', cause: e.message };
  }
  if (!(error instanceof Error)) return { kind: 'unexpected', cause: String(error) };
  const rawCode = (error as { code?: unknown }).code;
  const code = typeof rawCode === 'string' ? rawCode : undefined;
  // OpenSSL messages span lines; one line keeps logs and the Temporal UI readable.
  const message = oneLine(error.message);
  const cause = code === undefined || message.includes(code) ? message : `${message} (${code})`;
  return { kind: code !== undefined && (BLOCKED_CODES.has(code) || TLS_CODE.test(code)) ? 'blocked' : 'unexpected', cause };
}
