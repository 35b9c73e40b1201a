#!/usr/bin/env node
/**
 * `tokenctl`, the admin CLI (docs/design.md, "tokenctl and the admin API"): a thin shell over
 * {@link TokenAdmin} and {@link TokenStore}. Connection settings come only from the environment;
 * each command connects to what it needs (Temporal, or Redis for `token`) and nothing else.
 *
 * This file only describes the commands: each one's code is loaded when it runs (cli/commands/),
 * so `--help` and a usage error cost no more than commander, and `token` never loads Temporal.
 *
 * Exit codes: 0 done, 1 failed (the message says what was wrong and how to fix it), 2 usage.
 */
import { enableCompileCache } from 'node:module';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { TOKEN_STATES, type TokenState } from '../workflows/token-states.js';
import { AUTH_METHODS, GRANTS, REFERENCE_FORM, type AuthMethod } from '../workflows/registration.js';
import { EXIT_FAILED, EXIT_USAGE } from './cli-error.js';
import type { RegistrationOptions } from './commands/registration-options.js';
import { Session } from './session.js';

/** The short forms of `--auth`, kept from before the other methods existed. */
const AUTH_METHOD_SHORT_FORMS: Record<string, AuthMethod> = { basic: 'client_secret_basic', post: 'client_secret_post' };

/**
 * The options that describe a registration, shared by `register` and `reconfigure` (where every
 * one is optional: only what is given changes).
 */
function addRegistrationOptions(command: Command, { reconfigure }: { reconfigure: boolean }): Command {
  const refHelp = (what: string) => `where the worker finds ${what}: ${REFERENCE_FORM} (never the value itself)`;
  return command
    .option('--token-url <url>', "the IAM's token endpoint (or --issuer)")
    .option('--issuer <url>', "the IAM's issuer: the token endpoint is read from its discovery document (or --token-url)")
    .addOption(
      new Option(
        '--auth <method>',
        `client authentication, by IANA name: ${AUTH_METHODS.join(', ')}; basic and post for short` +
          (reconfigure ? '' : ' (default: client_secret_basic)'),
      ).argParser(authMethodOfFlag),
    )
    .addOption(
      new Option(
        '--grant <grant>',
        'the grant: client_credentials, or jwt-bearer (RFC 7523 §2.1) with its assertion from --assertion or signed with --key' +
          (reconfigure ? '' : ' (default: client_credentials)'),
      ).choices(GRANTS),
    )
    .option('--secret <ref>', refHelp('the client secret (client_secret_basic, _post, _jwt)'))
    .option('--key <ref>', refHelp('the private key, PEM or JWK (private_key_jwt, tls_client_auth, self_signed_tls_client_auth)'))
    .option(
      '--assertion <ref>',
      `${refHelp('a client assertion (JWT) the platform mints and rotates, sent instead of signing one (private_key_jwt), or the jwt-bearer grant’s')}; or serviceaccount:<namespace>/<name> to have Kubernetes mint one for that service account`,
    )
    .option('--cert <ref>', refHelp('the client certificate, PEM (tls_client_auth, self_signed_tls_client_auth)'))
    .option('--ca <ref>', refHelp('CA certificates (PEM) trusted for the IAM, besides the public ones and NODE_EXTRA_CA_CERTS'))
    .option('--key-id <kid>', "the assertion's kid (default: the JWK's kid, else its RFC 7638 thumbprint, as tokenctl jwks prints it)")
    .option('--signing-alg <alg>', "the assertion's algorithm (default: HS256 for client_secret_jwt, by key type for private_key_jwt)")
    .option(
      '--assertion-audience <url>',
      'the aud of the assertion the worker signs or has minted for a service account, when the IAM wants another than the token endpoint (e.g. the issuer)',
    )
    .option('--assertion-subject <sub>', 'the sub of the jwt-bearer assertion the worker signs (default: the client ID)')
    .option('--proxy <url>', 'the HTTP proxy to the IAM, instead of HTTPS_PROXY / HTTP_PROXY of the worker (no credentials in it)')
    .option('--scope <scope>', 'space-delimited scope to request')
    .option('--param <key=value>', 'extra form parameter of the token request, e.g. audience=orders (repeatable)', collectParam)
    .option('--policy <json>', 'overrides of the refresh and backoff policy, e.g. \'{"refreshFraction":0.8}\'', parseJson);
}

