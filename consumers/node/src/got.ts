/**
 * `token-lifecycle/got`: got requests that carry the token and recover once from `401
 * invalid_token` (RFC 6750 §3.1). got is an optional peer dependency: only this entry point needs it.
 *
 * @packageDocumentation
 */
export { bearerAuth, withBearerAuth } from './got-bearer-auth.js';
export type { BearerAuthOptions } from './got-bearer-auth.js';
