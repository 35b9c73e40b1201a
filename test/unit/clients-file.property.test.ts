/**
 * The clients file of `tokenctl apply` (cli/clients-file.ts) and registrations given to the admin
 * API (client/registration-schema.ts) are typed by people, and a secret pasted where its reference
 * belongs is the mistake that matters: whatever the text, parsing ends in registrations or an
 * `InvalidClientsFileError` / `InvalidRegistrationError` whose message never holds the secret, and
 * a valid registration written as YAML is read back as itself.
 */
import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, test } from 'vitest';
import { InvalidClientsFileError, parseClientsFile } from '../../cli/clients-file.js';
import { InvalidRegistrationError, parseRegistration } from '../../client/registration-schema.js';
import { AUTH_METHODS, CREDENTIALS_OF_METHOD } from '../../workflows/registration.js';
import { anyText, errorText, propertyOptions, secretArbitrary } from '../support/property-arbitraries.js';

/** Where a secret gets pasted: a reference field, a key that names a secret, any other field. */
const SECRET_PLACES = [
  'secretRef',
  'keyRef',
  'certRef',
  'caRef',
  'clientSecret',
  'client_secret',
  'password',
  'privateKey',
  'key',
  'keyId',
  'tokenUrl',
  'issuer',
  'proxyUrl',
  'authMethod',
  'signingAlg',
  'unknownField',
] as const;

const reference = fc.oneof(
  fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,20}$/).map((name) => `env:${name}`),
  fc.stringMatching(/^\/[a-z0-9/._-]{1,30}$/).map((path) => `file:${path}`),
);

/** A valid registration: any method with exactly the references it needs. */
const validRegistration = fc
  .record({
    clientId: fc.stringMatching(/^[\x21-\x7e]{1,40}$/),
    tokenUrl: fc.constantFrom('https://iam.example.com/token', 'http://127.0.0.1:8080/realms/a/protocol/openid-connect/token'),
    authMethod: fc.constantFrom(...AUTH_METHODS),
    scope: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    extraParams: fc.option(fc.dictionary(fc.stringMatching(/^[a-z]{1,10}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }), {
      nil: undefined,
    }),
    caRef: fc.option(reference, { nil: undefined }),
    refs: fc.record({ secretRef: reference, keyRef: reference, assertionRef: reference, certRef: reference }),
  })
  .map(({ refs, authMethod, ...rest }) => {
    const needed = CREDENTIALS_OF_METHOD[authMethod];
    const registration: Record<string, unknown> = { ...rest, authMethod };
    for (const field of needed) registration[field] = refs[field];
    return Object.fromEntries(Object.entries(registration).filter(([, value]) => value !== undefined));
  })
  .filter((registration) => {
    const params = registration.extraParams as Record<string, string> | undefined;
    return (
      params === undefined ||
      !['grant_type', 'client_id', 'client_secret', 'scope', 'client_assertion', 'client_assertion_type'].some((k) => k in params)
    );
  });

describe('parseClientsFile', () => {
  test('any text yields registrations or an InvalidClientsFileError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyText,
          fc.jsonValue().map((value) => stringify(value)),
        ),
        (text) => {
          try {
            parseClientsFile(text, 'clients.yaml');
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidClientsFileError);
          }
        },
      ),
      propertyOptions,
    );
  });

  test('a secret pasted into any field of an entry or of the defaults is never echoed', () => {
    fc.assert(
      fc.property(
        validRegistration,
        secretArbitrary,
        fc.constantFrom(...SECRET_PLACES),
        fc.boolean(),
        (registration, secret, place, inDefaults) => {
          const text = stringify(
            inDefaults ? { defaults: { [place]: secret }, clients: [registration] } : { clients: [{ ...registration, [place]: secret }] },
          );
          try {
            parseClientsFile(text, 'clients.yaml');
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidClientsFileError);
            expect(errorText(error)).not.toContain(secret);
            return;
          }
          // Accepted only where the secret is harmless: a key ID is not secret.
          expect(place).toBe('keyId');
        },
      ),
      propertyOptions,
    );
  });

  test('a valid registration written as YAML is read back as parseRegistration reads it', () => {
    fc.assert(
      fc.property(fc.uniqueArray(validRegistration, { selector: (r) => r.clientId, minLength: 1, maxLength: 4 }), (registrations) => {
        expect(parseClientsFile(stringify({ clients: registrations }), 'clients.yaml')).toEqual(
          registrations.map((r) => parseRegistration(r)),
        );
      }),
      propertyOptions,
    );
  });
});

describe('parseRegistration', () => {
  test('any value yields a registration or an InvalidRegistrationError that never holds a pasted secret', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue(), validRegistration),
        secretArbitrary,
        fc.constantFrom(...SECRET_PLACES),
        (input, secret, place) => {
          const value = typeof input === 'object' && input !== null && !Array.isArray(input) ? { ...input, [place]: secret } : input;
          try {
            parseRegistration(value);
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidRegistrationError);
            expect(errorText(error)).not.toContain(secret);
          }
        },
      ),
      propertyOptions,
    );
  });
});
