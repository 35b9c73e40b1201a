/**
 * The gauge `token_client_state{client_id, state}`: 1 for the state each running client's workflow
 * is in, 0 for a state it has left (and for every state of a client stopped or removed since), so
 * an alert sees a client parked in `credentials_rejected` for as long as it stays there, and can
 * tell a running client's token from a removed one's (docs/design.md, "Alerts").
 *
 * The states come from visibility (the `TokenState` search attribute, upserted whenever the state
 * changes), listed again every `intervalMs`; every worker of a fleet lists every client, so
 * Prometheus queries aggregate over workers with `max by (client_id) (…)`. A series cannot be
 * withdrawn through the SDK's meter, hence 0 rather than gone.
 */
import type { Client } from '@temporalio/client';
import type { MetricGauge, MetricMeter } from '@temporalio/common';
import { TokenClientId, TokenState } from '../workflows/search-attributes.js';
import { TOKEN_CLIENT_STATE } from './metrics.js';

/** Options of {@link startClientStateGauge}. */
export interface ClientStateGaugeOptions {
  /** Lists the workflows. */
  client: Client;
  /** The workflow task queue (`TEMPORAL_TASK_QUEUE`): only its workflows are listed. */
  taskQueue: string;
  /** Where the gauge is created: `Runtime.instance().metricMeter`. */
  meter: MetricMeter;
  /** How often the workflows are listed again. @default 30_000 */
  intervalMs?: number;
  /** Told when a listing fails; the gauge keeps its last values until the next one. @default ignore */
  onError?: (error: Error) => void;
}

/** A running gauge. */
export interface ClientStateGauge {
  /** Lists the running workflows now and sets the gauge; rejects when the listing fails. */
  update(): Promise<void>;
  /** The state of each running client, as last listed. */
  knownStates(): ReadonlyMap<string, string>;
  /** Stops the timer and waits for a listing in progress. */
  stop(): Promise<void>;
}

const DEFAULT_INTERVAL_MS = 30_000;

/** Starts the gauge: lists once, then every `intervalMs`; stop it with {@link ClientStateGauge.stop}. */
export async function startClientStateGauge(options: ClientStateGaugeOptions): Promise<ClientStateGauge> {
  const { client, taskQueue, meter } = options;
  const onError = options.onError ?? (() => undefined);
  const gauge: MetricGauge = meter.createGauge(
    TOKEN_CLIENT_STATE,
    'int',
    '',
    'Whether the running workflow of each client is in this state (1) or not (0, also every state of a stopped or removed client)',
  );
  const query = `TaskQueue = '${taskQueue.replaceAll("'", "\\'")}' AND ExecutionStatus = 'Running'`;

  let states = new Map<string, string>();
  /** Every (client, state) series set so far: those not current any more go to 0. */
  const shown = new Map<string, Set<string>>();

  const listOnce = async () => {
    const listed = new Map<string, string>();
    for await (const execution of client.workflow.list({ query })) {
      const clientId = execution.typedSearchAttributes.get(TokenClientId);
      const state = execution.typedSearchAttributes.get(TokenState);
      if (clientId !== undefined && state !== undefined) listed.set(clientId, state);
    }
    for (const [clientId, clientStates] of shown) {
      for (const state of clientStates) {
        if (listed.get(clientId) !== state) gauge.set(0, { client_id: clientId, state });
      }
    }
    for (const [clientId, state] of listed) {
      gauge.set(1, { client_id: clientId, state });
      let clientStates = shown.get(clientId);
      if (clientStates === undefined) shown.set(clientId, (clientStates = new Set()));
      clientStates.add(state);
    }
    states = listed;
  };

  // One listing at a time: a slow visibility store must not stack them up.
  let current: Promise<void> = Promise.resolve();
  const update = (): Promise<void> => {
    const next = current.then(listOnce);
    current = next.catch(() => undefined);
    return next;
  };

  await update().catch((err: unknown) => onError(err instanceof Error ? err : new Error(String(err))));
  const timer = setInterval(() => {
    update().catch((err: unknown) => onError(err instanceof Error ? err : new Error(String(err))));
  }, options.intervalMs ?? DEFAULT_INTERVAL_MS);
  // The workers keep the process alive; this timer must not hold up a graceful shutdown.
  timer.unref();

  return {
    update,
    knownStates: () => new Map(states),
    async stop() {
      clearInterval(timer);
      await current;
    },
  };
}
