/**
 * One team's wrong secrets must not get everyone's IP blocked (docs/design.md, "The failed-login
 * budget"). The provider's edge, as the emulator models it: 5 failed logins from one IP within a
 * minute block that IP for 30 s, and then every client behind it sees connection resets.
 *
 * Two deployments (task queues) share one Redis and one IAM host, each with a worker process of its
 * own, so the budget they share is the fleet's, in Redis: three healthy clients keep short tokens
 * fresh while a clients file adds eight clients with a copy-pasted wrong secret.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor, type TokenStatus } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { sleep } from '../support/failure-scenarios.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';
import { historyEvents, issuedTokenMetadata, scheduledRenewals, tokenRequests } from '../support/workflow-history.js';

const RIGHT_SECRET = 'the-right-secret-of-every-client';
const WRONG_SECRET = 'copy-pasted-from-the-wrong-vault';
const ROTATED_SECRET = 'the-rotated-secret-0001';
const PROOF_KEY = 'proof-key-known-to-the-workers-only';
const HEALTHY = ['healthy-1', 'healthy-2', 'healthy-3'];
const WRONG = Array.from({ length: 8 }, (_, i) => `wrong-${i + 1}`);
const MAX_REJECTIONS = 2;
const WINDOW_MS = 60_000;
const WATCH_MS = 60_000;
const TOKEN_LIFETIME_SECONDS = 6;

let iam: IamEmulator;
let redisServer: RedisServer;
let redis: Redis;
let connection: Connection;
const deployments: { taskQueue: string; admin: TokenAdmin; worker: WorkerProcess }[] = [];
const client = () => new Client({ connection });

beforeAll(async () => {
  iam = await startIamEmulator({
    tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
    blockAfterFailedLogins: 5,
    blockWindowMs: 60_000,
    blockDurationMs: 30_000,
    clients: [...HEALTHY, ...WRONG, 'rotated'].map((clientId) => ({ clientId, clientSecret: RIGHT_SECRET })),
  });
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
  connection = await Connection.connect({ address: inject('temporalAddress') });
  for (const name of ['a', 'b']) {
    const taskQueue = `login-budget-${name}-${randomUUID()}`;
    const worker = await startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue,
      redisUrl: redisServer.url,
      workflowBundlePath: inject('workflowBundlePath'),
      env: {
        RIGHT_SECRET,
        WRONG_SECRET,
        ROTATED_SECRET,
        PROOF_KEY,
        LOGIN_PROOF_KEY: 'env:PROOF_KEY',
        LOGIN_BUDGET_MAX_REJECTIONS: String(MAX_REJECTIONS),
        LOGIN_BUDGET_WINDOW_SECONDS: String(WINDOW_MS / 1000),
      },
    });
    deployments.push({ taskQueue, worker, admin: new TokenAdmin(client(), { taskQueue }) });
  }
});

afterAll(async () => {
  for (const { taskQueue, worker } of deployments) {
    for await (const execution of client().workflow.list({ query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'` })) {
      await client()
        .workflow.getHandle(execution.workflowId)
        .terminate('test finished')
        .catch(() => undefined);
    }
    await worker.kill9();
  }
  await connection?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
});

const registration = (clientId: string, secretRef: ClientRegistration['secretRef'], tokenUrl = iam.tokenUrl()): ClientRegistration => ({
  clientId,
  tokenUrl,
  authMethod: 'client_secret_basic',
  secretRef,
});

async function status(admin: TokenAdmin, clientId: string): Promise<TokenStatus> {
  return admin.status(clientId);
}

async function activeAt(admin: TokenAdmin, clientId: string, generation: number): Promise<TokenStatus> {
  return eventually(
    async () => {
      const current = await status(admin, clientId);
      return current.state === 'active' && current.generation >= generation ? current : undefined;
    },
    60_000,
    `${clientId} active at generation ${generation}`,
  );
}

/** The most rejected logins the emulator saw in any window of `windowMs`. */
function mostRejectionsInAWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((x, y) => x - y);
  let most = 0;
  for (let start = 0, end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}

/** Every login_budget wait in a workflow's history (its failed attempts' failure types). */
async function budgetWaitsIn(workflowId: string): Promise<number> {
  const events = await historyEvents(client(), workflowId);
  return tokenRequests(events).filter((request) => request.failureType === 'login_budget').length;
}