function buildProgram(session: Session): Command {
  const program = new Command('tokenctl')
    .description('Register, inspect and steer the OAuth token workflows, and read tokens from Redis.')
    .addHelpText(
      'after',
      '\nConnection settings come from the environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE,\n' +
        'TEMPORAL_API_KEY / TEMPORAL_TLS_*, REDIS_URL, TOKEN_KEY_PREFIX.\n' +
        'Exit codes: 0 done, 1 failed, 2 usage.',
    )
    // Subcommands inherit these: usage errors become CommanderErrors that main() maps to exit 2.
    .exitOverride()
    .showHelpAfterError('(add --help for usage)');

  addRegistrationOptions(
    program
      .command('register')
      .description('Register a client: start the workflow that keeps its token fresh in Redis.')
      .argument('<clientId>', 'the OAuth client ID'),
    { reconfigure: false },
  )
    .addHelpText('after', REGISTER_HELP)
    .action(async (clientId: string, options: RegistrationOptions) => {
      await (await import('./commands/register.js')).register(session, clientId, options);
    });

  addRegistrationOptions(
    program
      .command('reconfigure')
      .description("Change a registered client's registration; the workflow requests a new token with it at once.")
      .argument('<clientId>', 'the OAuth client ID'),
    { reconfigure: true },
  )
    .addHelpText(
      'after',
      '\nOnly the options given change. --issuer replaces --token-url and the other way round; a new --auth drops the\n' +
        'references the new method does not use. The changed registration is checked as a whole before it is sent.',
    )
    .action(async (clientId: string, options: RegistrationOptions) => {
      await (await import('./commands/reconfigure.js')).reconfigure(session, clientId, options);
    });

  program
    .command('jwks')
    .description('Print the public JWK Set of key or certificate references, to publish at the IAM (private_key_jwt, mTLS).')
    .argument('<ref...>', `keys (PEM or JWK, private or public) or certificates (PEM): ${REFERENCE_FORM}`)
    .option(
      '--key-id <kid>',
      "the kid, as the registration sets it (one reference only; default: the JWK's kid, else the RFC 7638 thumbprint)",
    )
    .option('--signing-alg <alg>', 'the alg member (default: by key type, as the worker signs)')
    .action(async (refs: string[], options: { keyId?: string; signingAlg?: string }) => {
      await (await import('./commands/jwks.js')).jwks(refs, options);
    });

  program
    .command('apply')
    .description(
      'Make the registered clients match a YAML file: start new ones, reconfigure changed ones, and with --prune stop the ones not in it.',
    )
    .argument('<file>', 'the clients file (YAML; see below)')
    .option(
      '--prune',
      'stop the workflows of this task queue whose client is not in the file (their tokens stay in Redis until they expire)',
    )
    .option('--purge', "with --prune: also delete the pruned clients' tokens from Redis")
    .option('--dry-run', 'only print what would change')
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', APPLY_FILE_HELP)
    .action(async (file: string, options: import('./commands/apply.js').ApplyCommandOptions, command: Command) => {
      if (options.purge && !options.prune)
        command.error("error: option '--purge' needs '--prune': it deletes the tokens of the clients that --prune stops", {
          exitCode: EXIT_USAGE,
        });
      await (await import('./commands/apply.js')).apply(session, file, options);
    });

  program
    .command('refresh')
    .description('Ask for a new token now (refreshes are coalesced and rate-limited per client).')
    .argument('<clientId>', 'the OAuth client ID')
    .option('--wait', 'wait until the new token is in Redis and print it (generation, fingerprint, expiry)')
    .option('--reason <text>', 'why, shown in the workflow history')
    .action(async (clientId: string, options: { wait?: true; reason?: string }) => {
      await (await import('./commands/workflow-commands.js')).refresh(session, clientId, options);
    });

  program
    .command('status')
    .description("Show a client's token status, or without a client ID, list every client.")
    .argument('[clientId]', 'the OAuth client ID')
    .option('--json', 'print JSON')
    .action(async (clientId: string | undefined, options: { json?: true }) => {
      await (await import('./commands/workflow-commands.js')).status(session, clientId, options);
    });

  program
    .command('list')
    .description('List the registered clients.')
    .addOption(new Option('--state <state>', 'only clients in this state').choices(TOKEN_STATES))
    .option('--json', 'print a JSON array')
    .action(async (options: { state?: TokenState; json?: true }) => {
      await (await import('./commands/workflow-commands.js')).list(session, options);
    });

  program
    .command('patches')
    .description('Show, per workflow patch, how many running workflows began before it: at 0 it can be retired.')
    .option('--json', 'print a JSON array')
    .action(async (options: { json?: true }) => {
      await (await import('./commands/workflow-commands.js')).patches(session, options);
    });

  program
    .command('resume')
    .description('Try again after rejected credentials were fixed at the IAM.')
    .argument('<clientId>', 'the OAuth client ID')
    .action(async (clientId: string) => {
      await (await import('./commands/workflow-commands.js')).resume(session, clientId);
    });

  program
    .command('remove')
    .description("Stop a client's workflow; its token stays in Redis until it expires, unless --purge.")
    .argument('<clientId>', 'the OAuth client ID')
    .option('--purge', 'also delete the token from Redis')
    .action(async (clientId: string, options: { purge?: true }) => {
      await (await import('./commands/workflow-commands.js')).remove(session, clientId, options);
    });

  program
    .command('token')
    .description('Print the current access token from Redis, for scripts: curl -H "Authorization: Bearer $(tokenctl token ID)"')
    .argument('<clientId>', 'the OAuth client ID')
    .option('--json', 'print every stored field as JSON')
    .action(async (clientId: string, options: { json?: true }) => {
      await (await import('./commands/token.js')).token(session, clientId, options);
    });

  program
    .command('grant')
    .description("Create or update a Redis ACL user that may read only the given clients' tokens (or the worker's user, with --worker).")
    .argument('<user>', 'the Redis user name, e.g. the consuming service')
    .option('--clients <ids>', 'comma-separated client IDs whose tokens the user may read, e.g. orders-api,billing-api')
    .option('--refresh', 'also allow adding refresh requests to the refresh-requests stream')
    .option('--worker', "the worker's own least-privilege rules instead of a consumer's")
    .requiredOption('--password <ref>', `where the user's password is: ${REFERENCE_FORM} (never the password itself)`)
    .option('--print', 'print the users.acl line instead of applying it (no connection to Redis)')
    .addHelpText('after', GRANT_HELP)
    .action(async (user: string, options: import('./commands/grant.js').GrantOptions, command: Command) => {
      if ((options.clients === undefined) === (options.worker === undefined))
        command.error("error: give either '--clients <ids>' (a consumer) or '--worker'", { exitCode: EXIT_USAGE });
      if (options.worker && options.refresh)
        command.error("error: '--refresh' is for consumers: the worker's rules read the stream", { exitCode: EXIT_USAGE });
      await (await import('./commands/grant.js')).grant(session, user, options);
    });

  program
    .command('revoke')
    .description('Delete a Redis ACL user made by tokenctl grant; its open connections are closed.')
    .argument('<user>', 'the Redis user name')
    .action(async (user: string) => {
      await (await import('./commands/grant.js')).revoke(session, user);
    });

  return program;
}

