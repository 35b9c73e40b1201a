/** `tokenctl token`: the current access token from Redis, for scripts (Redis only, no Temporal). */
import { CliError, print } from '../cli-error.js';
import type { Session } from '../session.js';

export async function token(session: Session, clientId: string, options: { json?: true }): Promise<void> {
  const stored = await (await session.store()).read(clientId);
  if (stored === null)
    throw new CliError(`no token for ${clientId} in Redis: is it registered and active? try tokenctl status ${clientId}`);
  print(options.json ? JSON.stringify(stored, null, 2) : stored.accessToken);
}
