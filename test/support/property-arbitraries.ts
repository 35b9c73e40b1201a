/**
 * What the property tests (test/unit/*.property.test.ts) share: one seed and a bounded number of
 * runs, so every run of `make test` tries the same inputs in well under a minute, and secrets that
 * no parser could produce by accident, so finding one in an error message means it was echoed.
 */
import fc from 'fast-check';

/** The seed of every property test: a failure reproduces on every machine. */
export const PROPERTY_SEED = 16;

/** Runs per property: enough to reach the odd corners, few enough for the unit tier. */
export const PROPERTY_RUNS = 300;

/** `fc.assert` options of the property tests. */
export const propertyOptions = { seed: PROPERTY_SEED, numRuns: PROPERTY_RUNS } as const;

/** A secret (client secret, access token, password): printable, distinctive, at least 20 characters. */
export const secretArbitrary: fc.Arbitrary<string> = fc.stringMatching(/^[A-Za-z0-9\-._~+/]{12,40}$/).map((tail) => `S3cr3t-${tail}`);

/** Any text, including control characters, lone surrogates and long runs. */
export const anyText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: fc.constantFrom(' ', ',', '=', '"', '\\', '\t', '\n', 'a', 'B', '0'), maxLength: 60 }),
);

/** The messages of `error` and its causes, where a secret must never appear. */
export function errorText(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if (!(e instanceof Error)) {
      parts.push(JSON.stringify(e) ?? typeof e);
      break;
    }
    parts.push(`${e.name}: ${e.message} ${JSON.stringify(e)}`);
  }
  return parts.join('\n');
}
