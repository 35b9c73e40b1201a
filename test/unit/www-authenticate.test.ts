/**
 * The WWW-Authenticate parser decides whether a consumer asks the IAM for a new token, so it must
 * read real-world challenges exactly: quoted strings with commas and escapes, several challenges
 * in one header, scheme and parameter names in any case (RFC 9110 §11.6.1, RFC 6750 §3).
 */
import { describe, expect, test } from 'vitest';
import { findBearerChallenge, isInvalidTokenChallenge, parseWwwAuthenticate, WwwAuthenticateSyntaxError } from 'token-lifecycle';

describe('parseWwwAuthenticate', () => {
  test('reads a Bearer challenge with quoted parameters (RFC 6750 §3 example)', () => {
    expect(
      parseWwwAuthenticate('Bearer realm="example", error="invalid_token", error_description="The access token expired"'),
    ).toStrictEqual([
      { scheme: 'Bearer', params: { realm: 'example', error: 'invalid_token', error_description: 'The access token expired' } },
    ]);
  });

  test('keeps commas, equals signs and escaped quotes inside quoted strings', () => {
    expect(parseWwwAuthenticate('Bearer error_description="a, b=c \\"quoted\\" \\\\ done", error="invalid_token"')).toStrictEqual([
      { scheme: 'Bearer', params: { error_description: 'a, b=c "quoted" \\ done', error: 'invalid_token' } },
    ]);
  });

  test('splits several challenges, whether their parameters are quoted or tokens', () => {
    expect(parseWwwAuthenticate('Basic realm="api", charset="UTF-8", Bearer realm=api, error=invalid_token, Negotiate')).toStrictEqual([
      { scheme: 'Basic', params: { realm: 'api', charset: 'UTF-8' } },
      { scheme: 'Bearer', params: { realm: 'api', error: 'invalid_token' } },
      { scheme: 'Negotiate', params: {} },
    ]);
  });

  test('reads a token68 challenge and a challenge without parameters before another one', () => {
    expect(parseWwwAuthenticate('Negotiate YIIBgwYGKwYBBQUCoIIBdzCC==, Bearer, NTLM')).toStrictEqual([
      { scheme: 'Negotiate', params: {}, token68: 'YIIBgwYGKwYBBQUCoIIBdzCC==' },
      { scheme: 'Bearer', params: {} },
      { scheme: 'NTLM', params: {} },
    ]);
  });

  test('lower-cases parameter names, allows whitespace around "=", keeps the first duplicate, skips empty list elements', () => {
    expect(parseWwwAuthenticate(' ,Bearer  Realm = "r" ,, ERROR="invalid_token", error="insufficient_scope" , ')).toStrictEqual([
      { scheme: 'Bearer', params: { realm: 'r', error: 'invalid_token' } },
    ]);
  });

  test('parses header lines given as an array as one list', () => {
    expect(parseWwwAuthenticate(['Basic realm="a"', 'Bearer error="invalid_token"']).map((challenge) => challenge.scheme)).toStrictEqual([
      'Basic',
      'Bearer',
    ]);
  });

  test.each([
    ['an unterminated quoted string', 'Bearer error="invalid_token'],
    ['a parameter without "="', 'Bearer realm="a" error="invalid_token"'],
    ['a parameter without a value', 'Bearer realm=, error="invalid_token"'],
    ['a scheme that is not a token', '"Bearer" error="invalid_token"'],
  ])('rejects %s with a typed error', (_what, header) => {
    expect(() => parseWwwAuthenticate(header)).toThrow(WwwAuthenticateSyntaxError);
    try {
      parseWwwAuthenticate(header);
    } catch (error) {
      expect((error as WwwAuthenticateSyntaxError).code).toBe('invalid_www_authenticate');
    }
  });
});

describe('findBearerChallenge', () => {
  test('finds the Bearer challenge among others, whatever the case of the scheme', () => {
    expect(
      findBearerChallenge(
        'Basic realm="a", bEaReR realm="api", scope="orders:read admin", error="insufficient_scope", error_uri="https://e.x/s"',
      ),
    ).toStrictEqual({
      realm: 'api',
      scope: 'orders:read admin',
      error: 'insufficient_scope',
      errorUri: 'https://e.x/s',
    });
  });

  test('is undefined when the header is absent, has no Bearer challenge, or is malformed', () => {
    expect(findBearerChallenge(undefined)).toBeUndefined();
    expect(findBearerChallenge('Basic realm="a", DPoP error="invalid_token"')).toBeUndefined();
    expect(findBearerChallenge('Bearer error="invalid_token')).toBeUndefined();
  });
});

describe('isInvalidTokenChallenge: the one 401 after which a consumer refreshes (RFC 6750 §3.1)', () => {
  test.each([
    ['Bearer error="invalid_token"', true],
    ['Bearer realm="demo", error="invalid_token", error_description="The access token was revoked"', true],
    ['bearer error=invalid_token', true],
    ['Basic realm="x", Bearer realm="api", error="invalid_token"', true],
    ['Bearer realm="api", error_description="error=\\"invalid_token\\""', false],
    ['Bearer realm="demo"', false],
    ['Bearer error="insufficient_scope", scope="admin"', false],
    ['Bearer error="invalid_request"', false],
    ['Bearer error="INVALID_TOKEN"', false],
    ['Basic error="invalid_token"', false],
    ['Basic realm="x", Bearer', false],
    ['Bearer error="invalid_token', false],
  ])('%s → %s', (header, expected) => {
    expect(isInvalidTokenChallenge(header)).toBe(expected);
  });

  test('is false without a header', () => {
    expect(isInvalidTokenChallenge(undefined)).toBe(false);
  });
});
