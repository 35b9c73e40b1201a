/**
 * The token endpoint's answer is untrusted input (activities/token-endpoint.ts): whatever body,
 * status and `Retry-After` an IAM or a proxy in front of it sends, parsing ends in a token or a
 * typed `TokenEndpointError` of a known kind, its message never holds the access token, and a
 * well-formed answer is read back exactly (RFC 6749 §5.1, §5.2; RFC 9110 §10.2.3).
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { TokenEndpointError } from '../../activities/errors.js';
import {
  MAX_EXPIRES_IN_SECONDS,
  parseOAuthError,
  parseRetryAfter,
  processClientCredentialsResponse,
} from '../../activities/token-endpoint.js';
import { TokenEndpointResponse } from '../../activities/token-endpoint-response.js';
import { FAILURE_KINDS } from '../../workflows/failures.js';
import { anyText, errorText, propertyOptions, secretArbitrary } from '../support/property-arbitraries.js';

const RECEIVED_AT = Date.UTC(2026, 0, 15, 12, 0, 0);

/** What a server might put in a field: any JSON, and the odd forms real servers send. */
const fieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  anyText,
  fc.constantFrom('Bearer', 'bearer', 'BEARER', 'mac', '', '300', '0', '-1', '1e3', ' 300', '3.5', 'NaN', 'Infinity'),
  fc.double(),
  fc.integer({ min: -1, max: MAX_EXPIRES_IN_SECONDS + 1 }),
);

/** A body around the secret access token: it may sit in `access_token` or in any other field. */
const tokenBody = (secret: string) =>
  fc
    .record(
      {
        access_token: fc.oneof(fc.constant(secret), fc.constant(`${secret} with space`), fc.constant(`${secret}\n`), fieldValue),
        token_type: fieldValue,
        expires_in: fieldValue,
        scope: fieldValue,
        error: fc.oneof(fc.constantFrom('invalid_client', 'server_error', 'temporarily_unavailable', 'invalid_scope'), fieldValue),
        extra: fc.oneof(fc.constant(secret), fieldValue),
      },
      { requiredKeys: [] },
    )
    .map((body) => JSON.stringify(body));

const anyBody = (secret: string) =>
  fc.oneof(
    tokenBody(secret),
    anyText,
    tokenBody(secret).map((json) => json.slice(0, Math.floor(json.length / 2))),
    fc.jsonValue().map((value) => JSON.stringify(value)),
  );

const status = fc.oneof(fc.constant(200), fc.constantFrom(400, 401, 403, 429, 500, 502, 503, 301), fc.integer({ min: 100, max: 599 }));
const retryAfter = fc.option(
  fc.oneof(
    anyText,
    fc.nat().map(String),
    fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()),
  ),
  {
    nil: undefined,
  },
);

describe('processClientCredentialsResponse', () => {
  test('any answer yields a Bearer token or a TokenEndpointError of a known kind, never naming the token', () => {
    fc.assert(
      fc.property(
        secretArbitrary.chain((secret) => fc.tuple(fc.constant(secret), status, anyBody(secret), retryAfter, fc.boolean())),
        ([secret, statusCode, body, retry, oversized]) => {
          const response = new TokenEndpointResponse({
            status: statusCode,
            body,
            headers: retry === undefined ? {} : { 'retry-after': retry },
            receivedAt: RECEIVED_AT,
            oversized,
          });
          let result;
          try {
            result = processClientCredentialsResponse(response);
          } catch (error) {
            expect(error).toBeInstanceOf(TokenEndpointError);
            const failure = error as TokenEndpointError;
            expect(FAILURE_KINDS).toContain(failure.kind);
            expect(errorText(failure)).not.toContain(secret);
            if (failure.details.retryAfterMs !== undefined) expect(failure.details.retryAfterMs).toBeGreaterThanOrEqual(0);
            return;
          }
          expect(statusCode).toBe(200);
          expect(result.tokenType).toBe('Bearer');
          expect(result.accessToken.reveal()).toMatch(/^[\x21-\x7E]+$/);
          if (result.expiresInSeconds !== undefined) {
            expect(Number.isSafeInteger(result.expiresInSeconds)).toBe(true);
            expect(result.expiresInSeconds).toBeGreaterThanOrEqual(1);
            expect(result.expiresInSeconds).toBeLessThanOrEqual(MAX_EXPIRES_IN_SECONDS);
          }
          // Printing the result never shows the token.
          expect(JSON.stringify(result)).not.toContain(result.accessToken.reveal());
        },
      ),
      propertyOptions,
    );
  });

  test('a well-formed answer is read back exactly (RFC 6749 §5.1)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[\x21-\x7E]{1,300}$/),
        fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR'),
        fc.option(fc.oneof(fc.integer({ min: 1, max: MAX_EXPIRES_IN_SECONDS }), fc.integer({ min: 1, max: 86_400 }).map(String)), {
          nil: undefined,
        }),
        fc.option(fc.string({ maxLength: 80 }), { nil: undefined }),
        (accessToken, tokenType, expiresIn, scope) => {
          const body = JSON.stringify({ access_token: accessToken, token_type: tokenType, expires_in: expiresIn, scope });
          const result = processClientCredentialsResponse(new TokenEndpointResponse({ status: 200, body, receivedAt: RECEIVED_AT }));
          expect(result.accessToken.reveal()).toBe(accessToken);
          expect(result.tokenType).toBe('Bearer');
          expect(result.expiresInSeconds).toBe(expiresIn === undefined ? undefined : Number(expiresIn));
          expect(result.scope).toBe(scope);
        },
      ),
      propertyOptions,
    );
  });
});

