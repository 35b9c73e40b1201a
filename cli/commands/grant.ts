/**
 * `tokenctl grant` and `tokenctl revoke`: Redis ACL users for consumers and for the worker
 * (docs/design.md, "Redis access control"), with the rules of cli/redis-acl.ts. `grant` applies
 * them with `ACL SETUSER` through `REDIS_URL` (a user allowed to run `ACL`), or with `--print` only
 * prints the `users.acl` line, without connecting. The password is read from a reference and only
 * its SHA-256 is sent or printed.
 */
import { resolveReference } from '../../shared/references.js';
import { errorMessage } from '../../shared/error-message.js';
import { aclFileLine, aclPasswordHash, aclSetUserArguments, assertUser, consumerAclRules, workerAclRules } from '../redis-acl.js';
import { refreshRequestsStream, tokenUpdatedChannel } from '../../shared/redis-layout.js';
import type { RedisClient } from '../../shared/redis-connection.js';
import { isCredentialRef, REFERENCE_FORM } from '../../workflows/registration.js';
import { CliError, print } from '../cli-error.js';
import type { Session } from '../session.js';

/** Options of `tokenctl grant`. */
export interface GrantOptions {
  /** Comma-separated client IDs (a consumer). */
  clients?: string;
  /** The worker's rule set instead of a consumer's. */
  worker?: true;
  refresh?: true;
  /** A reference to the user's password: `env:NAME` or `file:/path`. */
  password: string;
  print?: true;
}

export async function grant(session: Session, user: string, options: GrantOptions): Promise<void> {
  assertUser(user);
  const prefix = (await session.redisSettings()).TOKEN_KEY_PREFIX;
  const rules = options.worker
    ? workerAclRules(prefix)
    : consumerAclRules({ clientIds: splitClientIds(options.clients ?? ''), refresh: options.refresh === true, prefix });
  const passwordHash = aclPasswordHash(await readPassword(options.password));

  if (options.print) {
    print(aclFileLine(user, passwordHash, rules));
    return;
  }
  const redis = await session.redisClient();
  if (user === (await acl(redis, 'WHOAMI'))) {
    throw new CliError(`${user} is the user REDIS_URL connects as: tokenctl does not replace its own rights (use another admin user)`);
  }
  const existed = (await acl(redis, 'GETUSER', user)) !== null;
  await acl(redis, 'SETUSER', ...aclSetUserArguments(user, passwordHash, rules));
  const what = options.worker
    ? 'the worker\'s rules (docs/deployment.md, "Redis access control")'
    : `read the tokens of ${[...new Set(splitClientIds(options.clients ?? ''))].join(', ')}, subscribe to ${tokenUpdatedChannel(prefix)}` +
      (options.refresh ? `, add refresh requests to ${refreshRequestsStream(prefix)}` : '');
  print(`${existed ? 'updated' : 'created'} Redis user ${user}: ${what}`);
}

export async function revoke(session: Session, user: string): Promise<void> {
  assertUser(user);
  const redis = await session.redisClient();
  if (user === (await acl(redis, 'WHOAMI'))) throw new CliError(`${user} is the user REDIS_URL connects as: tokenctl does not delete it`);
  const deleted = Number(await acl(redis, 'DELUSER', user));
  if (deleted === 0) throw new CliError(`no Redis user ${user}: nothing was revoked (ACL LIST shows the users)`);
  print(`deleted Redis user ${user}; its connections were closed`);
}

/** `a,b , c` → `['a', 'b', 'c']` (empty items dropped; the rules check each ID). */
function splitClientIds(list: string): string[] {
  return list
    .split(',')
    .map((clientId) => clientId.trim())
    .filter((clientId) => clientId !== '');
}

/** The password the reference names; never the value in a message. */
async function readPassword(ref: string): Promise<string> {
  if (!isCredentialRef(ref)) {
    // The password itself may have been typed here: do not echo it.
    throw new CliError(`--password takes a reference, ${REFERENCE_FORM}, not the password (got a ${ref.length}-character value)`);
  }
  try {
    return (await resolveReference(ref)).reveal();
  } catch (err) {
    throw new CliError(`--password: ${errorMessage(err)}`);
  }
}

/** `ACL <subcommand> …`, with a refusal explained: REDIS_URL's user must be allowed to manage users. */
async function acl(redis: RedisClient, subcommand: string, ...args: string[]): Promise<unknown> {
  try {
    return await redis.call('ACL', subcommand, ...args);
  } catch (err) {
    const message = errorMessage(err);
    if (message.startsWith('NOPERM'))
      throw new CliError(`Redis refused ACL ${subcommand} (${message}): set REDIS_URL to a user allowed to run ACL, or use --print`);
    if (/unknown (sub)?command/i.test(message))
      throw new CliError(`Redis refused ACL ${subcommand} (${message}): tokenctl grant needs Redis 7.0 or later`);
    throw new CliError(`Redis refused ACL ${subcommand} ${args[0] ?? ''}: ${message}`);
  }
}