const APPLY_FILE_HELP = `
The file lists every client of this task queue (TEMPORAL_TASK_QUEUE); defaults apply to each
client (a client's own values win; policy and extraParams merge per key; a client's tokenUrl or
issuer replaces the defaults' endpoint). Secrets, keys and certificates are references only:
env:NAME (the worker's environment) or file:/absolute/path (e.g. a mounted secret).

  defaults:
    issuer: https://iam.example.com/realms/prod      # or tokenUrl: …/protocol/openid-connect/token
    authMethod: client_secret_basic                  # or any method of tokenctl register --help
    caRef: file:/run/tls/corp-ca.pem                 # optional: a private CA
    policy: { refreshFraction: 0.85 }
  clients:
    - clientId: orders-api
      secretRef: env:ORDERS_API_SECRET
      scope: orders.read
    - clientId: billing-api
      authMethod: private_key_jwt
      keyRef: file:/run/keys/billing-api.pem
      extraParams: { audience: billing }
    - clientId: shipping-api
      authMethod: tls_client_auth
      certRef: file:/run/tls/shipping-api.crt
      keyRef: file:/run/tls/shipping-api.key

Every mistake is listed with its path (e.g. clients[1].secretRef) and nothing is changed.
Running it again with the same file changes nothing.`;

const GRANT_HELP = `
Needs Redis 7.0 or later. REDIS_URL must connect as a user allowed to run ACL (e.g. redis://admin:…@host:6379);
an update replaces every earlier right of the user. With --print nothing connects: the line goes into a
users.acl file (then ACL LOAD). The password is hashed (SHA-256, as Redis stores it); it is never printed or sent.

  tokenctl grant orders-api --clients orders-api --refresh --password env:ORDERS_REDIS_PASSWORD
  tokenctl grant reporting --clients orders-api,billing-api --password file:/run/secrets/reporting-redis
  tokenctl grant token-worker --worker --password env:WORKER_REDIS_PASSWORD --print >> users.acl
  tokenctl revoke reporting

The consumer then connects as that user: REDIS_URL=redis://orders-api:<password>@host:6379.`;

