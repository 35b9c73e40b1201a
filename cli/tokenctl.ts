#!/usr/bin/env node
/**
 * `tokenctl`, the admin CLI (docs/design.md, "tokenctl and the admin API"): a thin shell over
 * {@link TokenAdmin} and {@link TokenStore}. Connection settings come only from the environment
 * ({@link readSettings}); each command connects to what it needs (Temporal, or Redis for `token`)
 * and nothing else.
 *
 * Exit codes: 0 done, 1 failed (the message says what was wrong and how to fix it), 2 usage.
 */
import { readFile } from 'node:fs/promises';
import { Client, Connection, isGrpcServiceError, NamespaceNotFoundError } from '@temporalio/client';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { TokenStore } from '../shared/token-store.js';
import { TOKEN_STATES, type TokenState } from '../workflows/messages.js';
import type { AuthMethod } from '../workflows/registration.js';
import { AlreadyRegisteredError, NotRegisteredError, RefreshFailedError, TokenAdmin } from '../client/admin.js';
import { createRedisClient, redactRedisUrl, type RedisClient } from '../shared/redis-connection.js';
import { InvalidRegistrationError, parseRegistration } from '../client/registration-schema.js';
import { readSettings, SettingsError, type Settings } from '../shared/settings.js';
import { errorMessage, innermostMessage } from '../shared/error-message.js';
import { TemporalUnreachableError, temporalConnectionOptions } from '../shared/temporal-connection.js';
import { InvalidClientsFileError, parseClientsFile } from './clients-file.js';
import { formatApplyResult, formatClientTable, formatInstant, formatRefreshed, formatStatus } from './format.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** How long a command waits for Temporal or Redis to answer before it gives up. */
const CONNECT_TIMEOUT_MS = 5_000;

const AUTH_METHODS: Record<string, AuthMethod> = { basic: 'client_secret_basic', post: 'client_secret_post' };

/** The flag an operator typed for each registration field, so problems name what to fix. */
const FLAG_OF_FIELD: Record<string, string> = {
  clientId: '<clientId>',
  tokenUrl: '--token-url',
  authMethod: '--auth',
  secretRef: '--secret',
  scope: '--scope',
  extraParams: '--param',
  policy: '--policy',
};

/** A failure whose message already says what went wrong and how to fix it. */
class CliError extends Error {}

/** The settings and connections of one run, opened on first use and closed at the end. */
class Session {
  private cachedSettings: Settings | undefined;
  private connection: Connection | undefined;
  private redis: RedisClient | undefined;

  /** Read on first use, so `--help` and usage errors work whatever the environment holds. */
  settings(): Settings {
    return (this.cachedSettings ??= readSettings());
  }

  async admin(): Promise<TokenAdmin> {
    const settings = this.settings();
    if (this.connection === undefined) {
      // Outside the try: an unreadable TLS file is a settings error, not an unreachable server.
      const options = temporalConnectionOptions(settings);
      try {
        this.connection = await Connection.connect({ ...options, connectTimeout: CONNECT_TIMEOUT_MS });
      } catch (err) {
        throw new TemporalUnreachableError(settings.TEMPORAL_ADDRESS, err);
      }
    }
    return new TokenAdmin(new Client({ connection: this.connection, namespace: settings.TEMPORAL_NAMESPACE }), {
      taskQueue: settings.TEMPORAL_TASK_QUEUE,
    });
  }

  async store(): Promise<TokenStore> {
    const settings = this.settings();
    // One attempt, no reconnects: a CLI should say Redis is down, not wait for it to come back.
    const redis = createRedisClient(settings.REDIS_URL, {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      sentinelRetryStrategy: () => null,
    });
    this.redis = redis;
    // connect() only rejects with "Connection is closed."; the 'error' event says why (and, left
    // unhandled, ioredis would log it).
    let socketError: Error | undefined;
    redis.on('error', (err: Error) => (socketError = err));
    try {
      await redis.connect();
    } catch (err) {
      throw new CliError(
        `cannot connect to Redis at ${redactRedisUrl(settings.REDIS_URL)} (${innermostMessage(socketError ?? err)}): check that it is running, or set REDIS_URL`,
      );
    }
    return new TokenStore(redis, { prefix: settings.TOKEN_KEY_PREFIX });
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
    await this.connection?.close();
  }
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

