/**
 * Redis ACL rules (Redis 7.0 or later) for everything that connects to the token store: a consumer
 * that may read only the tokens of the clients it was granted, and the worker with only what it
 * runs (docs/design.md, "Redis access control"). Every rule is built here, from the names of
 * shared/redis-layout.ts, and nowhere else: `tokenctl grant` applies them (`ACL SETUSER`) or prints
 * them as a line of a `users.acl` file.
 *
 * A rule list never holds a password, only its SHA-256 (`#<hex>`), the form Redis stores and
 * compares; {@link aclPasswordHash} computes it.
 *
 * @see https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/
 */
import { createHash } from 'node:crypto';
import { CLIENT_ID_PATTERN, CLIENT_ID_RULE } from '../workflows/registration.js';
import {
  breakerKey,
  escapeGlob,
  generationsKey,
  listingLeaseKey,
  loginBudgetKey,
  loginProofKey,
  rateWindowKeyOfOrigin,
  refreshRequestsStream,
  tokenKey,
  tokenUpdatedChannel,
} from '../shared/redis-layout.js';

/** A rule list that cannot be built: the message names the input and what is wrong with it. */
export class AclRuleError extends Error {
  override name = 'AclRuleError';
  readonly code = 'invalid_acl_rule';
}

/**
 * An ACL user name as tokenctl creates one: a letter or digit, then up to 63 letters, digits, `.`,
 * `_`, `-` or `@`. No spaces (a `users.acl` line is split at spaces) and none of the characters
 * ACL rules or globs give a meaning to.
 */
export const ACL_USER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** How {@link ACL_USER_PATTERN} reads in an error message. */
export const ACL_USER_RULE = '1–64 letters, digits, ".", "_", "-" or "@", starting with a letter or digit';

/**
 * The connection commands every client library here sends or may send on its own: `INFO` (the
 * ioredis ready check; without it ioredis prints a warning on every connection), `PING` (the
 * health checks of go-redis and redis-py, also on a subscribed connection), `SELECT` (a database
 * number in `REDIS_URL`: key patterns apply in every database, so it widens nothing) and the
 * Redis Cluster topology queries (ioredis and redis-py read `CLUSTER SLOTS`, go-redis `CLUSTER
 * SHARDS`). `AUTH`, `HELLO` and `QUIT` need no permission. `CLIENT SETINFO` (Redis 7.2+), which
 * the libraries send and whose refusal they ignore, is left out: it serves nothing of theirs.
 */
const CONNECTION_COMMANDS = ['+info', '+ping', '+select', '+cluster|slots', '+cluster|shards'] as const;

/** Who a consumer user is and what it may do (see {@link consumerAclRules}). */
export interface ConsumerGrant {
  /** The OAuth client IDs whose tokens it may read. */
  clientIds: readonly string[];
  /** Whether it may add refresh requests (docs/design.md, "The forced-refresh path"). */
  refresh: boolean;
  /** `TOKEN_KEY_PREFIX` */
  prefix: string;
}

/**
 * How a consumer reads a token hash: `HMGET` (the Node, Go and Python libraries), `HGET` and
 * `HGETALL` (redis-cli and most Redis clients). All three read the hash only.
 */
const TOKEN_READ_COMMANDS = ['+hget', '+hmget', '+hgetall'] as const;

/**
 * The rules of a consumer (docs/redis-contract.md): {@link TOKEN_READ_COMMANDS} on the token hash of
 * each granted client, read-only (`%R~`); `SUBSCRIBE` to `<prefix>token-updated` (the announcements name
 * clients and generations, never a token); with `refresh`, `XADD` on `<prefix>refresh-requests`,
 * write-only (`%W~`: it cannot read other consumers' entries). Key and channel names are escaped,
 * so a client ID with `*`, `?`, `[` or `\` matches itself only.
 *
 * @throws {@link AclRuleError} naming the first client ID that is not one (`CLIENT_ID_PATTERN`), or when none is given.
 */
export function consumerAclRules(grant: ConsumerGrant): string[] {
  assertPrefix(grant.prefix);
  if (grant.clientIds.length === 0) throw new AclRuleError('no client IDs: name at least one client whose tokens the user may read');
  for (const clientId of grant.clientIds) {
    if (!CLIENT_ID_PATTERN.test(clientId)) throw new AclRuleError(`client ID ${JSON.stringify(clientId)} is invalid: ${CLIENT_ID_RULE}`);
  }
  const clientIds = [...new Set(grant.clientIds)];
  return [
    'resetchannels',
    '-@all',
    ...CONNECTION_COMMANDS,
    ...TOKEN_READ_COMMANDS,
    '+subscribe',
    ...(grant.refresh ? ['+xadd'] : []),
    ...clientIds.map((clientId) => `%R~${escapeGlob(tokenKey(grant.prefix, clientId))}`),
    ...(grant.refresh ? [`%W~${escapeGlob(refreshRequestsStream(grant.prefix))}`] : []),
    `&${escapeGlob(tokenUpdatedChannel(grant.prefix))}`,
  ];
}

/**
 * What the worker runs, by the code that runs it. Commands inside the Lua scripts are checked
 * against the user's rules like any other, so they are listed too.
 */
