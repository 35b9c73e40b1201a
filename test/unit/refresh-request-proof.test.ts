/**
 * The origin proof of refresh-requests stream entries (docs/design.md, "The forced-refresh path"):
 * only the holder of a client's token can make it, it binds the client and the fingerprint it
 * names, and anything else (no proof, garbage, another token's proof) is refused. The exact values
 * every library must produce are the contract vectors (test/contract/vectors.json).
 */
import { createHmac } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  isValidRefreshRequestProof,
  REFRESH_REQUEST_PROOF_CONTEXT,
  refreshRequestProof,
  refreshRequestProofMessage,
} from 'token-lifecycle/contract';
import { loadContractVectors } from '../contract/contract-vectors.js';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.orders-token-7';
const OTHER_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.billing-token-3';
const FINGERPRINT = 'f94a2bdd1b8dcb29';

describe('refreshRequestProof', () => {
  test('is HMAC-SHA256 keyed with the token over the documented message, base64url without padding', () => {
    const message = `${REFRESH_REQUEST_PROOF_CONTEXT}\norders-service\n${FINGERPRINT}`;
    expect(refreshRequestProofMessage('orders-service', FINGERPRINT)).toBe(message);
    const expected = createHmac('sha256', TOKEN)
      .update(message)
      .digest('base64')
      .replace(/=+$/, '')
      .replace(/\+/g, '-')
      .replace(/\//g, '_');
    expect(refreshRequestProof(TOKEN, 'orders-service', FINGERPRINT)).toBe(expected);
    expect(refreshRequestProof(TOKEN, 'orders-service', FINGERPRINT)).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  test('gives the contract vectors', () => {
    for (const vector of loadContractVectors().refreshRequestProofs) {
      expect(refreshRequestProof(vector.accessToken, vector.clientId, vector.rejectedFingerprint), vector.name).toBe(vector.proof);
    }
  });

  test('binds the client, the fingerprint and the token: changing any one changes the proof', () => {
    const proof = refreshRequestProof(TOKEN, 'orders-service', FINGERPRINT);
    expect(refreshRequestProof(TOKEN, 'billing', FINGERPRINT)).not.toBe(proof);
    expect(refreshRequestProof(TOKEN, 'orders-service', '0123456789abcdef')).not.toBe(proof);
    expect(refreshRequestProof(TOKEN, 'orders-service', undefined)).not.toBe(proof);
    expect(refreshRequestProof(OTHER_TOKEN, 'orders-service', FINGERPRINT)).not.toBe(proof);
    // The fields are separated: a client ID cannot absorb the fingerprint line.
    expect(refreshRequestProof(TOKEN, `orders-service\n${FINGERPRINT}`, undefined)).not.toBe(proof);
  });
});

describe('isValidRefreshRequestProof', () => {
  const proof = refreshRequestProof(TOKEN, 'orders-service', FINGERPRINT);

  test('accepts the proof made with the same token, client and fingerprint', () => {
    expect(isValidRefreshRequestProof(proof, TOKEN, 'orders-service', FINGERPRINT)).toBe(true);
    expect(isValidRefreshRequestProof(refreshRequestProof(TOKEN, 'orders-service', undefined), TOKEN, 'orders-service', undefined)).toBe(
      true,
    );
  });

  test('refuses a proof made with another client’s token, for another client, or naming another fingerprint', () => {
    expect(
      isValidRefreshRequestProof(refreshRequestProof(OTHER_TOKEN, 'orders-service', FINGERPRINT), TOKEN, 'orders-service', FINGERPRINT),
    ).toBe(false);
    expect(isValidRefreshRequestProof(refreshRequestProof(TOKEN, 'billing', FINGERPRINT), TOKEN, 'orders-service', FINGERPRINT)).toBe(
      false,
    );
    expect(isValidRefreshRequestProof(proof, TOKEN, 'orders-service', undefined)).toBe(false);
    expect(isValidRefreshRequestProof(proof, TOKEN, 'billing', FINGERPRINT)).toBe(false);
  });

  test('refuses no proof, an empty one, garbage, the fingerprint itself, and near misses of any length', () => {
    for (const given of [
      undefined,
      '',
      'garbage',
      FINGERPRINT,
      TOKEN,
      proof.slice(0, -1),
      `${proof}A`,
      `${proof}=`,
      proof.toUpperCase(),
      `${proof.slice(0, -1)}${proof.endsWith('A') ? 'B' : 'A'}`,
      Buffer.from(proof, 'base64url').toString('hex'),
      'é'.repeat(43),
    ]) {
      expect(isValidRefreshRequestProof(given, TOKEN, 'orders-service', FINGERPRINT), String(given)).toBe(false);
    }
  });
});
