/**
 * Discovery (docs/design.md, "Discovery"): a registration may name the IAM by its issuer; its
 * token endpoint is then read from the issuer's metadata. Used by the worker (through
 * {@link IssuerMetadataCache}) and by tokenctl, which checks the auth method against the IAM's list
 * before it registers.
 *
 * The OpenID Connect form is tried first (`<issuer>/.well-known/openid-configuration`, OpenID
 * Connect Discovery 1.0 §4); when the issuer serves none (404), RFC 8414's form
 * (`<origin>/.well-known/oauth-authorization-server<path>`, RFC 8414 §3.1). The document must name
 * the same issuer (OpenID Connect Discovery 1.0 §4.3, RFC 8414 §3.3): otherwise it could send
 * credentials to another IAM.
 */
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import got, { TimeoutError } from 'got';
import type { AuthMethod } from '../workflows/registration.js';
import { describeConnectionFailure, egressOptions, type EgressOptions } from './egress.js';

/** What the worker and tokenctl use of an issuer's metadata. */
export interface IssuerMetadata {
  issuer: string;
  /** `token_endpoint` (RFC 8414 §2). */
  tokenEndpoint: string;
  /** `mtls_endpoint_aliases.token_endpoint`, for the mTLS methods (RFC 8705 §5). */
  mtlsTokenEndpoint?: string;
  /**
   * `token_endpoint_auth_methods_supported`; when the document omits it, `client_secret_basic`
   * alone, the default both specifications give (OpenID Connect Discovery 1.0 §3, RFC 8414 §2).
   */
  authMethodsSupported: readonly string[];
  /** Where the metadata came from. */
  documentUrl: string;
}

/** Why discovery failed, by the failure kinds of docs/design.md, "Failures". */
export class DiscoveryError extends Error {
  override name = 'DiscoveryError';
  constructor(
    readonly kind: 'blocked' | 'server_error' | 'malformed_response',
    message: string,
  ) {
    super(message);
  }

  get code(): string {
    return this.kind;
  }
}

/** How long the worker uses an issuer's metadata before it reads it again. */
export const DISCOVERY_CACHE_TTL_MS = 10 * 60_000;

const MAX_DOCUMENT_BYTES = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;

export interface DiscoveryOptions {
  egress?: EgressOptions;
  /** @default 10_000 */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The discovery URLs of `issuer`, in the order they are tried. */
export function discoveryUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname.replace(/\/$/, '');
  return [`${url.origin}${path}/.well-known/openid-configuration`, `${url.origin}/.well-known/oauth-authorization-server${path}`];
}

/**
 * Reads and checks an issuer's metadata.
 * @throws {@link DiscoveryError}: `blocked` when the issuer (or the proxy) could not be reached,
 *   `server_error` for an HTTP error, `malformed_response` for a document that is not usable.
 */
export async function fetchIssuerMetadata(issuer: string, options: DiscoveryOptions = {}): Promise<IssuerMetadata> {
  const [openIdUrl, oauthUrl] = discoveryUrls(issuer);
  let answer = await getJson(openIdUrl!, options);
  let documentUrl = openIdUrl!;
  if (answer.status === 404) {
    answer = await getJson(oauthUrl!, options);
    documentUrl = oauthUrl!;
  }
  if (answer.status !== 200) {
    throw new DiscoveryError('server_error', `Discovery document ${documentUrl} answered ${answer.status}: check the issuer`);
  }
  return parseIssuerMetadata(issuer, documentUrl, answer.body);
}