describe('eight wrong secrets applied at once while three healthy clients renew 6 s tokens', () => {
  test('the IP is never blocked, no healthy key is missing or expired, rejections stay within the budget, and the eight park or wait with one request each at most', async () => {
    const [a, b] = deployments as [(typeof deployments)[0], (typeof deployments)[0]];
    // The healthy clients, on both deployments, proven by their first token.
    await Promise.all(HEALTHY.map((clientId, i) => (i === 2 ? b : a).admin.register(registration(clientId, 'env:RIGHT_SECRET'))));
    await Promise.all(HEALTHY.map((clientId, i) => activeAt((i === 2 ? b : a).admin, clientId, 1)));

    const poll = { reads: 0, missing: 0, expired: 0, blockedSeen: 0 };
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const now = Date.now();
        const expiries = await Promise.all(HEALTHY.map((clientId) => redis.hget(tokenKey('oauth:', clientId), 'expires_at')));
        for (const expiresAt of expiries) {
          poll.reads++;
          if (expiresAt === null) poll.missing++;
          else if (Number(expiresAt) <= now) poll.expired++;
        }
        if (iam.blockedAddresses.length > 0) poll.blockedSeen++;
        await sleep(100);
      }
    })();

    // One team's file: eight clients, four on each deployment, all with the wrong secret.
    const appliedAt = Date.now();
    const [appliedA, appliedB] = await Promise.all([
      a.admin.apply(WRONG.slice(0, 4).map((clientId) => registration(clientId, 'env:WRONG_SECRET'))),
      b.admin.apply(WRONG.slice(4).map((clientId) => registration(clientId, 'env:WRONG_SECRET'))),
    ]);
    expect([...appliedA.unproven, ...appliedB.unproven].sort()).toEqual([...WRONG].sort());

    await sleep(WATCH_MS);
    polling = false;
    await poller;

    const rejectedAt = iam.requests.filter((r) => r.status === 401).map((r) => r.at);
    const wrongStates = await Promise.all(WRONG.map(async (clientId, i) => status((i < 4 ? a : b).admin, clientId)));
    const healthyLateness: number[] = [];
    let healthyBudgetWaits = 0;
    for (const clientId of HEALTHY) {
      const events = await historyEvents(client(), workflowIdFor(clientId));
      const sent = issuedTokenMetadata(events).map((token) => token.requestStartedAt);
      const due = scheduledRenewals(events).map((renewal) => renewal.at);
      // Each renewal left the worker this long after it was due.
      for (let i = 0; i < due.length && i + 1 < sent.length; i++) healthyLateness.push(sent[i + 1]! - due[i]!);
      healthyBudgetWaits += await budgetWaitsIn(workflowIdFor(clientId));
    }
    const sorted = [...healthyLateness].sort((x, y) => x - y);
    console.info(
      `[login budget] ${WRONG.length} wrong secrets applied: ${rejectedAt.length} rejected logins reached the IAM ` +
        `(at +${rejectedAt.map((at) => ((at - appliedAt) / 1000).toFixed(1)).join(' s, +')} s); ` +
        `states after ${WATCH_MS / 1000} s: ${JSON.stringify(Object.fromEntries(wrongStates.map((s) => [s.clientId, s.state === 'backing_off' ? `backing_off (${s.backoffReason})` : s.state])))}; ` +
        `healthy renewals: ${healthyLateness.length}, late by median ${sorted[sorted.length >> 1]} ms, max ${sorted.at(-1)} ms after they were due; ` +
        `${poll.reads} reads of the healthy keys: ${poll.missing} missing, ${poll.expired} expired`,
    );

    // The provider never blocked the IP: no reset, no block at any poll.
    expect(poll.blockedSeen).toBe(0);
    expect(iam.requests.filter((r) => r.outcome === 'blocked')).toEqual([]);
    // The healthy services never ran dry, and their renewals never waited for the budget.
    expect(poll.reads).toBeGreaterThan(0);
    expect(poll.missing).toBe(0);
    expect(poll.expired).toBe(0);
    expect(healthyBudgetWaits).toBe(0);
    expect(healthyLateness.length).toBeGreaterThanOrEqual(HEALTHY.length * 3);
    // At most the budget's rejections in any window, fleet-wide (the two workers share it).
    expect(rejectedAt.length).toBeGreaterThanOrEqual(1);
    expect(mostRejectionsInAWindow(rejectedAt, WINDOW_MS)).toBeLessThanOrEqual(MAX_REJECTIONS);
    // Each wrong client sent at most one request, and is parked or waiting for the budget.
    for (const clientId of WRONG) expect(iam.requestsFor(clientId).length, clientId).toBeLessThanOrEqual(1);
    for (const state of wrongStates) {
      expect(
        state.state === 'credentials_rejected' || (state.state === 'backing_off' && state.backoffReason === 'login_budget'),
        `${state.clientId}: ${state.state} ${state.backoffReason}`,
      ).toBe(true);
      if (state.state === 'backing_off') {
        expect(state.lastError?.message).toMatch(
          /^No request sent: (\d+ rejected logins at [^ ]+ in the last minute|another client's unproven credentials are being tried at [^ ]+)/,
        );
        expect(state.consecutiveFailures).toBe(0);
      }
    }
    // The workflow's page says why a waiting one waits. State and page come from one query: a
    // client read as waiting above may have had its try and been parked since.
    const pages = await Promise.all(
      WRONG.map(async (clientId) => {
        const metadata = await client()
          .workflow.getHandle(workflowIdFor(clientId))
          .query<{ currentDetails: string }>('__temporal_workflow_metadata');
        return { clientId, details: metadata.currentDetails };
      }),
    );
    const waitingPages = pages.filter((page) => page.details.includes(`**${page.clientId}** · backing_off (login_budget) until`));
    expect(waitingPages.length, pages.map((page) => page.details.split('\n')[0]).join('; ')).toBeGreaterThan(0);
    for (const page of waitingPages) {
      expect(page.details).toMatch(/- waiting, nothing sent: No request sent: (\d+ rejected logins|another client's unproven credentials)/);
    }
    // Both deployments had wrong clients held back by the one budget.
    for (const [deployment, clients] of [
      [a, WRONG.slice(0, 4)],
      [b, WRONG.slice(4)],
    ] as const) {
      const waits = await Promise.all(clients.map((clientId) => budgetWaitsIn(workflowIdFor(clientId))));
      expect(
        waits.some((count) => count > 0),
        `a wrong client of ${deployment.taskQueue} waited for the budget`,
      ).toBe(true);
    }
  }, 180_000);
});

