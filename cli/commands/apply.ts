/** `tokenctl apply`: makes the registered clients match a clients file. */
import { readFile } from 'node:fs/promises';
import { innermostMessage } from '../../shared/error-message.js';
import { CliError, print } from '../cli-error.js';
import { parseClientsFile } from '../clients-file.js';
import { formatApplyResult } from '../format.js';
import { progressLine } from '../progress-line.js';
import type { Session } from '../session.js';
import { checkAuthMethodsAtIssuers } from './discovery-check.js';

export interface ApplyCommandOptions {
  prune?: true;
  purge?: true;
  dryRun?: true;
  json?: true;
}

export async function apply(session: Session, file: string, options: ApplyCommandOptions): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file} (${innermostMessage(err)}): check the path`);
  }
  // Validated in full before anything is connected to, so a file with mistakes changes nothing.
  const registrations = parseClientsFile(text, file);
  await checkAuthMethodsAtIssuers(registrations, (index) => `${file}: clients[${index}].authMethod`);
  const admin = await session.admin();
  // On a terminal only, and never beside --json (whose output a script reads).
  const progress = progressLine(options.dryRun ? 'checked' : 'applied', { quiet: options.json === true });
  let result;
  try {
    result = await admin.apply(registrations, {
      prune: options.prune === true,
      purge: options.purge === true,
      dryRun: options.dryRun === true,
      onProgress: (done, total) => progress.update(done, total),
    });
  } finally {
    progress.end();
  }
  print(options.json ? JSON.stringify(result, null, 2) : formatApplyResult(result, file, options.dryRun === true));
  if (result.failed.length > 0) {
    const failures = result.failed.map((failure) => `  - could not ${failure.action} ${failure.clientId}: ${failure.message}`);
    throw new CliError(
      `${result.failed.length} of the changes failed (the others were applied):\n${failures.join('\n')}\nFix the cause and run tokenctl apply again.`,
    );
  }
}
