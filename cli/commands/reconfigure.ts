/** `tokenctl reconfigure`: changes the given fields of a registered client. */
import { NotRegisteredError } from '../../client/admin.js';
import { parseRegistration } from '../../client/registration-schema.js';
import {
  applyRegistrationChanges,
  CREDENTIALS_OF_METHOD,
  FALLBACK_FIELDS,
  isAssertionMethod,
  REFERENCE_FIELDS,
} from '../../workflows/registration.js';
import { CliError, print } from '../cli-error.js';
import type { Session } from '../session.js';
import { checkAuthMethodsAtIssuers } from './discovery-check.js';
import { describeRegistration, fieldsOfOptions, type RegistrationOptions } from './registration-options.js';

export async function reconfigure(session: Session, clientId: string, options: RegistrationOptions): Promise<void> {
  const given = fieldsOfOptions(options);
  if (Object.keys(given).length === 0) throw new CliError('nothing to change: give at least one option (see tokenctl reconfigure --help)');
  const admin = await session.admin();
  const current = await admin.registration(clientId);
  if (current === null) throw new NotRegisteredError(clientId);

  const changes: Record<string, unknown> = { ...given };
  // One endpoint: naming it one way removes the other.
  if (given.issuer !== undefined && given.tokenUrl === undefined) changes.tokenUrl = null;
  if (given.tokenUrl !== undefined && given.issuer === undefined) changes.issuer = null;
  // A new method drops what the old one used and the new one does not (unless given again).
  if (options.auth !== undefined) {
    const used: readonly string[] = CREDENTIALS_OF_METHOD[options.auth];
    const unused = REFERENCE_FIELDS.filter((field) => field !== 'caRef' && !used.includes(field));
    const assertionFields = isAssertionMethod(options.auth) ? [] : ['keyId', 'signingAlg', 'assertionAudience'];
    const unusedLists = Object.entries(FALLBACK_FIELDS).flatMap(([list, single]) => (used.includes(single) ? [] : [list]));
    for (const field of [...unused, ...unusedLists, ...assertionFields]) if (given[field] === undefined) changes[field] = null;
  }
  // One reference given replaces the list of fallbacks for it (a clients file sets lists).
  for (const [list, single] of Object.entries(FALLBACK_FIELDS))
    if (given[single] !== undefined && given[list] === undefined) changes[list] = null;
  // private_key_jwt either signs with a key or sends the platform's assertion: naming one drops the other.
  if ((options.auth ?? current.authMethod) === 'private_key_jwt') {
    if (given.assertionRef !== undefined && given.keyRef === undefined) changes.keyRef = null;
    if (given.keyRef !== undefined && given.assertionRef === undefined) changes.assertionRef = null;
  }
  const registration = parseRegistration(applyRegistrationChanges(current, changes));
  await checkAuthMethodsAtIssuers([registration], () => '--auth');
  await admin.reconfigure(clientId, changes);
  print(
    `Reconfigured ${clientId}: ${describeRegistration(registration)}. A new token is requested now; follow it with: tokenctl status ${clientId}`,
  );
}
