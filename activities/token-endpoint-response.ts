/**
 * What the token endpoint answered, before activities/token-endpoint.ts reads it as a token or an
 * error. In a file of its own so that the errors that carry it need not import the HTTP client.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** @see ClientCredentialsRequest.maxBodyBytes (activities/token-endpoint.ts) */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/**
 * What the token endpoint answered. The body may hold an access token, so it lives in a private
 * field behind a getter: logging or serializing a response shows status and headers only.
 */
export class TokenEndpointResponse {
  readonly status: number;
  readonly headers: Readonly<IncomingHttpHeaders>;
  /** When the request was sent (Unix ms); renewals are timed from here (docs/design.md, "Timing"). */
  readonly requestStartedAt: number;
  /** When the response headers arrived (Unix ms); `Retry-After` dates are relative to this. */
  readonly receivedAt: number;
  /** True when the body exceeded {@link TokenEndpointResponse.maxBodyBytes}: reading stopped, `body` is empty. */
  readonly oversized: boolean;
  /** The body size limit that applied. */
  readonly maxBodyBytes: number;
  readonly #body: string;

  constructor(init: {
    status: number;
    headers?: IncomingHttpHeaders;
    body?: string;
    requestStartedAt?: number;
    receivedAt?: number;
    oversized?: boolean;
    maxBodyBytes?: number;
  }) {
    this.status = init.status;
    this.headers = init.headers ?? {};
    this.receivedAt = init.receivedAt ?? Date.now();
    this.requestStartedAt = init.requestStartedAt ?? this.receivedAt;
    this.oversized = init.oversized ?? false;
    this.maxBodyBytes = init.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#body = this.oversized ? '' : (init.body ?? '');
  }

  /** The body as UTF-8 text; empty when {@link TokenEndpointResponse.oversized}. */
  get body(): string {
    return this.#body;
  }
}
