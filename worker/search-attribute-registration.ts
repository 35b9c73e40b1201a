/**
 * Registers the project's search attributes on the worker's namespace when they are missing, so
 * `TokenState="credentials_rejected"` works in the UI on any namespace the worker is pointed at.
 *
 * Several workers start at once in a fleet, so this must be harmless when they race: the server
 * accepts adding an attribute that already exists (it keeps the existing one), and an
 * `ALREADY_EXISTS` answer is treated as success. What is checked is the end state: every
 * attribute present with its type.
 */
import type { NativeConnection } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { isGrpcServiceError } from '@temporalio/client';
import { TOKEN_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { errorMessage } from '../shared/error-message.js';

// @temporalio/proto is CommonJS: Node's ESM loader exposes only its default export.
const IndexedValueType = proto.temporal.api.enums.v1.IndexedValueType;
const INDEXED_VALUE_TYPE = {
  KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
} as const;

/** The flag value `temporal operator search-attribute create --type` expects, for messages. */
const CLI_TYPE = { KEYWORD: 'Keyword', DATETIME: 'Datetime', INT: 'Int' } as const;

/** gRPC ALREADY_EXISTS: another worker added the attribute between our list and our add. */
const GRPC_ALREADY_EXISTS = 6;

/**
 * The namespace's search attributes are not what the workflows need and could not be made so:
 * one exists with another type, or the worker may not add them (e.g. Temporal Cloud, where they
 * are added with `tcld` or in the Cloud UI). The message says which, and the command that fixes it.
 */
export class SearchAttributesSetupError extends Error {
  readonly code = 'search_attributes_setup';
  constructor(
    readonly namespace: string,
    readonly problems: readonly string[],
    options?: ErrorOptions,
  ) {
    super(`Search attributes of namespace '${namespace}' are not usable:\n${problems.map((p) => `  - ${p}`).join('\n')}`, options);
    this.name = 'SearchAttributesSetupError';
  }
}

/**
 * Adds the missing search attributes of {@link TOKEN_SEARCH_ATTRIBUTES} to `namespace`, then
 * checks that all are present with their types. Returns the names that were missing when it
 * looked (empty when all were present); when two workers race, both may report the same names.
 *
 * @throws {@link SearchAttributesSetupError} when one exists with another type, or adding failed.
 */
export async function ensureSearchAttributes(connection: NativeConnection, namespace: string): Promise<string[]> {
  const present = await listCustomAttributes(connection, namespace);
  assertNoTypeConflicts(namespace, present);
  const missing = TOKEN_SEARCH_ATTRIBUTES.filter((key) => present[key.name] === undefined);
  if (missing.length === 0) return [];

  try {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((key) => [key.name, INDEXED_VALUE_TYPE[key.type]])),
    });
  } catch (err) {
    if (!(isGrpcServiceError(err) && (err.code as number) === GRPC_ALREADY_EXISTS)) {
      throw new SearchAttributesSetupError(
        namespace,
        [
          `adding ${missing.map((key) => key.name).join(', ')} failed (${errorMessage(err)}); add them yourself: ${missing.map((key) => createCommand(namespace, key)).join('; ')}`,
        ],
        { cause: err },
      );
    }
  }

  // Whoever added them, the end state is what matters (a racing worker may have used a type of
  // its own; the server keeps the first).
  const after = await listCustomAttributes(connection, namespace);
  assertNoTypeConflicts(namespace, after);
  const stillMissing = TOKEN_SEARCH_ATTRIBUTES.filter((key) => after[key.name] === undefined);
  if (stillMissing.length > 0) {
    throw new SearchAttributesSetupError(
      namespace,
      stillMissing.map((key) => `${key.name} is still missing after adding it: ${createCommand(namespace, key)}`),
    );
  }
  return missing.map((key) => key.name);
}

async function listCustomAttributes(connection: NativeConnection, namespace: string): Promise<Record<string, number>> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  return customAttributes ?? {};
}

function assertNoTypeConflicts(namespace: string, present: Record<string, number>): void {
  const conflicts = TOKEN_SEARCH_ATTRIBUTES.filter(
    (key) => present[key.name] !== undefined && present[key.name] !== INDEXED_VALUE_TYPE[key.type],
  );
  if (conflicts.length === 0) return;
  throw new SearchAttributesSetupError(
    namespace,
    conflicts.map(
      (key) =>
        `${key.name} exists as ${IndexedValueType[present[key.name]!] ?? present[key.name]} but must be ${CLI_TYPE[key.type]}: remove it (temporal operator search-attribute remove --namespace ${namespace} --name ${key.name}) or use another namespace`,
    ),
  );
}

function createCommand(namespace: string, key: (typeof TOKEN_SEARCH_ATTRIBUTES)[number]): string {
  return `temporal operator search-attribute create --namespace ${namespace} --name ${key.name} --type ${CLI_TYPE[key.type]}`;
}
