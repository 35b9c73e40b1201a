/**
 * Registers the project's search attributes on the worker's namespace when they are missing, so
 * `TokenState="credentials_rejected"` works in the UI on any namespace the worker is pointed at.
 */
import type { NativeConnection } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { TOKEN_SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';

// @temporalio/proto is CommonJS: Node's ESM loader exposes only its default export.
const IndexedValueType = proto.temporal.api.enums.v1.IndexedValueType;
const INDEXED_VALUE_TYPE = {
  KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
} as const;

/** Returns the names it added (empty when all were present). */
export async function ensureSearchAttributes(connection: NativeConnection, namespace: string): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = TOKEN_SEARCH_ATTRIBUTES.filter((key) => customAttributes?.[key.name] === undefined);
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((key) => [key.name, INDEXED_VALUE_TYPE[key.type]])),
  });
  return missing.map((key) => key.name);
}