const WORKER_COMMANDS: readonly { commands: readonly string[]; by: string }[] = [
  { commands: CONNECTION_COMMANDS, by: 'the connection (ioredis)' },
  {
    // The script is sent as EVALSHA, and as EVAL after NOSCRIPT (a restarted or flushed Redis).
    commands: ['+evalsha', '+eval', '+time', '+hmget', '+hset', '+pexpireat', '+publish', '+zadd', '+hget', '+zscore', '+del'],
    by: 'the token store: the write script, the generation record, reads, `remove --purge` (shared/token-store.ts)',
  },
  {
    commands: ['+zremrangebyscore', '+zcard', '+zrange', '+pexpire'],
    by: 'the IAM rate window script (activities/endpoint-rate-window.ts)',
  },
  {
    commands: ['+hdel', '+pttl'],
    by: 'the endpoint breaker and failed-login budget scripts (activities/endpoint-breaker.ts, login-budget.ts); HDEL also the token write script, for a token written without refresh_at',
  },
  {
    commands: ['+get', '+set'],
    by: 'the login proofs (activities/login-budget.ts); the listing lease, whose scripts also run PEXPIRE and DEL (worker/redis-lease.ts)',
  },
  { commands: ['+scan', '+subscribe'], by: 'the token expiry gauge (worker/token-expiry-gauge.ts)' },
  {
    commands: [
      '+xgroup|create',
      '+xgroup|delconsumer',
      '+xreadgroup',
      '+xautoclaim',
      '+xinfo|consumers',
      '+xack',
      '+xdel',
      '+multi',
      '+exec',
    ],
    by: 'the refresh-requests stream reader (worker/redis-stream-reader.ts)',
  },
];

/**
 * The worker's least-privilege rules: the commands of {@link WORKER_COMMANDS} (each with the code
 * that runs it), read and write on its own keys of shared/redis-layout.ts (token hashes, the
 * generations record, the refresh-requests stream, breakers, rate windows, login budgets and
 * proofs, the listing lease) and the token-updated channel, which it publishes to (in the write script) and
 * subscribes to (the expiry gauge). `SCAN` names no key: it lists every key name of the database,
 * not their values.
 */
export function workerAclRules(prefix: string): string[] {
  assertPrefix(prefix);
  // A layout function with an empty variable part gives the fixed start of each family of keys.
  const families = [
    tokenKey(prefix, ''),
    breakerKey(prefix, ''),
    rateWindowKeyOfOrigin(prefix, ''),
    loginBudgetKey(prefix, ''),
    loginProofKey(prefix, ''),
    listingLeaseKey(prefix, ''),
  ].map((start) => `~${escapeGlob(start)}*`);
  return [
    'resetchannels',
    '-@all',
    ...new Set(WORKER_COMMANDS.flatMap(({ commands }) => commands)),
    ...families,
    `~${escapeGlob(generationsKey(prefix))}`,
    `~${escapeGlob(refreshRequestsStream(prefix))}`,
    `&${escapeGlob(tokenUpdatedChannel(prefix))}`,
  ];
}

/** The commands of {@link workerAclRules}, each with the code that runs it: for docs and messages. */
export function workerCommandsByPurpose(): readonly { commands: readonly string[]; by: string }[] {
  return WORKER_COMMANDS;
}

/** `#<hex>`: the SHA-256 of `password` in the form `ACL SETUSER` and `users.acl` take instead of the password. */
export function aclPasswordHash(password: string): string {
  return `#${createHash('sha256').update(password, 'utf8').digest('hex')}`;
}

/**
 * The arguments of `ACL SETUSER <user> …`: `reset` first, so an update leaves none of the user's
 * earlier rights, then `on`, the password hash and `rules`.
 *
 * @throws {@link AclRuleError} when `user` does not match {@link ACL_USER_PATTERN} or is `default`.
 */
export function aclSetUserArguments(user: string, passwordHash: string, rules: readonly string[]): string[] {
  assertUser(user);
  return [user, 'reset', 'on', passwordHash, ...rules];
}

/**
 * The line of a `users.acl` file for `user`, in the form `ACL LIST` prints: `user <name> on
 * #<sha256> <rules…>`. A user loaded from a file starts with no rights, so it needs no `reset`.
 *
 * @throws {@link AclRuleError} when `user` does not match {@link ACL_USER_PATTERN} or is `default`.
 */
export function aclFileLine(user: string, passwordHash: string, rules: readonly string[]): string {
  assertUser(user);
  return ['user', user, 'on', passwordHash, ...rules].join(' ');
}

/** @throws {@link AclRuleError} when `user` is not a user name tokenctl manages. */
export function assertUser(user: string): void {
  if (!ACL_USER_PATTERN.test(user)) throw new AclRuleError(`user name ${JSON.stringify(user)} is invalid: ${ACL_USER_RULE}`);
  // Resetting `default` would lock out every client that connects without a user name.
  if (user === 'default') throw new AclRuleError('user name "default" is reserved: it is the user of connections without a user name');
}

/** A `users.acl` line is split at whitespace: a prefix with any would split a rule. */
function assertPrefix(prefix: string): void {
  if (/[\s]/.test(prefix))
    throw new AclRuleError(`TOKEN_KEY_PREFIX ${JSON.stringify(prefix)} holds whitespace: no ACL rule can name its keys`);
}
