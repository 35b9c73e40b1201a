/**
 * The IAM emulator's configuration file (YAML, or JSON, which is YAML too): its realm, port and
 * clients. Validated once, with every problem reported by its path, e.g.
 * `clients[1].clientSecret: Invalid input: expected string, received undefined`.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AUTH_METHODS } from '../../workflows/registration.js';

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

const clientSchema = z
  .strictObject({
    clientId: z.string().min(1),
    clientSecret: z.string().min(1).optional(),
    authMethod: z.enum(AUTH_METHODS).optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).optional(),
    tlsClientAuthSubjectDn: z.string().min(1).optional(),
    certificates: z.array(z.string().min(1)).optional(),
    scopes: z.array(z.string().regex(SCOPE_TOKEN, 'must be a scope token (RFC 6749 §3.3): no spaces, quotes or backslashes')).optional(),
    enabled: z.boolean().optional(),
    serviceAccountsEnabled: z.boolean().optional(),
  })
  .superRefine((client, context) => {
    // The secret methods (the default) need the secret; the others authenticate with keys or certificates.
    const withoutSecret = ['private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'];
    if (client.clientSecret === undefined && !withoutSecret.includes(client.authMethod ?? '')) {
      context.addIssue({ code: 'custom', path: ['clientSecret'], message: `is required unless authMethod is ${withoutSecret.join(', ')}` });
    }
  });

/** The file's shape: the options of `startIamEmulator` without the callbacks. */
export const emulatorConfigSchema = z
  .strictObject({
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65535).optional(),
    realm: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/, 'must be a realm name of letters, digits, ".", "_" or "-"')
      .optional(),
    tokenLifetimeSeconds: z.number().int().positive().optional(),
    rateLimitPerSecond: z.number().positive().optional(),
    blockAfterFailedLogins: z.number().positive().optional(),
    blockWindowMs: z.number().positive().optional(),
    blockDurationMs: z.number().positive().optional(),
    omitExpiresIn: z.boolean().optional(),
    clients: z.array(clientSchema).min(1),
  })
  .superRefine((config, context) => {
    const seen = new Set<string>();
    config.clients.forEach((client, index) => {
      if (seen.has(client.clientId)) {
        context.addIssue({ code: 'custom', path: ['clients', index, 'clientId'], message: `duplicate client ID '${client.clientId}'` });
      }
      seen.add(client.clientId);
    });
  });

export type EmulatorConfig = z.infer<typeof emulatorConfigSchema>;

/** An emulator configuration file that cannot be used; {@link issues} lists every problem. */
export class EmulatorConfigError extends Error {
  override readonly name = 'EmulatorConfigError';
  readonly source: string;
  readonly issues: readonly string[];

  constructor(source: string, issues: readonly string[]) {
    super(`Invalid IAM emulator config ${source}:\n${issues.map((issue) => `  - ${issue}`).join('\n')}`);
    this.source = source;
    this.issues = issues;
  }
}

/**
 * Parses and validates a configuration's text.
 * @param source where the text came from, for error messages
 * @throws {@link EmulatorConfigError} naming every invalid field by its path
 */
export function parseEmulatorConfig(text: string, source: string): EmulatorConfig {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new EmulatorConfigError(source, [`not valid YAML or JSON: ${(error as Error).message}`]);
  }
  const result = emulatorConfigSchema.safeParse(document);
  if (!result.success) {
    const problems = result.error.issues.flatMap((issue) =>
      // Name each unknown field by its own path: it is most often a typo of a known one.
      issue.code === 'unrecognized_keys'
        ? issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown field`)
        : [`${formatPath(issue.path) || '(top level)'}: ${issue.message}`],
    );
    throw new EmulatorConfigError(source, problems);
  }
  return result.data;
}

/** Reads and validates a configuration file. */
export async function loadEmulatorConfig(path: string): Promise<EmulatorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new EmulatorConfigError(path, [`cannot be read: ${(error as Error).message}`]);
  }
  return parseEmulatorConfig(text, path);
}

/** `['clients', 1, 'clientSecret']` → `clients[1].clientSecret` */
function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((segment, index) => (typeof segment === 'number' ? `[${segment}]` : `${index === 0 ? '' : '.'}${String(segment)}`))
    .join('');
}
