/**
 * The message announced on `<prefix>token-updated` after every accepted token write (docs/design.md,
 * "Redis layout"; docs/redis-contract.md): JSON `{ clientId, generation, fingerprint, expiresAt }`,
 * never the token. Written by the store's script, read by the consumer libraries' caches and the
 * worker's expiry gauge.
 */

/** The JSON published on the token-updated channel. Times are Unix milliseconds. */
export interface TokenUpdatedMessage {
  clientId: string;
  generation: number;
  fingerprint: string;
  expiresAt: number;
}

/** What a reader takes from a message: the client and generation always, the rest when well-formed. */
export type ReceivedTokenUpdate = Pick<TokenUpdatedMessage, 'clientId' | 'generation'> & Partial<TokenUpdatedMessage>;

/** The message's text, its fields in a fixed order. */
export function formatTokenUpdated(message: TokenUpdatedMessage): string {
  const { clientId, generation, fingerprint, expiresAt } = message;
  return JSON.stringify({ clientId, generation, fingerprint, expiresAt });
}

/**
 * What an announcement says, or `undefined` for anything else on the channel (another program's
 * message, a truncated one). As the contract has it, a reader needs only a string `clientId` and an
 * integer `generation` to act on one (drop what it cached for an older generation); `fingerprint`
 * and `expiresAt` are kept when they are well-formed, for readers that use them.
 */
export function parseTokenUpdated(text: string): ReceivedTokenUpdate | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { clientId, generation, fingerprint, expiresAt } = value as Record<string, unknown>;
  if (typeof clientId !== 'string' || !Number.isSafeInteger(generation)) return undefined;
  return {
    clientId,
    generation: generation as number,
    ...(typeof fingerprint === 'string' && { fingerprint }),
    ...(Number.isSafeInteger(expiresAt) && (expiresAt as number) > 0 && { expiresAt: expiresAt as number }),
  };
}
