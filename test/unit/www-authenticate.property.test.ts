/**
 * `WWW-Authenticate` comes from whatever API a consumer calls (consumers/node/src/www-authenticate.ts): any
 * header yields challenges or a `WwwAuthenticateSyntaxError`, `findBearerChallenge` never throws,
 * and challenges written by the grammar (RFC 9110 §11.6.1, RFC 6750 §3) are read back exactly.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { findBearerChallenge, isInvalidTokenChallenge, parseWwwAuthenticate, WwwAuthenticateSyntaxError } from 'token-lifecycle';
import { anyText, propertyOptions, secretArbitrary } from '../support/property-arbitraries.js';

const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/);
const quotable = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', ',', '=', '"', '\\', '\t', ';', 'é'), maxLength: 20 });
const quote = (value: string) => `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
const challenge = fc.record({
  scheme: token,
  params: fc.uniqueArray(fc.tuple(token, fc.oneof(token, quotable)), { selector: ([name]) => name.toLowerCase(), maxLength: 4 }),
});
const separators = fc.constantFrom(', ', ',', ' ,  ', ',,');
const whitespace = fc.constantFrom('', ' ', '  ');

describe('parseWwwAuthenticate', () => {
  test('any header yields challenges or a WwwAuthenticateSyntaxError; findBearerChallenge never throws', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, fc.array(anyText, { maxLength: 3 })), (header) => {
        try {
          const challenges = parseWwwAuthenticate(header);
          for (const c of challenges) expect(typeof c.scheme).toBe('string');
        } catch (error) {
          expect(error).toBeInstanceOf(WwwAuthenticateSyntaxError);
          expect((error as WwwAuthenticateSyntaxError).code).toBe('invalid_www_authenticate');
        }
        expect(() => findBearerChallenge(header)).not.toThrow();
        expect(typeof isInvalidTokenChallenge(header)).toBe('boolean');
      }),
      propertyOptions,
    );
  });

  test('the syntax error message does not quote the header: a token sent back in a challenge stays out of logs', () => {
    fc.assert(
      fc.property(secretArbitrary, anyText, anyText, (secret, before, after) => {
        const header = `${before}${secret}${after}`;
        try {
          parseWwwAuthenticate(header);
        } catch (error) {
          expect(error).toBeInstanceOf(WwwAuthenticateSyntaxError);
          expect((error as Error).message).not.toContain(secret);
        }
      }),
      propertyOptions,
    );
  });

  test('challenges written by the grammar are read back (RFC 9110 §11.6.1)', () => {
    fc.assert(
      fc.property(fc.array(challenge, { minLength: 1, maxLength: 4 }), separators, whitespace, (challenges, separator, bws) => {
        const header = challenges
          .map(({ scheme, params }) =>
            [
              scheme,
              params
                .map(([name, value]) => `${name}${bws}=${bws}${/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value) ? value : quote(value)}`)
                .join(separator),
            ]
              .filter(Boolean)
              .join(' '),
          )
          .join(separator);
        const parsed = parseWwwAuthenticate(header);
        expect(parsed.map((c) => c.scheme)).toStrictEqual(challenges.map((c) => c.scheme));
        parsed.forEach((c, i) => {
          expect(c.params).toStrictEqual(Object.fromEntries(challenges[i]!.params.map(([name, value]) => [name.toLowerCase(), value])));
        });
      }),
      propertyOptions,
    );
  });
});
