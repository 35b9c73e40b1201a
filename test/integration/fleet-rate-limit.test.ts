/**
 * The fleet-wide cap on token requests (docs/design.md, "The IAM is never hammered"): the IAM task
 * queue's server-side rate limit (`IAM_MAX_RPS`, 40/s) and the host's one-second window in Redis
 * keep a stampede of new registrations under the provider's edge limit of 50 requests/s per IP, so
 * nobody is ever answered 429.
 *
 * Laid out as in production, so that timing is measured where the edge measures it: the emulator
 * and the worker run as processes of their own; this process registers, watches Redis and checks.
 *
 * Then a storm: every one of those clients is asked for a forced refresh at once, on three worker
 * processes. Their tokens are current, so each renewal runs as a local activity (docs/design.md,
 * "Local renewals"), with no task queue to pace it: the window in Redis alone holds the cap, and a
 * renewal it holds back retries from the IAM task queue.
 *
 * The stampede is made to outrun the cap on any machine: every workflow schedules its token request
 * first, while no IAM worker polls (a workflow-only worker in this process), so all of them wait on
 * the IAM task queue when the worker process starts. How fast the tokens then arrive is a figure of
 * the machine, printed by `npm run bench:worker`; what is asserted here holds at any speed.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { rateWindowKey } from '../../shared/redis-layout.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { busiestSecond } from '../support/busiest-second.js';
import { startEmulatorProcess, type EmulatorProcess } from '../support/emulator-process.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { terminateRunning } from '../support/terminate-running.js';
import { historyEvents, tokenRequests, type TokenRequestShape } from '../support/workflow-history.js';
import proto from '@temporalio/proto';
import { workflowIdFor } from '../../workflows/messages.js';
import { DEFAULT_POLICY } from '../../workflows/policy.js';

const { EventType } = proto.temporal.api.enums.v1;
const CLIENTS = 300;
const IAM_MAX_RPS = 40;
const EDGE_LIMIT_PER_SECOND = 50;
const SECRET = 'fleet-secret';
const clientIds = Array.from({ length: CLIENTS }, (_, i) => `fleet-${String(i).padStart(3, '0')}`);
const taskQueue = `fleet-${randomUUID()}`;
/** Ten times what the cap alone needs, and a minute for a busy machine: a deadline, not a target. */
const ALL_TOKENS_DEADLINE_MS = 10 * (CLIENTS / IAM_MAX_RPS) * 1000 + 60_000;

let iam: EmulatorProcess;
let redisServer: RedisServer;
let redis: Redis;
let monitor: Awaited<ReturnType<Redis['monitor']>> | undefined;
/** The slots the fleet's window in Redis granted (Redis's clock), seen by MONITOR from the first test on. */
const grants: number[] = [];
let worker: WorkerProcess | undefined;
/** The two more worker processes of the storm test: three share the fleet's cap. */
const moreWorkers: WorkerProcess[] = [];
let connection: Connection;
let nativeConnection: NativeConnection;
let client: Client;
let admin: TokenAdmin;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  iam = await startEmulatorProcess({
    // The provider's edge, on: over 50 requests in any one-second window from one IP → 429.
    rateLimitPerSecond: EDGE_LIMIT_PER_SECOND,
    tokenLifetimeSeconds: 300,
    clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  connection = await Connection.connect({ address: inject('temporalAddress') });
  nativeConnection = await NativeConnection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection });
  admin = new TokenAdmin(client, { taskQueue });
});

afterAll(async () => {
  if (client) {
    await terminateRunning(client, taskQueue, 'test finished');
  }
  await worker?.kill9();
  for (const more of moreWorkers) await more.kill9();
  monitor?.disconnect();
  await connection?.close();
  await nativeConnection?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.stop();
});

