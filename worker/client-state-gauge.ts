/**
 * The gauge `token_client_state{client_id, state}`: 1 for the state each running client's workflow
 * is in, 0 for a state it has left (and for every state of a client stopped or removed since), so
 * an alert sees a client parked in `credentials_rejected` for as long as it stays there, and can
 * tell a running client's token from a removed one's (docs/design.md, "Alerts").
 *
 * The states come from the fleet's one listing of the running workflows (worker/running-clients.ts,
 * from the `TokenState` search attribute), made by the worker that holds the listing lease. A
 * worker that does not (any more) sets every series it has shown to 0: Prometheus queries
 * aggregate over workers with `max by (client_id) (…)`, where a stale 1 of a former holder would
 * outlast the state and a 0 is harmless. A series cannot be withdrawn through the SDK's meter,
 * hence 0 rather than gone.
 */
import type { MetricGauge, MetricMeter } from '@temporalio/common';
import { TOKEN_CLIENT_STATE } from './metrics.js';
import type { RunningClientsListener, RunningClientStates } from './running-clients.js';

/** The gauge, fed by the listing: subscribe it with `RunningClients.subscribe`. */
export interface ClientStateGauge extends RunningClientsListener {
  /** The state of each running client, as last listed; empty while this worker does not list. */
  knownStates(): RunningClientStates;
}

/** Creates the gauge on `meter` (`Runtime.instance().metricMeter`), with no series until a listing. */
export function createClientStateGauge(meter: MetricMeter): ClientStateGauge {
  const gauge: MetricGauge = meter.createGauge(
    TOKEN_CLIENT_STATE,
    'int',
    '',
    'Whether the running workflow of each client is in this state (1) or not (0, also every state of a stopped or removed client)',
  );
  let states: RunningClientStates = new Map();
  /** Every (client, state) series set so far: those not current any more go to 0. */
  const shown = new Map<string, Set<string>>();

  const show = (listed: RunningClientStates) => {
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
    states = new Map(listed);
  };

  return {
    listed: show,
    stoppedListing: () => show(new Map()),
    knownStates: () => new Map(states),
  };
}
