/**
 * The error of an invalid environment (docs/design.md, "Settings"). In a file of its own so that
 * what reads only a few settings (`tokenctl token`) loads no schema library.
 */

/** Thrown when the environment holds invalid settings; the message lists every problem, each naming its variable. */
export class SettingsError extends Error {
  readonly code = 'invalid_settings';
  constructor(readonly problems: string[]) {
    super(`Invalid settings:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SettingsError';
  }
}
