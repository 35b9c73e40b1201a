/**
 * tokenctl's check of a registration by issuer against the IAM (docs/design.md, "Discovery"): it
 * reads the discovery document from the operator's machine (through the registration's proxy or
 * HTTPS_PROXY, trusting its caRef when that resolves here too) and refuses an auth method the IAM
 * does not list. When the issuer cannot be reached from here (an IAM reachable only from the
 * cluster, say), the check is skipped with a warning: the worker reads the document itself.
 */
import { resolveReference } from '../../shared/references.js';
import { fetchIssuerMetadata, unsupportedMethodProblem } from '../../shared/discovery.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { CliError } from '../cli-error.js';

/** The checks of several registrations: one document read per issuer, every refusal listed at once. */
export async function checkAuthMethodsAtIssuers(
  registrations: readonly ClientRegistration[],
  label: (index: number) => string,
): Promise<void> {
  const byIssuer = new Map<string, Promise<Awaited<ReturnType<typeof fetchIssuerMetadata>> | Error>>();
  const problems: string[] = [];
  await Promise.all(
    registrations.map(async (registration, index) => {
      const { issuer } = registration;
      if (issuer === undefined) return;
      let metadata = byIssuer.get(issuer);
      if (metadata === undefined) {
        metadata = readMetadata(registration);
        byIssuer.set(issuer, metadata);
      }
      const result = await metadata;
      if (result instanceof Error) return;
      const problem = unsupportedMethodProblem(result, registration.authMethod);
      if (problem !== undefined) problems.push(`${label(index)}: ${problem}`);
    }),
  );
  if (problems.length > 0) {
    throw new CliError(`the IAM refuses these auth methods, nothing was changed:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

async function readMetadata(registration: ClientRegistration): Promise<Awaited<ReturnType<typeof fetchIssuerMetadata>> | Error> {
  const trustedCa =
    registration.caRef === undefined
      ? undefined
      : await resolveReference(registration.caRef).then(
          (ca) => ca.reveal(),
          () => undefined,
        );
  try {
    return await fetchIssuerMetadata(registration.issuer!, { egress: { proxyUrl: registration.proxyUrl, trustedCa }, timeoutMs: 10_000 });
  } catch (err) {
    const error = err as Error;
    process.stderr.write(
      `warning: ${error.message}; the auth method was not checked against ${registration.issuer} from this machine (the worker reads the document itself)\n`,
    );
    return error;
  }
}
