/**
 * What the IAM emulator records about the requests it saw, so tests can assert what a client
 * actually sent (which client, which authentication method, how often) and what it got back.
 */
import type { AuthMethod } from '../../workflows/registration.js';
import type { FaultKind } from './faults.js';

/**
 * How a token request authenticated the client, by the IANA names (RFC 7591 §2): told by what it
 * sent (a Basic header, `client_secret`, a `client_assertion` signed with HMAC or a key, a TLS
 * client certificate with `client_id`), or `none`.
 */
export type ClientAuthMethod = AuthMethod | 'none';

/** A client assertion as it arrived (RFC 7523 §3): its header and claims, never the JWT itself. */
export interface LoggedAssertion {
  alg?: string;
  kid?: string;
  iss?: string;
  sub?: string;
  aud?: string | string[];
  jti?: string;
  iat?: number;
  exp?: number;
}

/**
 * What the emulator did with a token request: an OAuth error code (RFC 6749 §5.2) when the
 * request reached the token endpoint's logic, or what the provider's edge did before it.
 */
export type TokenRequestOutcome =
  | 'issued'
  | 'unauthorized_client'
  | 'invalid_client'
  | 'invalid_scope'
  | 'invalid_request'
  | 'unsupported_grant_type'
  /** The per-IP rate limit of the provider's edge answered 429. */
  | 'rate_limited'
  /** The IP was blocked: the connection was reset before any HTTP answer. */
  | 'blocked'
  /** A fault injected with `inject()` decided the answer. */
  | `fault:${FaultKind}`;

/** One token request, as the emulator saw it. */
export interface RequestLogEntry {
  /** When the request arrived (Unix milliseconds, from the emulator's clock). */
  at: number;
  /**
   * The client ID the request named (Basic credentials or the `client_id` parameter), whether or
   * not it authenticated. Absent when the request named none or was reset before it was read.
   */
  clientId?: string;
  /** Absent when the request was refused before its body was read (a blocked IP). */
  authMethod?: ClientAuthMethod;
  /** The client assertion's header and claims, when the request sent one. */
  assertion?: LoggedAssertion;
  /** The TLS client certificate's subject, when the request presented one. */
  tlsClientSubject?: string;
  /** The peer's IP address, IPv4-mapped IPv6 addresses shown as plain IPv4. */
  remoteAddress: string;
  /** The request path, e.g. `/realms/demo/protocol/openid-connect/token`. */
  path?: string;
  outcome: TokenRequestOutcome;
  /** The HTTP status sent; absent when there was none (reset, hang). */
  status?: number;
  /** The access token issued, when the outcome is `issued`. */
  accessToken?: string;
  /**
   * The form parameters of the request except `client_secret` and `client_assertion` (`grant_type`,
   * `scope`, and extra ones such as `audience` or `resource`). Absent when the body was not read.
   */
  params?: Readonly<Record<string, string>>;
}

/** What the resource API did with a request (RFC 6750 §3.1 error codes, or `ok`). */
export type ResourceRequestOutcome =
  | 'ok'
  /** No bearer token at all: 401 without an error code (RFC 6750 §3.1). */
  | 'no_token'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_request'
  | 'not_found'
  | 'method_not_allowed';

/** One request to the resource API. */
export interface ResourceRequestLogEntry {
  at: number;
  method: string;
  path: string;
  remoteAddress: string;
  outcome: ResourceRequestOutcome;
  status: number;
  /** The client the presented token was issued to, when the token was known. */
  clientId?: string;
  /** The bearer token presented, if any. */
  accessToken?: string;
}
