/**
 * The file `tokenctl apply` reads: the desired set of client registrations, in YAML, each
 * validated by {@link registrationSchema} (docs/design.md, "tokenctl and the admin API"; an
 * example in README, "`tokenctl apply`").
 */
import { isMap, LineCounter, parseDocument, type YAMLError } from 'yaml';
import { z } from 'zod';
import { REFERENCE_FORM, type ClientRegistration } from '../workflows/registration.js';
import { describeIssues, registrationFields, registrationSchema } from '../client/registration-schema.js';

/** Keys that would hold a secret: refused with a pointer to `secretRef`, and never echoed. */
const SECRET_KEYS: ReadonlySet<string> = new Set([
  'secret',
  'clientSecret',
  'client_secret',
  'password',
  'privateKey',
  'private_key',
  'key',
]);

/** The file has mistakes; `problems` lists each with its path (or line and column). Nothing was applied. */
export class InvalidClientsFileError extends Error {
  readonly code = 'invalid_clients_file';
  constructor(
    readonly fileName: string,
    readonly problems: readonly string[],
  ) {
    super(`${fileName} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'InvalidClientsFileError';
  }
}

const fileSchema = z
  .object({
    defaults: z.record(z.string(), z.unknown(), { error: 'must be a mapping of registration fields' }).optional(),
    clients: z.array(z.unknown(), {
      error: (issue) => (issue.input === undefined ? 'is required: a list of clients' : 'must be a list of clients'),
    }),
  })
  .strict();

/** The file's own keys, for a "did you mean" next to the registration's fields. */
const FILE_KEYS = Object.keys(fileSchema.shape);

const defaultsSchema = registrationFields.omit({ clientId: true }).partial();
const entrySchema = registrationFields.partial();

/**
 * Parses and validates the YAML text of a clients file.
 * @returns one registration per client, defaults merged and applied, in the file's order.
 * @throws {@link InvalidClientsFileError} listing every problem.
 */
export function parseClientsFile(text: string, fileName: string): ClientRegistration[] {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: false, lineCounter });
  const [syntaxError] = document.errors;
  if (syntaxError !== undefined) {
    // The first only: the parser's later errors follow from it and point further from the cause.
    throw new InvalidClientsFileError(fileName, [describeSyntaxError(syntaxError, text, lineCounter)]);
  }
  if (!isMap(document.contents))
    throw new InvalidClientsFileError(fileName, ['(root): must be a mapping with a `clients:` list (see tokenctl apply --help)']);

  const file = fileSchema.safeParse(document.toJS());
  if (!file.success) throw new InvalidClientsFileError(fileName, describeIssues(file.error.issues, '', FILE_KEYS));

  const problems: string[] = [];
  const defaults = withoutSecrets(file.data.defaults ?? {}, 'defaults', problems);
  const defaultsResult = defaultsSchema.safeParse(defaults);
  const fieldsWrongInDefaults = defaultsResult.success ? new Set<string>() : topLevelFields(defaultsResult.error.issues);
  if (!defaultsResult.success) problems.push(...describeIssues(defaultsResult.error.issues, 'defaults'));

  const registrations: ClientRegistration[] = [];
  const firstIndexOf = new Map<string, number>();
  file.data.clients.forEach((raw, index) => {
    const path = `clients[${index}]`;
    if (!isPlainObject(raw)) {
      problems.push(`${path}: must be a mapping with clientId, secretRef, …`);
      return;
    }
    const entry = withoutSecrets(raw, path, problems);
    const entryResult = entrySchema.safeParse(entry);
    const fieldsWrongHere = entryResult.success ? new Set<string>() : topLevelFields(entryResult.error.issues);
    if (!entryResult.success) problems.push(...describeIssues(entryResult.error.issues, path));

    // What is left to report about the merged entry: fields required but set nowhere. A field
    // already reported in the entry or in the defaults is not reported twice.
    const merged = registrationSchema.safeParse(mergeDefaults(defaults, entry));
    if (merged.success) registrations.push(merged.data);
    else {
      const fresh = merged.error.issues.filter((issue) => {
        const field = String(issue.path[0] ?? '');
        return !fieldsWrongHere.has(field) && !fieldsWrongInDefaults.has(field);
      });
      problems.push(...describeIssues(fresh, path).map((p) => (p.endsWith(': is required') ? `${p} (set it here or under defaults:)` : p)));
    }

    const clientId = entry.clientId;
    if (typeof clientId === 'string') {
      const first = firstIndexOf.get(clientId);
      if (first === undefined) firstIndexOf.set(clientId, index);
      else problems.push(`${path}.clientId: "${clientId}" is already listed at clients[${first}] (one entry per client ID)`);
    }
  });

  if (problems.length > 0) throw new InvalidClientsFileError(fileName, problems);
  return registrations;
}

/**
 * A YAML syntax error at the line to fix. A key indented deeper than the one above it, which
 * already has a value, reads as the rest of that value: the parser reports it at the value, the
 * line before the wrong one (YAML 1.2 §7.3.3, a plain scalar may span lines).
 */
function describeSyntaxError(error: YAMLError, text: string, lineCounter: LineCounter): string {
  if (error.code === 'BLOCK_AS_IMPLICIT_KEY' || error.code === 'MULTILINE_IMPLICIT_KEY') {
    const valueLine = lineCounter.linePos(error.pos[0]).line;
    const lines = text.split('\n');
    const indent = (line: string) => line.length - line.trimStart().length;
    const wrong = lines.findIndex(
      (line, index) => index >= valueLine && line.trim() !== '' && indent(line) > indent(lines[valueLine - 1]!),
    );
    if (wrong >= 0) {
      return `line ${wrong + 1}, column ${indent(lines[wrong]!) + 1}: indented deeper than line ${valueLine}, whose key already has a value: line it up with the keys above it`;
    }
  }
  const at = lineCounter.linePos(error.pos[0]);
  return `line ${at.line}, column ${at.col}: ${error.message.split('\n')[0]}`;
}

/** Drops keys that would hold a secret, reporting each (by path only: the value is never shown). */
function withoutSecrets(entry: Record<string, unknown>, path: string, problems: string[]): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entry)) {
    if (SECRET_KEYS.has(key))
      problems.push(
        `${path}.${key}: secrets and keys never go in this file (Temporal shows registrations to every operator); use secretRef or keyRef: ${REFERENCE_FORM}`,
      );
    else kept[key] = value;
  }
  return kept;
}

/** The two ways to name the IAM: an entry that names it one way replaces the defaults' either way. */
const ENDPOINT_FIELDS = ['tokenUrl', 'issuer'];

/**
 * The defaults under the entry: the entry's values win, nested mappings (policy, extraParams)
 * merge per key, and an entry's `tokenUrl` or `issuer` replaces the defaults' endpoint.
 */
function mergeDefaults(defaults: Record<string, unknown>, entry: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...defaults };
  if (ENDPOINT_FIELDS.some((field) => field in entry)) for (const field of ENDPOINT_FIELDS) delete merged[field];
  for (const [key, value] of Object.entries(entry)) {
    const base = merged[key];
    merged[key] = isPlainObject(base) && isPlainObject(value) ? mergeDefaults(base, value) : value;
  }
  return merged;
}

function topLevelFields(issues: readonly z.core.$ZodIssue[]): Set<string> {
  return new Set(issues.map((issue) => String(issue.path[0] ?? '')));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
