/**
 * The package's public API (package.json `exports["."]`): the admin API, for operators and
 * provisioning code. {@link TokenAdmin} registers, inspects and steers the workflows through a
 * Temporal client; it is the API behind `tokenctl` (docs/design.md, "tokenctl and the admin API").
 *
 * Services that only need a token install the consumer library `token-lifecycle`
 * (consumers/node), which brings no Temporal SDK (docs/design.md, "The consumer library").
 *
 * @packageDocumentation
 */
export { AlreadyRegisteredError, NotRegisteredError, RefreshFailedError, TokenAdmin } from './admin.js';
export type { RegisteredClient, TokenAdminOptions } from './admin.js';
export type { ForceRefreshRequest, RegistrationChanges, TokenState, TokenStatus } from '../workflows/messages.js';
export type { LastError } from '../workflows/failures.js';
export {
  AUTH_METHODS,
  type AuthMethod,
  type ClientRegistration,
  type CredentialRef,
  type SigningAlgorithm,
} from '../workflows/registration.js';
