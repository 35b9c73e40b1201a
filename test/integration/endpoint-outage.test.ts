/**
 * An IAM outage longer than the tokens live (docs/design.md, "The IAM is never hammered"): 30
 * clients on one endpoint of the IAM emulator, every token request failing (503, resets, hangs)
 * for longer than a token lives, then healing. The outage costs about one request per probe
 * interval, whatever the number of clients; no client sleeps longer than the probe interval; every
 * client is live again soon after healing, also across 2 workers with one killed and restarted
 * during the outage. Registrations set a short probe interval, so the outage can be short.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { inject } from 'vitest';
import { startIamEmulator, type Fault } from '../../dev/iam-emulator/emulator.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { activeAt, sleep, storedToken } from '../support/failure-scenarios.js';
import { eventually, startTokenStack, type TokenStack } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { historyEvents } from '../support/workflow-history.js';
import { workflowIdFor } from '../../workflows/messages.js';

const SECRET = 'outage-secret';
const PROOF_KEY = 'outage-login-proof-key';
const CLIENTS = 30;
const TOKEN_LIFETIME_S = 8;
/** Longer than a token lives: when the IAM heals, no client has a live token left. */
const OUTAGE_MS = 20_000;
const PROBE_INTERVAL_MAX_MS = 2_000;
const REQUEST_TIMEOUT_MS = 1_000;
/**
 * The shortest wait between two probes: the first opening's, 0.8 × the kind's base backoff
 * (2 s for a 5xx) and at most the cap.
 */
const SHORTEST_PROBE_INTERVAL_MS = 1_600;
/**
 * Requests already in flight when a failure opens the breaker (they passed it before), beyond the
 * probes. Until the first failure is seen, requests leave as usual: a hang is seen only after the
 * request timeout, so the count starts then.
 */
const IN_FLIGHT = 3;

let stack: TokenStack;

beforeAll(async () => {
  stack = await startTokenStack({ env: { SECRET }, loginProofKey: PROOF_KEY });
});

afterAll(async () => {
  await stack?.stop();
});

interface OutageFigures {
  requestsDuringOutage: number;
  /** Of those, the requests after the first failure was seen. */
  probed: number;
  bound: number;
  liveAfterHealingMs: number;
}

/**
 * Runs an outage of `fault` over `CLIENTS` clients: registers them, waits until all are active,
 * fails every token request for `OUTAGE_MS` (calling `midway` halfway), heals, and waits until
 * every client holds a token obtained after healing. Asserts the probe schedule's bound and that
 * no client waited longer than the probe interval.
 */
async function outage(prefix: string, fault: Fault, midway?: () => Promise<void>): Promise<OutageFigures> {
  const clientIds = Array.from({ length: CLIENTS }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
  const iam = await startIamEmulator({
    tokenLifetimeSeconds: TOKEN_LIFETIME_S,
    clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  try {
    const registration = (clientId: string): ClientRegistration => ({
      clientId,
      tokenUrl: iam.tokenUrl(),
      authMethod: 'client_secret_post',
      secretRef: 'env:SECRET',
      policy: { probeIntervalMaxMs: PROBE_INTERVAL_MAX_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS },
    });
    await Promise.all(clientIds.map((clientId) => stack.admin.register(registration(clientId))));
    await Promise.all(clientIds.map((clientId) => activeAt(stack, clientId, 1, 60_000)));

    const downAt = Date.now();
    iam.inject(fault);
    // Past a token's life, every client is in the outage: none waits longer than the probe
    // interval (held back, or failed with the others), so none sleeps past the healing.
    await sleep(TOKEN_LIFETIME_S * 1000 + 2_000);
    const statuses = await Promise.all(clientIds.map((clientId) => stack.admin.status(clientId)));
    // Every wait was chosen before this moment, and none is longer than the probe interval.
    const readAt = Date.now();
    for (const status of statuses) {
      if (status.state === 'backing_off') expect(status.backoffUntil, status.clientId).toBeLessThanOrEqual(readAt + PROBE_INTERVAL_MAX_MS);
    }
    expect(statuses.filter((status) => status.state === 'backing_off').length).toBeGreaterThan(0);
    await midway?.();
    await sleep(downAt + OUTAGE_MS - Date.now());

    iam.clearFaults();
    const healedAt = Date.now();
    const liveAt = await eventually(
      async () => {
        const tokens = await Promise.all(clientIds.map((clientId) => storedToken(stack.redis, clientId)));
        return tokens.every((token) => token !== undefined && Number(token.obtained_at) >= healedAt) ? Date.now() : undefined;
      },
      90_000,
      'every client live again after healing',
    );

    const duringOutage = iam.requests.filter((request) => request.at >= downAt && request.at < healedAt);
    // From when the first failure was seen (its answer, or its timeout), the probe schedule rules.
    const seenAt = duringOutage[0]!.at + (fault.kind === 'hang' ? REQUEST_TIMEOUT_MS : 0);
    const probed = duringOutage.filter((request) => request.at > seenAt);
    const bound = Math.ceil((healedAt - seenAt) / SHORTEST_PROBE_INTERVAL_MS) + IN_FLIGHT;
    expect(probed.length).toBeLessThanOrEqual(bound);
    // After healing, one request per client: none failed again, none was sent twice.
    const afterHealing = iam.requests.filter((request) => request.at >= healedAt);
    expect(afterHealing.filter((request) => request.outcome !== 'issued')).toEqual([]);
    // The probe that found the IAM healed woke the clients that waited for it.
    const woken = await Promise.all(
      clientIds.map(async (clientId) =>
        (await historyEvents(stack.client, workflowIdFor(clientId))).some(
          (event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'endpointRecovered',
        ),
      ),
    );
    expect(woken.filter(Boolean).length).toBeGreaterThanOrEqual(CLIENTS / 2);
    await Promise.all(clientIds.map((clientId) => stack.admin.remove(clientId)));
    return { requestsDuringOutage: duringOutage.length, probed: probed.length, bound, liveAfterHealingMs: liveAt - healedAt };
  } finally {
    await iam.close();
  }
}

const report = (what: string, figures: OutageFigures) =>
  console.info(
    `[IAM outage, ${what}] ${CLIENTS} clients, ${TOKEN_LIFETIME_S} s tokens, ${OUTAGE_MS / 1000} s outage, probe interval ≤ ${PROBE_INTERVAL_MAX_MS} ms: ` +
      `${figures.requestsDuringOutage} requests during the outage, ${figures.probed} after the first failure was seen (bound ${figures.bound}); every client live ${figures.liveAfterHealingMs} ms after healing`,
  );

test('503 for longer than a token lives: about one request per probe interval, every client live again soon after healing', async () => {
  report('503', await outage('down-503', { kind: 'status', status: 503 }));
});

test('hangs (timeouts) for longer than a token lives: one probe at a time, every client live again soon after healing', async () => {
  report('hang', await outage('down-hang', { kind: 'hang' }));
});

test('resets across 2 workers, one killed and restarted during the outage: bounded requests, every client live again', async () => {
  const startWorker = () =>
    startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue: stack.taskQueue,
      redisUrl: stack.redisServer.url,
      workflowBundlePath: inject('workflowBundlePath'),
      env: { SECRET, LOGIN_PROOF_KEY: 'env:PROOF_KEY', PROOF_KEY },
    });
  let worker: WorkerProcess = await startWorker();
  try {
    const figures = await outage('down-reset', { kind: 'reset' }, async () => {
      await worker.kill9();
      worker = await startWorker();
    });
    report('reset, 2 workers, one restarted', figures);
  } finally {
    await worker.stop();
  }
});