  program
    .command('register')
    .description('Register a client: start the workflow that keeps its token fresh in Redis.')
    .argument('<clientId>', 'the OAuth client ID')
    .requiredOption('--token-url <url>', "the IAM's token endpoint")
    .requiredOption('--secret <ref>', 'where the worker finds the secret: env:NAME or file:/absolute/path (never the secret itself)')
    .addOption(
      new Option('--auth <method>', 'client authentication: HTTP Basic or form body').choices(Object.keys(AUTH_METHODS)).default('basic'),
    )
    .option('--scope <scope>', 'space-delimited scope to request')
    .option('--param <key=value>', 'extra form parameter of the token request, e.g. audience=orders (repeatable)', collectParam)
    .option('--policy <json>', 'overrides of the refresh and backoff policy, e.g. \'{"refreshFraction":0.8}\'', parseJson)
    .action(async (clientId: string, options: RegisterOptions) => {
      const registration = parseRegistration({
        clientId,
        tokenUrl: options.tokenUrl,
        authMethod: AUTH_METHODS[options.auth],
        secretRef: options.secret,
        ...(options.scope !== undefined && { scope: options.scope }),
        ...(options.param !== undefined && { extraParams: options.param }),
        ...(options.policy !== undefined && { policy: options.policy }),
      });
      await (await session.admin()).register(registration);
      print(
        `Registered ${clientId}: tokens from ${registration.tokenUrl} (${registration.authMethod}), secret from ${registration.secretRef}. Follow it with: tokenctl status ${clientId}`,
      );
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
    .action(async (file: string, options: { prune?: true; purge?: true; dryRun?: true; json?: true }, command: Command) => {
      if (options.purge && !options.prune)
        command.error("error: option '--purge' needs '--prune': it deletes the tokens of the clients that --prune stops", {
          exitCode: EXIT_USAGE,
        });
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        throw new CliError(`cannot read ${file} (${innermostMessage(err)}): check the path`);
      }
      // Validated in full before anything is connected to, so a file with mistakes changes nothing.
      const registrations = parseClientsFile(text, file);
      const result = await (
        await session.admin()
      ).apply(registrations, { prune: options.prune === true, purge: options.purge === true, dryRun: options.dryRun === true });
      print(options.json ? JSON.stringify(result, null, 2) : formatApplyResult(result, file, options.dryRun === true));
      if (result.failed.length > 0) {
        const failures = result.failed.map((failure) => `  - could not ${failure.action} ${failure.clientId}: ${failure.message}`);
        throw new CliError(
          `${result.failed.length} of the changes failed (the others were applied):\n${failures.join('\n')}\nFix the cause and run tokenctl apply again.`,
        );
      }
    });

  program
    .command('refresh')
    .description('Ask for a new token now (refreshes are coalesced and rate-limited per client).')
    .argument('<clientId>', 'the OAuth client ID')
    .option('--wait', 'wait until the new token is in Redis and print it (generation, fingerprint, expiry)')
    .option('--reason <text>', 'why, shown in the workflow history')
    .action(async (clientId: string, options: { wait?: true; reason?: string }) => {
      const status = await (
        await session.admin()
      ).refresh(clientId, { wait: options.wait === true, ...(options.reason !== undefined && { reason: options.reason }) });
      print(
        status === null
          ? `Refresh of ${clientId} requested. Follow it with: tokenctl status ${clientId}`
          : formatRefreshed(status, Date.now()),
      );
    });

  program
    .command('status')
    .description("Show a client's token status, or without a client ID, list every client.")
    .argument('[clientId]', 'the OAuth client ID')
    .option('--json', 'print JSON')
    .action(async (clientId: string | undefined, options: { json?: true }) => {
      if (clientId === undefined) return list(session, { json: options.json });
      const status = await (await session.admin()).status(clientId);
      print(options.json ? JSON.stringify(status, null, 2) : formatStatus(status, Date.now()));
    });

  program
    .command('list')
    .description('List the registered clients.')
    .addOption(new Option('--state <state>', 'only clients in this state').choices(TOKEN_STATES))
    .option('--json', 'print a JSON array')
    .action((options: { state?: TokenState; json?: true }) => list(session, options));

  program
    .command('resume')
    .description('Try again after rejected credentials were fixed at the IAM.')
    .argument('<clientId>', 'the OAuth client ID')
    .action(async (clientId: string) => {
      await (await session.admin()).resume(clientId);
      print(`Resume sent to ${clientId}. Follow it with: tokenctl status ${clientId}`);
    });

  program
    .command('remove')
    .description("Stop a client's workflow; its token stays in Redis until it expires, unless --purge.")
    .argument('<clientId>', 'the OAuth client ID')
    .option('--purge', 'also delete the token from Redis')
    .action(async (clientId: string, options: { purge?: true }) => {
      const status = await (await session.admin()).remove(clientId, { purge: options.purge === true });
      const token = options.purge
        ? 'token deleted from Redis'
        : `token left in Redis until it expires ${formatInstant(status.expiresAt, Date.now())}`;
      print(`Removed ${clientId} (${token}).`);
    });

  program
    .command('token')
    .description('Print the current access token from Redis, for scripts: curl -H "Authorization: Bearer $(tokenctl token ID)"')
    .argument('<clientId>', 'the OAuth client ID')
    .option('--json', 'print every stored field as JSON')
    .action(async (clientId: string, options: { json?: true }) => {
      const token = await (await session.store()).read(clientId);
      if (token === null)
        throw new CliError(`no token for ${clientId} in Redis: is it registered and active? try tokenctl status ${clientId}`);
      print(options.json ? JSON.stringify(token, null, 2) : token.accessToken);
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

interface RegisterOptions {
  tokenUrl: string;
  secret: string;
  auth: string;
  scope?: string;
  param?: Record<string, string>;
  policy?: unknown;
}

async function list(session: Session, options: { state?: TokenState; json?: true | undefined }): Promise<void> {
  const rows = await (await session.admin()).list(options.state === undefined ? {} : { state: options.state });
  print(options.json ? JSON.stringify(rows, null, 2) : formatClientTable(rows, Date.now()));
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

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** The operator-facing message for a failed command: what was wrong and how to fix it. */
function describeFailure(err: unknown, session: Session): string {
  if (err instanceof CliError || err instanceof AlreadyRegisteredError || err instanceof TemporalUnreachableError) return err.message;
  if (err instanceof SettingsError) return `${err.message}\nFix these environment variables and try again.`;
  if (err instanceof InvalidClientsFileError) {
    return `${err.fileName} is invalid, nothing was changed:\n${err.problems.map((p) => `  - ${p}`).join('\n')}\nFix these and run it again; see tokenctl apply --help for the format.`;
  }
  if (err instanceof InvalidRegistrationError) {
    const problems = err.problems.map((problem) => `  - ${problem.replace(/^(\w+)/, (field) => FLAG_OF_FIELD[field] ?? field)}`);
    return `invalid registration, nothing was registered:\n${problems.join('\n')}\nSee tokenctl register --help.`;
  }
  if (err instanceof NotRegisteredError)
    return `${err.message}: register it with tokenctl register ${err.clientId} …, or see tokenctl list`;
  if (err instanceof RefreshFailedError) return `${err.message}. See tokenctl status ${err.clientId}`;
  if (err instanceof NamespaceNotFoundError) {
    return `Temporal namespace '${err.namespace}' not found at ${session.settings().TEMPORAL_ADDRESS}: set TEMPORAL_NAMESPACE to an existing namespace`;
  }
  if (isUnavailable(err)) return new TemporalUnreachableError(session.settings().TEMPORAL_ADDRESS, err).message;
  return errorMessage(err);
}

/** gRPC DEADLINE_EXCEEDED and UNAVAILABLE: the server did not answer (grpc-js is not a direct dependency). */
const UNREACHABLE_GRPC_CODES: ReadonlySet<number> = new Set([4, 14]);

/** A gRPC error of {@link UNREACHABLE_GRPC_CODES} anywhere in the cause chain: Temporal went away mid-command. */
function isUnavailable(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (isGrpcServiceError(e) && UNREACHABLE_GRPC_CODES.has(e.code)) return true;
  }
  return false;
}

async function main(argv: string[]): Promise<number> {
  const session = new Session();
  try {
    await buildProgram(session).parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander already printed its usage error (or the help) to the right stream.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    process.stderr.write(`error: ${describeFailure(err, session)}\n`);
    return EXIT_FAILED;
  } finally {
    await session.close();
  }
}

process.exitCode = await main(process.argv);
