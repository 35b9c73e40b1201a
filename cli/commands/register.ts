/** `tokenctl register`: validates a registration and starts its workflow. */
import { parseRegistration } from '../../client/registration-schema.js';
import type { AuthMethod } from '../../workflows/registration.js';
import { print } from '../cli-error.js';
import type { Session } from '../session.js';

export interface RegisterOptions {
  tokenUrl: string;
  secret: string;
  auth: AuthMethod;
  scope?: string;
  param?: Record<string, string>;
  policy?: unknown;
}

export async function register(session: Session, clientId: string, options: RegisterOptions): Promise<void> {
  const registration = parseRegistration({
    clientId,
    tokenUrl: options.tokenUrl,
    authMethod: options.auth,
    secretRef: options.secret,
    ...(options.scope !== undefined && { scope: options.scope }),
    ...(options.param !== undefined && { extraParams: options.param }),
    ...(options.policy !== undefined && { policy: options.policy }),
  });
  await (await session.admin()).register(registration);
  print(
    `Registered ${clientId}: tokens from ${registration.tokenUrl} (${registration.authMethod}), secret from ${registration.secretRef}. Follow it with: tokenctl status ${clientId}`,
  );
}