function authMethodOfFlag(flag: string): AuthMethod {
  const method = AUTH_METHOD_SHORT_FORMS[flag] ?? AUTH_METHODS.find((name) => name === flag);
  if (method === undefined) {
    throw new InvalidArgumentError(
      `Allowed choices are ${AUTH_METHODS.join(', ')} (or ${Object.keys(AUTH_METHOD_SHORT_FORMS).join(', ')} for short).`,
    );
  }
  return method;
}

const REGISTER_HELP = `
Examples (references only: the worker resolves them for every request, so a rotated file is used at once):
  tokenctl register orders-api --token-url https://iam.example.com/realms/prod/protocol/openid-connect/token --secret env:ORDERS_SECRET
  tokenctl register orders-api --issuer https://iam.example.com/realms/prod --auth private_key_jwt --key file:/run/keys/orders.pem
  tokenctl register orders-api --issuer https://iam.example.com/realms/prod --auth tls_client_auth \\
    --cert file:/run/tls/orders.crt --key file:/run/tls/orders.key --ca file:/run/tls/corp-ca.pem

With --issuer, tokenctl reads the discovery document from this machine (through HTTPS_PROXY / --proxy) and
refuses a method the IAM does not list; if it cannot reach the issuer, it says so and registers anyway (the
worker reads the document itself).`;

function collectParam(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const equals = value.indexOf('=');
  if (equals <= 0) throw new InvalidArgumentError('expected key=value, e.g. --param audience=orders-api');
  return { ...previous, [value.slice(0, equals)]: value.slice(equals + 1) };
}

function parseJson(value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON (${(err as Error).message}); quote it, e.g. '{"refreshFraction":0.8}'`);
  }
}

// The commands' modules (zod, ioredis, the Temporal client: hundreds of files) are compiled once and
// cached on disk (the OS's temp directory, or NODE_COMPILE_CACHE), not at every run: a CLI starts
// often. Static imports above are already compiled by now; everything a command loads is not.
enableCompileCache();

async function main(argv: string[]): Promise<number> {
  const session = new Session();
  try {
    await buildProgram(session).parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander already printed its usage error (or the help) to the right stream.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    const { failureMessage, isUsageError } = await import('./failure-message.js');
    process.stderr.write(`error: ${failureMessage(err, session.temporalAddress())}\n`);
    return isUsageError(err) ? EXIT_USAGE : EXIT_FAILED;
  } finally {
    await session.close();
  }
}

process.exitCode = await main(process.argv);