describe('parseOAuthError', () => {
  test('any body yields undefined or a code and a printable, bounded description', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyText,
          fc.jsonValue().map((v) => JSON.stringify(v)),
          tokenBody('x'),
        ),
        (body) => {
          const parsed = parseOAuthError(body);
          if (parsed === undefined) return;
          expect(parsed.error).toMatch(/^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$/);
          if (parsed.description !== undefined) {
            // No control character: a description cannot forge a log line.
            expect(parsed.description).toMatch(/^[\x20-\x7E]*…?$/);
            expect(parsed.description.length).toBeLessThanOrEqual(201);
          }
        },
      ),
      propertyOptions,
    );
  });
});

describe('parseRetryAfter', () => {
  test('any value yields undefined or a finite number of milliseconds, never negative', () => {
    fc.assert(
      fc.property(fc.option(anyText, { nil: undefined }), fc.integer({ min: 0, max: 4_102_444_800_000 }), (value, now) => {
        const ms = parseRetryAfter(value, now);
        if (ms === undefined) return;
        expect(Number.isFinite(ms)).toBe(true);
        expect(ms).toBeGreaterThanOrEqual(0);
      }),
      propertyOptions,
    );
  });

  test('delta-seconds and the three HTTP-date forms round-trip (RFC 9110 §5.6.7)', () => {
    const seconds = fc.integer({ min: 0, max: 10 ** 9 });
    const dateMs = fc.integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(2099, 11, 31) }).map((ms) => Math.floor(ms / 1000) * 1000);
    fc.assert(
      fc.property(seconds, dateMs, fc.integer({ min: 0, max: Date.UTC(2100, 0, 1) }), (delay, at, now) => {
        expect(parseRetryAfter(String(delay), now)).toBe(delay * 1000);
        expect(parseRetryAfter(` ${delay} `, now)).toBe(delay * 1000);
        const expected = Math.max(0, at - now);
        expect(parseRetryAfter(new Date(at).toUTCString(), now)).toBe(expected);
        expect(parseRetryAfter(asctime(new Date(at)), now)).toBe(expected);
        if (new Date(at).getUTCFullYear() >= 2000 && new Date(at).getUTCFullYear() < 2050) {
          expect(parseRetryAfter(rfc850(new Date(at)), now)).toBe(expected);
        }
      }),
      propertyOptions,
    );
  });
});

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number) => String(n).padStart(2, '0');
const time = (d: Date) => `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;

/** `Sun Nov  6 08:49:37 1994` */
function asctime(d: Date): string {
  return `${DAYS[d.getUTCDay()]!.slice(0, 3)} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time(d)} ${d.getUTCFullYear()}`;
}

/** `Sunday, 06-Nov-94 08:49:37 GMT` (two-digit years: only where Date.parse reads them as this century's). */
function rfc850(d: Date): string {
  return `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${two(d.getUTCFullYear() % 100)} ${time(d)} GMT`;
}
