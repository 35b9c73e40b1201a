/**
 * The IAM emulator as a process, for `make demo` and manual tries:
 *
 * ```sh
 * npx tsx dev/iam-emulator/main.ts [config.yaml] [--port N] [--host H] [--quiet]
 * IAM_EMULATOR_CONFIG=my-clients.yaml npm run emulator
 * ```
 *
 * The configuration file is the first argument, else `IAM_EMULATOR_CONFIG`, else the demo
 * clients next to this file. It prints its URLs, then one line per token request, and stops on
 * SIGINT or SIGTERM. Exit codes: 0 stopped, 1 failed, 2 usage or invalid configuration.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EmulatorConfigError, loadEmulatorConfig } from './config.js';
import { ADMIN_PATH, RESOURCE_PATH, startIamEmulator, type RequestLogEntry } from './emulator.js';

const USAGE = `Usage: iam-emulator [config.yaml|config.json] [--port N] [--host H] [--quiet]

Starts a local stand-in for a Keycloak realm's token endpoint (client credentials grant).
The config file defaults to $IAM_EMULATOR_CONFIG, then to dev/iam-emulator/demo-clients.yaml.
  --port N   listen on this port instead of the file's (0: any free port)
  --host H   listen on this address instead of the file's (default 127.0.0.1)
  --quiet    do not print each token request`;

const DEMO_CONFIG = fileURLToPath(new URL('./demo-clients.yaml', import.meta.url));

async function main(): Promise<number> {
  let args: ReturnType<typeof parseCommandLine>;
  try {
    args = parseCommandLine();
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.values.help === true) {
    console.log(USAGE);
    return 0;
  }

  const configPath = args.positionals[0] ?? process.env.IAM_EMULATOR_CONFIG ?? (existsSync(DEMO_CONFIG) ? DEMO_CONFIG : undefined);
  if (configPath === undefined) {
    console.error(`No configuration: pass a file, or set IAM_EMULATOR_CONFIG.\n\n${USAGE}`);
    return 2;
  }
  const port = args.values.port === undefined ? undefined : Number(args.values.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    console.error(`--port must be an integer from 0 to 65535, got '${args.values.port}'`);
    return 2;
  }

  let config;
  try {
    config = await loadEmulatorConfig(configPath);
  } catch (error) {
    if (error instanceof EmulatorConfigError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }

  const iam = await startIamEmulator({
    ...config,
    ...(port === undefined ? {} : { port }),
    ...(args.values.host === undefined ? {} : { host: args.values.host }),
    ...(args.values.quiet === true ? {} : { onRequest: printRequest }),
  });
  console.log(`IAM emulator (development only) for realm "${iam.realm}", clients from ${configPath}
  token endpoint:  ${iam.tokenUrl()}
  legacy endpoint: ${iam.legacyTokenUrl()}
  discovery:       ${iam.url}/realms/${iam.realm}/.well-known/openid-configuration
  resource API:    ${iam.url}${RESOURCE_PATH}  (${iam.url}${ADMIN_PATH} needs scope admin)
  clients:         ${config.clients.map((client) => client.clientId).join(', ')}`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await iam.close();
  console.log('IAM emulator stopped');
  return 0;
}

function parseCommandLine() {
  return parseArgs({
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function printRequest(entry: RequestLogEntry): void {
  const time = new Date(entry.at).toISOString().slice(11, 23);
  const status = entry.status === undefined ? '---' : String(entry.status);
  console.log(
    `${time} ${status} ${entry.outcome.padEnd(20)} ${entry.clientId ?? '-'} (${entry.authMethod ?? '-'}) from ${entry.remoteAddress}`,
  );
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error('IAM emulator failed:', error);
    process.exitCode = 1;
  },
);
