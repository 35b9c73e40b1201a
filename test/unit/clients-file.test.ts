/**
 * The mistakes a person makes in a clients file, each reported where it is and with what to do:
 * a key indented one step too deep, a misspelt field.
 */
import { describe, expect, test } from 'vitest';
import { InvalidClientsFileError, parseClientsFile } from '../../cli/clients-file.js';
import { InvalidRegistrationError, parseRegistration } from '../../client/registration-schema.js';

function problemsOf(text: string): readonly string[] {
  try {
    parseClientsFile(text, 'clients.yaml');
  } catch (err) {
    if (err instanceof InvalidClientsFileError) return err.problems;
    throw err;
  }
  throw new Error('the file was accepted');
}

const entry = ['clients:', '  - clientId: orders-api', '    tokenUrl: https://iam.example.com/token'];

describe('parseClientsFile', () => {
  test('a key indented deeper than the one above it is reported on its own line, not the line before', () => {
    expect(problemsOf([...entry, '    secretRef: env:ORDERS', '      scope: orders.read', ''].join('\n'))).toEqual([
      'line 5, column 7: indented deeper than line 4, whose key already has a value: line it up with the keys above it',
    ]);
  });

  test('a nested mapping under a key without a value is still fine', () => {
    expect(() =>
      parseClientsFile([...entry, '    secretRef: env:ORDERS', '    policy:', '      refreshFraction: 0.8', ''].join('\n'), 'c.yaml'),
    ).not.toThrow();
  });

  test('an unknown field is named with the known one it is closest to', () => {
    expect(problemsOf([...entry, '    secretRef: env:ORDERS', '    scopes: orders.read', ''].join('\n'))).toEqual([
      'clients[0].scopes: unknown field; did you mean scope?',
    ]);
    expect(problemsOf(['defaults:', '  policy: { refreshFracton: 0.8 }', ...entry, '    secretRef: env:ORDERS', ''].join('\n'))).toEqual([
      'defaults.policy.refreshFracton: unknown field; did you mean refreshFraction?',
    ]);
    expect(problemsOf(['client:', '  - clientId: orders-api', ''].join('\n'))).toContain('client: unknown field; did you mean clients?');
    expect(problemsOf([...entry, '    secretRef: env:ORDERS', '    colour: blue', ''].join('\n'))).toEqual([
      'clients[0].colour: unknown field',
    ]);
  });
});

describe('policy fields are typed as their defaults', () => {
  test('localRenewals takes a boolean, and a number field refuses one', () => {
    const withSecret = [...entry, '    secretRef: env:ORDERS'];
    expect(() => parseClientsFile([...withSecret, '    policy: { localRenewals: false }', ''].join('\n'), 'clients.yaml')).not.toThrow();
    expect(problemsOf([...withSecret, '    policy: { localRenewals: "no" }', ''].join('\n'))).toEqual([
      expect.stringMatching(/^clients\[0\]\.policy\.localRenewals: .*boolean/),
    ]);
    expect(problemsOf([...withSecret, '    policy: { refreshFraction: true }', ''].join('\n'))).toEqual([
      expect.stringMatching(/^clients\[0\]\.policy\.refreshFraction: .*number/),
    ]);
  });
});

describe('parseRegistration', () => {
  test('an unknown field of the admin API is named the same way', () => {
    const registration = { clientId: 'a', tokenUrl: 'https://iam.example.com/token', secretRef: 'env:A', tokenURL: 'x' };
    expect(() => parseRegistration(registration)).toThrow(
      expect.objectContaining({ constructor: InvalidRegistrationError, problems: ['tokenURL: unknown field; did you mean tokenUrl?'] }),
    );
  });
});
