/**
 * Temporal connection options from {@link Settings}: plain for a local server, TLS with an API key
 * for Temporal Cloud, mTLS with a client certificate for a self-hosted cluster.
 */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import { innermostMessage } from './error-message.js';
import type { Settings } from './settings.js';
import { SettingsError } from './settings-error.js';

export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

/**
 * Options for `Connection.connect` / `NativeConnection.connect`.
 *
 * @throws {@link SettingsError} naming the variable when a TLS file cannot be read.
 */
export function temporalConnectionOptions(settings: Settings): TemporalConnectionOptions {
  const options: TemporalConnectionOptions = { address: settings.TEMPORAL_ADDRESS };
  const mtls = settings.TEMPORAL_TLS_CERT_PATH !== undefined && settings.TEMPORAL_TLS_KEY_PATH !== undefined;
  if (mtls || settings.TEMPORAL_TLS_CA_PATH !== undefined || settings.TEMPORAL_TLS_SERVER_NAME !== undefined) {
    options.tls = {
      ...(settings.TEMPORAL_TLS_SERVER_NAME !== undefined && { serverNameOverride: settings.TEMPORAL_TLS_SERVER_NAME }),
      ...(settings.TEMPORAL_TLS_CA_PATH !== undefined && {
        serverRootCACertificate: readSettingFile('TEMPORAL_TLS_CA_PATH', settings.TEMPORAL_TLS_CA_PATH),
      }),
      ...(mtls && {
        clientCertPair: {
          crt: readSettingFile('TEMPORAL_TLS_CERT_PATH', settings.TEMPORAL_TLS_CERT_PATH!),
          key: readSettingFile('TEMPORAL_TLS_KEY_PATH', settings.TEMPORAL_TLS_KEY_PATH!),
        },
      }),
    };
  } else if (settings.TEMPORAL_TLS !== undefined) {
    options.tls = settings.TEMPORAL_TLS;
  }
  if (settings.TEMPORAL_API_KEY !== undefined) {
    options.apiKey = settings.TEMPORAL_API_KEY;
    options.tls ??= true; // Temporal Cloud only accepts API keys over TLS.
  }
  return options;
}

function readSettingFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SettingsError([`${variable}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? innermostMessage(err)})`]);
  }
}

/** Temporal did not answer at `TEMPORAL_ADDRESS`; the message says what to check. */
export class TemporalUnreachableError extends Error {
  readonly code = 'temporal_unreachable';
  constructor(
    readonly address: string,
    cause: unknown,
  ) {
    super(
      `cannot reach Temporal at ${address} (${innermostMessage(cause)}): check that it is running, or set TEMPORAL_ADDRESS (and TEMPORAL_API_KEY or TEMPORAL_TLS_* for Temporal Cloud or mTLS)`,
      { cause },
    );
    this.name = 'TemporalUnreachableError';
  }
}
