/**
 * What tokenctl prints for a failed command: what was wrong and how to fix it. Errors are told
 * apart by their stable `code`, so printing one loads none of the code that threw it.
 */
import { errorMessage } from '../shared/error-message.js';
import { TemporalUnreachableError } from '../shared/temporal-connection.js';

/** The flag an operator typed for each registration field, so problems name what to fix. */
const FLAG_OF_FIELD: Record<string, string> = {
  clientId: '<clientId>',
  tokenUrl: '--token-url',
  issuer: '--issuer',
  authMethod: '--auth',
  secretRef: '--secret',
  keyRef: '--key',
  assertionRef: '--assertion',
  certRef: '--cert',
  caRef: '--ca',
  keyId: '--key-id',
  signingAlg: '--signing-alg',
  assertionAudience: '--assertion-audience',
  proxyUrl: '--proxy',
  scope: '--scope',
  extraParams: '--param',
  policy: '--policy',
};

/**
 * Field names inside a problem's text, e.g. "give tokenUrl or issuer, not both": the camel-case
 * names, and `issuer`, which only the endpoint rule uses. (Not `scope` or `policy`: plain words.)
 */
const FIELD_IN_TEXT =
  /\b(?:tokenUrl|issuer|authMethod|secretRef|keyRef|assertionRef|certRef|caRef|keyId|signingAlg|assertionAudience|proxyUrl|extraParams)\b/g;

/** gRPC DEADLINE_EXCEEDED and UNAVAILABLE: the server did not answer. */
const UNREACHABLE_GRPC_CODES: ReadonlySet<number> = new Set([4, 14]);

type CodedError = Error & { code?: unknown; problems?: readonly string[]; fileName?: string; clientId?: string; namespace?: string };

/**
 * Whether `err` is wrong usage (exit 2): the options given make no valid registration (a missing
 * `--secret`, a bad URL). A clients file, the environment or a server's answer is not usage: 1.
 */
export function isUsageError(err: unknown): boolean {
  return err instanceof Error && (err as CodedError).code === 'invalid_registration';
}

/** The message for `err`; `temporalAddress` names the server when Temporal went away or lacks the namespace. */
export function failureMessage(err: unknown, temporalAddress: string): string {
  if (!(err instanceof Error)) return errorMessage(err);
  const error = err as CodedError;
  switch (error.code) {
    case 'invalid_settings':
      return `${error.message}\nFix these environment variables and try again.`;
    case 'invalid_clients_file':
      return `${error.fileName} is invalid, nothing was changed:\n${bullets(error.problems)}\nFix these and run it again; see tokenctl apply --help for the format.`;
    case 'invalid_registration': {
      const problems = (error.problems ?? []).map((problem) => {
        const colon = problem.indexOf(': ');
        if (colon < 0) return problem;
        const path = problem.slice(0, colon).replace(/^(\w+)/, (field) => FLAG_OF_FIELD[field] ?? field);
        return `${path}${problem.slice(colon).replace(FIELD_IN_TEXT, (field) => FLAG_OF_FIELD[field]!)}`;
      });
      return `invalid registration, nothing was registered:\n${bullets(problems)}\nSee tokenctl register --help.`;
    }
    case 'not_registered':
      return `${error.message}: register it with tokenctl register ${error.clientId} …, or see tokenctl list`;
    case 'invalid_acl_rule':
      return `${error.message}; nothing was changed (see tokenctl grant --help)`;
    case 'refresh_failed':
      return `${error.message}. See tokenctl status ${error.clientId}`;
  }
  if (error.name === 'NamespaceNotFoundError') {
    return `Temporal namespace '${error.namespace}' not found at ${temporalAddress}: set TEMPORAL_NAMESPACE to an existing namespace`;
  }
  if (isUnreachable(error)) return new TemporalUnreachableError(temporalAddress, error).message;
  return error.message;
}

function bullets(lines: readonly string[] = []): string {
  return lines.map((line) => `  - ${line}`).join('\n');
}

/** A gRPC error of {@link UNREACHABLE_GRPC_CODES} anywhere in the cause chain: Temporal went away mid-command. */
function isUnreachable(err: Error): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number' && 'metadata' in e && UNREACHABLE_GRPC_CODES.has(code)) return true;
  }
  return false;
}
