/**
 * `npm run bench:gauge`: what the worker's expiry gauge (worker/token-expiry-gauge.ts) costs the
 * main thread, with the real Temporal runtime meter (Prometheus exporter) and a real redis-server.
 * Two figures: CPU per `token-updated` message (one per renewal, fleet-wide) with N clients known,
 * and CPU of one periodic update of every client's gauge (once a second). Prints figures; asserts nothing.
 *
 *   BENCH_CLIENTS (1000)    clients the gauge knows
 *   BENCH_MESSAGES (1000)   token-updated messages published, one per renewal
 */
import { Runtime } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { findFreePort } from '../dev/free-port.js';
import { tokenUpdatedChannel } from '../shared/redis-layout.js';
import { formatTokenUpdated } from 'token-lifecycle/contract';
import { startTokenExpiryGauge } from '../worker/token-expiry-gauge.js';
import { startRedisServer } from '../test/support/redis-server.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 1000);
/** What a renewal may add on the gauge: a small share of the 8 ms of worker CPU per renewal (issue 17). */
const PER_MESSAGE_TARGET_MS = 0.1;
const PREFIX = 'bench-gauge:';

/** CPU milliseconds (user + system) of this process spent in `work`. */
async function cpuMs(work: () => Promise<void> | void): Promise<number> {
  const before = process.cpuUsage();
  await work();
  const { user, system } = process.cpuUsage(before);
  return (user + system) / 1000;
}

Runtime.install({
  telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${await findFreePort()}` } } },
});
const server = await startRedisServer();
const redis = new Redis(server.url);
const publisher = new Redis(server.url);
const gauge = await startTokenExpiryGauge({
  redis,
  prefix: PREFIX,
  meter: Runtime.instance().metricMeter,
  // Only the messages are measured in the first figure: the periodic timers stay out of the way.
  updateIntervalMs: 3_600_000,
  resyncIntervalMs: 3_600_000,
});
try {
  const base = Date.now() + 300_000;
  const announce = (clientId: string, generation: number) =>
    publisher.publish(
      tokenUpdatedChannel(PREFIX),
      formatTokenUpdated({ clientId, generation, fingerprint: 'f', expiresAt: base + generation }),
    );
  const learned = async (clientId: string, generation: number) => {
    while (gauge.knownExpiries().get(clientId) !== base + generation) await new Promise((resolve) => setTimeout(resolve, 5));
  };

  // Every client known first (as after the start-up scan of a running fleet).
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => announce(`client-${i}`, 1)));
  await learned(`client-${CLIENTS - 1}`, 1);

  // Renewals, one message each, spread over the clients; the last one says when all were handled.
  const renewals = async () => {
    for (let i = 0; i < MESSAGES; i++) await announce(`client-${i % CLIENTS}`, 2 + i);
    await learned(`client-${(MESSAGES - 1) % CLIENTS}`, 2 + MESSAGES - 1);
  };
  const withGaugeMs = await cpuMs(renewals);
  const UPDATES = 20;
  const updateMs = (await cpuMs(() => Array.from({ length: UPDATES }).forEach(() => gauge.update()))) / UPDATES;

  // For comparison, what publishing and receiving alone cost this process: the same number of
  // messages to a subscriber that does nothing with them (the gauge stopped listening first).
  gauge.stop();
  const idle = new Redis(server.url);
  let received = 0;
  idle.on('message', () => received++);
  await idle.subscribe(tokenUpdatedChannel(PREFIX));
  const withoutGaugeMs = await cpuMs(async () => {
    for (let i = 0; i < MESSAGES; i++) await announce(`client-${i % CLIENTS}`, 1);
    while (received < MESSAGES) await new Promise((resolve) => setTimeout(resolve, 5));
  });
  idle.disconnect();

  const perMessageMs = withGaugeMs / MESSAGES;
  const gaugeShareMs = Math.max(0, withGaugeMs - withoutGaugeMs) / MESSAGES;
  console.log(`token expiry gauge, ${CLIENTS} clients known, ${MESSAGES} token-updated messages (CPU of this process)`);
  console.log(`  CPU per token-updated message      ${perMessageMs.toFixed(3).padStart(8)} ms   publish, receive and gauge`);
  console.log(`    without the gauge                ${(withoutGaugeMs / MESSAGES).toFixed(3).padStart(8)} ms   publish and receive`);
  console.log(
    `    the gauge's share                ${gaugeShareMs.toFixed(3).padStart(8)} ms   target ≤ ${PER_MESSAGE_TARGET_MS} ms, whatever the clients: ${gaugeShareMs <= PER_MESSAGE_TARGET_MS ? 'met' : 'missed'}`,
  );
  console.log(
    `  CPU per periodic update (1/s)      ${updateMs.toFixed(3).padStart(8)} ms   ${((updateMs / 1000) * 100).toFixed(2)} % of a core, ${((updateMs / CLIENTS) * 1000).toFixed(1)} µs per client`,
  );
} finally {
  gauge.stop();
  redis.disconnect();
  publisher.disconnect();
  await server.stop();
}
