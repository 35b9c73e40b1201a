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
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { TOKEN_STATES, type TokenState } from '../workflows/token-states.js';
import type { AuthMethod } from '../workflows/registration.js';
import { EXIT_FAILED, EXIT_USAGE } from './cli-error.js';
import { Session } from './session.js';

/** The short forms of `--auth`. */
const AUTH_METHOD_FLAGS: Record<string, AuthMethod> = { basic: 'client_secret_basic', post: 'client_secret_post' };

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

  program
    .command('register')
    .description('Register a client: start the workflow that keeps its token fresh in Redis.')
    .argument('<clientId>', 'the OAuth client ID')
    .requiredOption('--token-url <url>', "the IAM's token endpoint")
    .requiredOption('--secret <ref>', 'where the worker finds the secret: env:NAME or file:/absolute/path (never the secret itself)')
    .addOption(
      new Option('--auth <method>', 'client authentication: basic (HTTP Basic) or post (form body)')
        .default('client_secret_basic', 'basic')
        .argParser(authMethodOfFlag),
    )
    .option('--scope <scope>', 'space-delimited scope to request')
    .option('--param <key=value>', 'extra form parameter of the token request, e.g. audience=orders (repeatable)', collectParam)
    .option('--policy <json>', 'overrides of the refresh and backoff policy, e.g. \'{"refreshFraction":0.8}\'', parseJson)
    .action(async (clientId: string, options: import('./commands/register.js').RegisterOptions) => {
      await (await import('./commands/register.js')).register(session, clientId, options);
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

  return program;
}

const APPLY_FILE_HELP = `
The file lists every client of this task queue (TEMPORAL_TASK_QUEUE); defaults apply to each
client (a client's own values win; policy and extraParams merge per key). Secrets are references
only: secretRef is env:NAME (the worker's environment) or file:/absolute/path (e.g. a mounted secret).

  defaults:
    tokenUrl: https://iam.example.com/realms/prod/protocol/openid-connect/token
    authMethod: client_secret_basic        # or client_secret_post
    policy: { refreshFraction: 0.85 }
  clients:
    - clientId: orders-api
      secretRef: env:ORDERS_API_SECRET
      scope: orders.read
    - clientId: billing-api
      secretRef: file:/run/secrets/billing-api
      extraParams: { audience: billing }

Every mistake is listed with its path (e.g. clients[1].secretRef) and nothing is changed.
Running it again with the same file changes nothing.`;

function authMethodOfFlag(flag: string): AuthMethod {
  const method = AUTH_METHOD_FLAGS[flag];
  if (method === undefined) throw new InvalidArgumentError(`Allowed choices are ${Object.keys(AUTH_METHOD_FLAGS).join(', ')}.`);
  return method;
}

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

async function main(argv: string[]): Promise<number> {
  const session = new Session();
  try {
    await buildProgram(session).parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander already printed its usage error (or the help) to the right stream.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    const { failureMessage } = await import('./failure-message.js');
    process.stderr.write(`error: ${failureMessage(err, await session.temporalAddress())}\n`);
    return EXIT_FAILED;
  } finally {
    await session.close();
  }
}

process.exitCode = await main(process.argv);
