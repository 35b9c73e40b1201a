/**
 * Temporal connection options from {@link Settings}: plain for a local server, TLS with an API key
 * for Temporal Cloud, mTLS with a client certificate for a self-hosted cluster.
 */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import type { Settings } from './settings.js';

export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

export function temporalConnectionOptions(settings: Settings): TemporalConnectionOptions {
  const options: TemporalConnectionOptions = { address: settings.TEMPORAL_ADDRESS };
  const mtls = settings.TEMPORAL_TLS_CERT_PATH !== undefined && settings.TEMPORAL_TLS_KEY_PATH !== undefined;
  if (mtls || settings.TEMPORAL_TLS_CA_PATH !== undefined || settings.TEMPORAL_TLS_SERVER_NAME !== undefined) {
    options.tls = {
      ...(settings.TEMPORAL_TLS_SERVER_NAME !== undefined && { serverNameOverride: settings.TEMPORAL_TLS_SERVER_NAME }),
      ...(settings.TEMPORAL_TLS_CA_PATH !== undefined && { serverRootCACertificate: readFileSync(settings.TEMPORAL_TLS_CA_PATH) }),
      ...(mtls && {
        clientCertPair: { crt: readFileSync(settings.TEMPORAL_TLS_CERT_PATH!), key: readFileSync(settings.TEMPORAL_TLS_KEY_PATH!) },
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
