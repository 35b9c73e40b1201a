/**
 * The shape of test/contract/vectors.json, the Redis contract (docs/redis-contract.md) as data
 * that the Node, Go and Python consumer libraries' tests all read.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** What a key holds: a hash of string fields, another Redis type, or nothing. */
export type StoredValue = { type: 'hash'; fields: Record<string, string> } | { type: 'string'; value: string } | null;

/** A token as every library exposes it; times are Unix milliseconds. */
export interface ExpectedToken {
  accessToken: string;
  tokenType: string;
  expiresAt: number;
  obtainedAt: number;
  scope: string;
  generation: number;
  fingerprint: string;
  clientId: string;
}

export interface StoredTokenVector {
  name: string;
  clientId: string;
  stored: StoredValue;
  expect: { token: ExpectedToken } | { error: 'token_unavailable' } | { error: 'malformed_stored_token'; field?: string };
}

export interface WwwAuthenticateVector {
  name: string;
  header: string | string[] | null;
  /** The parsed challenges, `syntax_error` when the header breaks the grammar, null without a header. */
  challenges: { scheme: string; params: Record<string, string>; token68?: string }[] | 'syntax_error' | null;
  bearer: { realm?: string; error?: string; errorDescription?: string; errorUri?: string; scope?: string } | null;
  invalidToken: boolean;
}

export interface ResponseVector {
  name: string;
  status: number;
  wwwAuthenticate: string | string[] | null;
  /** Whether a consumer asks for a refresh (and retries once when a newer token arrives). */
  refresh: boolean;
}

export interface TokenUpdatedVector {
  name: string;
  payload: string;
  schemaValid: boolean;
  announces: { clientId: string; generation: number } | null;
  dropsCache: boolean;
}

export interface RefreshRequestVector {
  name: string;
  clientId: string;
  /** The token the requester holds: the key of the entry's `proof`. */
  accessToken: string;
  request: { rejectedFingerprint?: string; reason?: string; traceparent?: string };
  /** The stream entry's fields, in order: `[name, value, …]`. */
  fields: string[];
}

/** The origin proof of a refresh request (consumers/node/src/refresh-request-proof.ts): its inputs, the exact message, the proof. */
export interface RefreshRequestProofVector {
  name: string;
  accessToken: string;
  clientId: string;
  rejectedFingerprint?: string;
  message: string;
  proof: string;
}

/** A W3C `traceparent` value, and whether a reader keeps it (consumers/node/src/traceparent.ts) or drops it. */
export interface TraceparentVector {
  name: string;
  value: string;
  valid: boolean;
}

export interface ContractVectors {
  storedTokens: { now: number; vectors: StoredTokenVector[] };
  wwwAuthenticate: WwwAuthenticateVector[];
  responses: ResponseVector[];
  tokenUpdated: { cached: { clientId: string; generation: number }; messages: TokenUpdatedVector[] };
  refreshRequests: RefreshRequestVector[];
  refreshRequestProofs: RefreshRequestProofVector[];
  /** Refresh requests that carry a `traceparent` (outside the proof). */
  tracedRefreshRequests: RefreshRequestVector[];
  traceparents: TraceparentVector[];
}

export const CONTRACT_VECTORS_PATH = join(import.meta.dirname, 'vectors.json');

export function loadContractVectors(): ContractVectors {
  return JSON.parse(readFileSync(CONTRACT_VECTORS_PATH, 'utf8')) as ContractVectors;
}