test(
  `${CLIENTS} token requests queued at once with IAM_MAX_RPS=${IAM_MAX_RPS}: zero 429s at the ${EDGE_LIMIT_PER_SECOND}/s edge, at most ${IAM_MAX_RPS} let through in any second, one request per client`,
  async () => {
    // 1. Every workflow's first task schedules its token request; no IAM worker takes them yet. No
    //    workflow cache: nothing is left on this worker's sticky queue for the worker process.
    const scheduler = await Worker.create({
      connection: nativeConnection,
      taskQueue,
      workflowBundle: { codePath: inject('workflowBundlePath') },
      activities: {},
      maxCachedWorkflows: 0,
    });
    const scheduling = scheduler.run();
    try {
      await Promise.all(
        clientIds.map((clientId) =>
          admin.register({ clientId, tokenUrl: iam.tokenUrl, authMethod: 'client_secret_post', secretRef: 'env:FLEET_SECRET' }),
        ),
      );
      // The first task publishes the search attributes and schedules the request, in one completion.
      await eventually(
        async () =>
          (await client.workflow.count(`TaskQueue = '${taskQueue}' AND TokenState = 'acquiring'`)).count === CLIENTS ? true : undefined,
        ALL_TOKENS_DEADLINE_MS,
        `${CLIENTS} token requests scheduled`,
      );
    } finally {
      scheduler.shutdown();
      await scheduling;
    }
    expect(iam.requests()).toEqual([]);

    // 2. Every slot the fleet's window in Redis grants is a ZADD inside its script, scored with
    //    Redis's clock: MONITOR sees each one, with no polling gap.
    const windowKey = rateWindowKey('oauth:', iam.tokenUrl);
    monitor = await redis.monitor();
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toUpperCase() === 'ZADD' && args[1] === windowKey) grants.push(Number(args[2]));
    });

    // 3. The worker process starts with all of them waiting on its IAM task queue.
    const startedAt = Date.now();
    worker = await startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue,
      redisUrl: redisServer.url,
      workflowBundlePath: inject('workflowBundlePath'),
      env: { FLEET_SECRET: SECRET, IAM_MAX_RPS: String(IAM_MAX_RPS), LOG_LEVEL: 'WARN' },
    });
    await eventually(
      async () => {
        const present = await redis.exists(...clientIds.map((clientId) => tokenKey('oauth:', clientId)));
        return present === CLIENTS ? true : undefined;
      },
      ALL_TOKENS_DEADLINE_MS,
      `all ${CLIENTS} tokens in Redis`,
    );
    const allPresentMs = Date.now() - startedAt;

    const requests = iam.requests();
    const outcomes = new Map<string, number>();
    for (const request of requests) outcomes.set(request.outcome, (outcomes.get(request.outcome) ?? 0) + 1);
    const arrivals = requests.map((r) => r.at);
    console.info(
      `[fleet] ${CLIENTS} queued token requests: every token in Redis ${allPresentMs} ms after the worker process started; ` +
        `busiest second: ${busiestSecond(grants)} slots granted (Redis clock), ${busiestSecond(arrivals)} arrivals at the edge; ` +
        `outcomes ${JSON.stringify(Object.fromEntries(outcomes))} (throughput: npm run bench:worker)`,
    );

    expect(requests.filter((r) => r.status === 429)).toEqual([]);
    expect(outcomes).toEqual(new Map([['issued', CLIENTS]]));
    expect(new Set(requests.map((r) => r.clientId))).toEqual(new Set(clientIds));
    // The fleet's own rule, on the clock that enforces it: a slot for every request (two for one
    // whose slot went stale while the worker stalled), at most IAM_MAX_RPS in any one-second window.
    expect(grants.length).toBeGreaterThanOrEqual(CLIENTS);
    expect(busiestSecond(grants)).toBeLessThanOrEqual(IAM_MAX_RPS);
    // What the provider counts: arrivals carry each request's transit time on top, under its limit.
    expect(busiestSecond(arrivals)).toBeLessThanOrEqual(EDGE_LIMIT_PER_SECOND);
  },
  3 * ALL_TOKENS_DEADLINE_MS,
);