/** Checks a discovery document: the issuer it names, and the fields the worker uses. */
export function parseIssuerMetadata(issuer: string, documentUrl: string, body: string): IssuerMetadata {
  const malformed = (problem: string) => new DiscoveryError('malformed_response', `Discovery document ${documentUrl} ${problem}`);
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw malformed('is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw malformed('is not a JSON object');
  const document = json as Record<string, unknown>;
  if (document.issuer !== issuer) {
    throw malformed(
      `names the issuer ${JSON.stringify(document.issuer)}, not ${issuer}: the registration's issuer must be exactly the IAM's`,
    );
  }
  const tokenEndpoint = httpUrl(document.token_endpoint);
  if (tokenEndpoint === undefined) throw malformed('has no http(s) token_endpoint');
  const aliases = document.mtls_endpoint_aliases;
  const mtlsTokenEndpoint =
    typeof aliases === 'object' && aliases !== null ? httpUrl((aliases as Record<string, unknown>).token_endpoint) : undefined;
  const methods = document.token_endpoint_auth_methods_supported;
  if (methods !== undefined && !(Array.isArray(methods) && methods.every((m) => typeof m === 'string'))) {
    throw malformed('has a token_endpoint_auth_methods_supported that is not a list of names');
  }
  return {
    issuer,
    tokenEndpoint,
    ...(mtlsTokenEndpoint !== undefined && { mtlsTokenEndpoint }),
    authMethodsSupported: methods ?? ['client_secret_basic'],
    documentUrl,
  };
}

/** The token endpoint a method uses: the mTLS alias for the mTLS methods when there is one (RFC 8705 §5). */
export function tokenEndpointFor(metadata: IssuerMetadata, mtls: boolean): string {
  return mtls ? (metadata.mtlsTokenEndpoint ?? metadata.tokenEndpoint) : metadata.tokenEndpoint;
}

/** The problem with `method` for this IAM, or undefined when the IAM lists it. */
export function unsupportedMethodProblem(metadata: IssuerMetadata, method: AuthMethod): string | undefined {
  if (metadata.authMethodsSupported.includes(method)) return undefined;
  return `${metadata.issuer} does not support ${method} (its token_endpoint_auth_methods_supported: ${metadata.authMethodsSupported.join(', ') || 'none'})`;
}

/**
 * Issuer metadata per worker process, for {@link DISCOVERY_CACHE_TTL_MS}: one read per issuer
 * (and proxy and CA) at a time, however many clients ask; a failure is not kept.
 */
export class IssuerMetadataCache {
  readonly #entries = new Map<string, { until: number; metadata: Promise<IssuerMetadata> }>();

  constructor(
    private readonly fetch: (issuer: string, options: DiscoveryOptions) => Promise<IssuerMetadata> = fetchIssuerMetadata,
    private readonly ttlMs = DISCOVERY_CACHE_TTL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  get(issuer: string, options: DiscoveryOptions = {}): Promise<IssuerMetadata> {
    const key = JSON.stringify([issuer, options.egress?.proxyUrl ?? null, options.egress?.trustedCa ?? null]);
    const cached = this.#entries.get(key);
    if (cached !== undefined && cached.until > this.now()) return cached.metadata;
    // The signal is the first caller's; a cached read must not be cut by one caller's cancellation.
    const metadata = this.fetch(issuer, { ...options, signal: undefined });
    const entry = { until: Infinity, metadata };
    this.#entries.set(key, entry);
    metadata.then(
      () => (entry.until = this.now() + this.ttlMs),
      () => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
      },
    );
    return metadata;
  }
}

function httpUrl(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? value : undefined;
  } catch {
    return undefined;
  }
}

async function getJson(documentUrl: string, options: DiscoveryOptions): Promise<{ status: number; body: string }> {
  const url = new URL(documentUrl);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const connectMs = Math.ceil(timeoutMs / 2);
  const stream = got.stream(url, {
    headers: { accept: 'application/json', 'user-agent': 'token-lifecycle-worker' },
    retry: { limit: 0 },
    throwHttpErrors: false,
    followRedirect: false,
    timeout: { lookup: connectMs, connect: connectMs, secureConnect: connectMs, response: timeoutMs, request: timeoutMs },
    signal: options.signal,
    ...egressOptions(url, options.egress),
  });
  stream.on('error', () => {});
  try {
    const [head] = (await once(stream, 'response')) as [{ statusCode: number; headers: IncomingHttpHeaders }];
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_DOCUMENT_BYTES)
        throw new DiscoveryError('malformed_response', `Discovery document ${documentUrl} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
      chunks.push(chunk);
    }
    return { status: head.statusCode, body: Buffer.concat(chunks).toString('utf8') };
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (error instanceof DiscoveryError) throw error;
    const { kind, cause } = describeConnectionFailure(error);
    if (error instanceof TimeoutError || kind === 'blocked') {
      throw new DiscoveryError('blocked', `Discovery document ${documentUrl} could not be fetched: ${cause}`);
    }
    throw new DiscoveryError('server_error', `Discovery document ${documentUrl} could not be read: ${cause}`);
  } finally {
    stream.destroy();
  }
}