test('a secret rotated at the IAM and reconfigured is unproven once, proven after its first success, and never waits again, even with the budget spent', async () => {
  // An IAM host of its own, so the budget here is this test's.
  const other = await startIamEmulator({
    tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
    clients: ['rotated', 'typo-1', 'typo-2'].map((clientId) => ({ clientId, clientSecret: RIGHT_SECRET })),
  });
  try {
    const { admin } = deployments[0]!;
    await admin.register(registration('rotated', 'env:RIGHT_SECRET', other.tokenUrl()));
    const before = await activeAt(admin, 'rotated', 1);

    // Rotated at the IAM (the new secret only), then in the registration.
    other.setClientSecret('rotated', ROTATED_SECRET);
    await admin.reconfigure('rotated', { secretRef: 'env:ROTATED_SECRET' });
    const rotated = await activeAt(admin, 'rotated', before.generation + 1);

    // Spend the host's budget with two wrong secrets.
    await admin.register(registration('typo-1', 'env:WRONG_SECRET', other.tokenUrl()));
    await admin.register(registration('typo-2', 'env:WRONG_SECRET', other.tokenUrl()));
    await eventually(
      () => (other.requests.filter((r) => r.status === 401 && r.clientId?.startsWith('typo-')).length >= MAX_REJECTIONS ? true : undefined),
      60_000,
      'the budget spent',
    );
    const spentAt = Date.now();
    // The rotated client keeps renewing (6 s tokens) while the budget is spent.
    await activeAt(admin, 'rotated', rotated.generation + 2);
    const renewalsWhileSpent = other.requestsFor('rotated').filter((r) => r.at > spentAt);
    expect(renewalsWhileSpent.length).toBeGreaterThanOrEqual(2);
    expect(renewalsWhileSpent.every((r) => r.outcome === 'issued')).toBe(true);
    expect(await budgetWaitsIn(workflowIdFor('rotated'))).toBe(0);
    // Every request of the rotated client was accepted: the old secret was never tried again.
    expect(other.requestsFor('rotated').every((r) => r.outcome === 'issued')).toBe(true);
  } finally {
    await other.close();
  }
}, 120_000);

test('nothing from which a secret could be guessed is in Redis or in any history', async () => {
  const secrets = [RIGHT_SECRET, WRONG_SECRET, ROTATED_SECRET, PROOF_KEY];
  const forms = secrets.flatMap((secret) => [
    secret,
    createHash('sha256').update(secret).digest('hex'),
    createHash('sha256').update(secret).digest('base64'),
    createHash('sha1').update(secret).digest('hex'),
    createHash('md5').update(secret).digest('hex'),
  ]);
  const dump: string[] = [];
  for (const key of await redis.keys('*')) {
    const type = await redis.type(key);
    if (type === 'string') dump.push(key, (await redis.get(key)) ?? '');
    else if (type === 'hash') dump.push(key, JSON.stringify(await redis.hgetall(key)));
    else if (type === 'zset') dump.push(key, JSON.stringify(await redis.zrange(key, '0', '-1', 'WITHSCORES')));
    else dump.push(key);
  }
  for (const { taskQueue } of deployments) {
    for await (const execution of client().workflow.list({ query: `TaskQueue = '${taskQueue}'` })) {
      const history = await client().workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
      dump.push(historyText(history));
    }
  }
  const everything = dump.join('\n');
  expect(everything).toContain('login-proof:');
  for (const form of forms) expect(everything.includes(form), `a form of a secret (${form.slice(0, 6)}…)`).toBe(false);
});

/**
 * A history as text, every payload decoded: protobuf JSON holds payload data in base64, where a
 * secret would not show verbatim.
 */
function historyText(history: proto.temporal.api.history.v1.IHistory): string {
  const parts: string[] = [];
  const walk = (value: unknown): void => {
    if (typeof value === 'string') {
      parts.push(value);
      if (/^[A-Za-z0-9+/]+={0,2}$/.test(value) && value.length % 4 === 0) parts.push(Buffer.from(value, 'base64').toString('utf8'));
    } else if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === 'object' && value !== null) Object.values(value).forEach(walk);
  };
  walk(proto.temporal.api.history.v1.History.fromObject(history).toJSON());
  return parts.join('\n');
}
