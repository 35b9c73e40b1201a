/**
 * Entries of the refresh-requests stream are written by any service with Redis access
 * (docs/design.md, "The forced-refresh path"): whatever fields an entry holds, parseRefreshRequest
 * (worker/refresh-request-consumer.ts) answers a request or a problem, never throws, never echoes a
 * value that may be a secret pasted in the wrong field, and reads back what the library writes.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { REFRESH_REQUEST_FIELDS } from '../../shared/redis-layout.js';
import { parseRefreshRequest } from '../../worker/refresh-request-consumer.js';
import { anyText, propertyOptions, secretArbitrary } from '../support/property-arbitraries.js';

const fieldName = fc.oneof(fc.constantFrom(...Object.values(REFRESH_REQUEST_FIELDS)), anyText);

describe('parseRefreshRequest', () => {
  test('any fields yield a request or a problem, and a problem never holds the value of rejectedFingerprint or reason', () => {
    fc.assert(
      fc.property(
        secretArbitrary,
        fc.option(fc.array(fc.oneof(fieldName, anyText), { maxLength: 9 }), { nil: null }),
        fc.constantFrom(REFRESH_REQUEST_FIELDS.rejectedFingerprint, REFRESH_REQUEST_FIELDS.reason),
        (secret, fields, secretField) => {
          const withSecret = fields === null ? null : [...fields, secretField, secret];
          const parsed = parseRefreshRequest(withSecret);
          if (parsed.ok) {
            expect(parsed.clientId).toMatch(/^[\x21-\x7e]{1,200}$/);
            if (parsed.request.rejectedFingerprint !== undefined) expect(parsed.request.rejectedFingerprint).toMatch(/^[0-9a-f]{16}$/);
            expect(typeof parsed.request.reason).toBe('string');
          } else {
            expect(typeof parsed.problem).toBe('string');
            expect(parsed.problem).not.toContain(secret);
          }
        },
      ),
      propertyOptions,
    );
  });

  test('an entry as the library writes it is read back (consumers/node/src/refresh-request.ts)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[\x21-\x7e]{1,200}$/),
        fc.option(fc.stringMatching(/^[0-9a-f]{16}$/), { nil: undefined }),
        fc.option(fc.string({ minLength: 1, maxLength: 100 }), { nil: undefined }),
        (clientId, rejectedFingerprint, reason) => {
          const fields = [
            REFRESH_REQUEST_FIELDS.clientId,
            clientId,
            ...(rejectedFingerprint === undefined ? [] : [REFRESH_REQUEST_FIELDS.rejectedFingerprint, rejectedFingerprint]),
            ...(reason === undefined ? [] : [REFRESH_REQUEST_FIELDS.reason, reason]),
          ];
          const parsed = parseRefreshRequest(fields);
          expect(parsed).toEqual({
            ok: true,
            clientId,
            request: { reason: reason ?? 'refresh-requests stream', ...(rejectedFingerprint !== undefined && { rejectedFingerprint }) },
          });
        },
      ),
      propertyOptions,
    );
  });
});