test(
  `a forced refresh of all ${CLIENTS} current tokens at once, on three workers, renewals run as local activities: zero 429s, at most ${IAM_MAX_RPS} let through in any second, one more request per client`,
  async () => {
    // The first test left every client active, with a token, on one worker process; two more join.
    expect(worker).toBeDefined();
    for (let i = 0; i < 2; i++) {
      moreWorkers.push(
        await startWorkerProcess({
          temporalAddress: inject('temporalAddress'),
          taskQueue,
          redisUrl: redisServer.url,
          workflowBundlePath: inject('workflowBundlePath'),
          env: { FLEET_SECRET: SECRET, IAM_MAX_RPS: String(IAM_MAX_RPS), LOG_LEVEL: 'WARN' },
        }),
      );
    }
    // Past every client's minimum interval between forced refreshes: all of them are due at once.
    await new Promise((resolve) => setTimeout(resolve, DEFAULT_POLICY.minForcedRefreshIntervalMs));
    const before = iam.requests().length;
    const grantsBefore = grants.length;
    await Promise.all(clientIds.map((clientId) => admin.refresh(clientId, { reason: 'test: a storm of forced refreshes' })));
    await eventually(
      async () => {
        const generations = await Promise.all(clientIds.map((clientId) => redis.hget(tokenKey('oauth:', clientId), 'generation')));
        return generations.every((generation) => generation === '2') ? true : undefined;
      },
      2 * ALL_TOKENS_DEADLINE_MS,
      `all ${CLIENTS} tokens at generation 2`,
    );

    const storm = iam.requests().slice(before);
    const stormGrants = grants.slice(grantsBefore);
    const shapes = new Map<TokenRequestShape, number>();
    for (const clientId of clientIds.slice(0, 50)) {
      const last = tokenRequests(await historyEvents(client, workflowIdFor(clientId)))
        .filter((request) => request.result !== undefined)
        .at(-1)!;
      shapes.set(last.shape, (shapes.get(last.shape) ?? 0) + 1);
    }
    console.info(
      `[fleet] storm of ${CLIENTS} forced refreshes on 3 workers: busiest second ${busiestSecond(stormGrants)} slots granted, ` +
        `${busiestSecond(storm.map((r) => r.at))} arrivals at the edge; the 2nd token of 50 sampled clients came from ${JSON.stringify(Object.fromEntries(shapes))}`,
    );
    expect(storm.filter((r) => r.status === 429)).toEqual([]);
    expect(new Set(storm.map((r) => r.outcome))).toEqual(new Set(['issued']));
    expect(new Set(storm.map((r) => r.clientId))).toEqual(new Set(clientIds));
    // One request per client, but for a local activity whose workflow task timed out (a starved
    // worker) while its request was out: the task's next attempt runs it again. Each extra request
    // must have such a timeout in its client's history.
    const requestsPerClient = new Map<string, number>();
    for (const request of storm) requestsPerClient.set(request.clientId!, (requestsPerClient.get(request.clientId!) ?? 0) + 1);
    for (const [clientId, count] of requestsPerClient) {
      if (count === 1) continue;
      const events = await historyEvents(client, workflowIdFor(clientId));
      const lostTasks = events.filter(
        (event) =>
          event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT || event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
      ).length;
      expect(count - 1, `${clientId}: ${count} requests, ${lostTasks} workflow tasks lost`).toBeLessThanOrEqual(lostTasks);
    }
    expect(busiestSecond(stormGrants)).toBeLessThanOrEqual(IAM_MAX_RPS);
    expect(busiestSecond(storm.map((r) => r.at))).toBeLessThanOrEqual(EDGE_LIMIT_PER_SECOND);
    // The storm was met by local renewals first (the default for a current token).
    expect(shapes.get('local') ?? 0).toBeGreaterThan(0);
  },
  4 * ALL_TOKENS_DEADLINE_MS,
);
