/** `tokenctl register`: validates a registration, checks its method at the issuer, and starts its workflow. */
import { parseRegistration } from '../../client/registration-schema.js';
import { print } from '../cli-error.js';
import type { Session } from '../session.js';
import { checkAuthMethodsAtIssuers } from './discovery-check.js';
import { describeRegistration, fieldsOfOptions, type RegistrationOptions } from './registration-options.js';

export async function register(session: Session, clientId: string, options: RegistrationOptions): Promise<void> {
  const registration = parseRegistration({ clientId, ...fieldsOfOptions(options) });
  await checkAuthMethodsAtIssuers([registration], () => '--auth');
  await (await session.admin()).register(registration);
  print(`Registered ${clientId}: ${describeRegistration(registration)}. Follow it with: tokenctl status ${clientId}`);
}
