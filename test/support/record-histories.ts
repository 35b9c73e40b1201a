/**
 * Records the histories that `test/replay/replay.test.ts` replays, so a change to the workflow
 * code that breaks determinism fails the suite instead of stalling running workflows.
 *
 *   npx tsx test/support/record-histories.ts              # every scenario
 *   npx tsx test/support/record-histories.ts stop renewals # only these
 *
 * Starts its own Temporal dev server (in memory, headless), `redis-server`, IAM emulator and
 * workers (bundled from the current sources), drives each scenario through the admin API and the
 * emulator's faults, and writes `test/fixtures/histories/<scenario>.json`: the history's protobuf
 * JSON (`History.toJSON()`; read back with `History.fromObject()`). Not the CLI's JSON through
 * `historyToJSON`: with the duplicate protobufjs copies in node_modules that throws "type must be
 * a Type". A history holding the client secret or any issued token is refused (docs/design.md, "No
 * secret in Temporal": histories are visible to every operator). A scenario that fails leaves its
 * old fixture in place; the exit code is 1 then. Run it after a deliberate, versioned change of
 * the workflow (patched or new code path), for new scenarios: a fixture recorded before a patch
 * guards the runs that began before it, and recording it again would lose that guard.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { TokenStore } from '../../shared/token-store.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { TokenAdmin } from '../../client/admin.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { startTemporalDevServer } from '../../dev/temporal-dev-server.js';
import { createTokenWorkers } from '../../worker/token-workers.js';
import { bundleOptions } from '../../worker/workflow-bundle.js';
import { workflowIdFor, type TokenStatus } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { startRedisServer } from './redis-server.js';
import { errorMessage } from '../../shared/error-message.js';

export const HISTORIES_DIR = join(import.meta.dirname, '..', 'fixtures', 'histories');

const { History } = proto.temporal.api.history.v1;
const SECRET = 'recorder-secret-must-never-reach-a-history';
const WRONG_SECRET = 'recorder-wrong-secret-must-never-reach-a-history';
const STEP_TIMEOUT_MS = 30_000;
/** The renewals of the `many-cycles` scenario: more than the default `maxCyclesPerRun` (50). */
const MANY_CYCLES = 55;

/** What a scenario gets to drive the workflow; `record` names the runs whose histories it keeps. */
interface ScenarioContext {
  clientId: string;
  admin: TokenAdmin;
  client: Client;
  iam: IamEmulator;
  redis: Redis;
  registration(overrides?: Partial<ClientRegistration>): ClientRegistration;
  statusWhere(predicate: (status: TokenStatus) => boolean, what: string): Promise<TokenStatus>;
}

/** A recorded run: the fixture's name and the run whose history it holds (latest run when no runId). */
interface RecordedRun {
  name: string;
  runId?: string;
}

type Scenario = (ctx: ScenarioContext) => Promise<RecordedRun[] | void>;

const SCENARIOS: Record<string, Scenario> = {
  /** Three scheduled renewals of a 2 s token. */
  async renewals(ctx) {
    ctx.iam.setTokenLifetime(2);
    await ctx.admin.register(ctx.registration());
    await ctx.statusWhere((s) => s.state === 'active' && s.generation >= 3, 'three renewals');
  },

  /** Forced refreshes: a signal, a stale fingerprint (ignored), and the `refreshNow` update. */
  async 'forced-refresh'(ctx) {
    ctx.iam.setTokenLifetime(60);
    await ctx.admin.register(ctx.registration({ policy: { minForcedRefreshIntervalMs: 0 } }));
    const first = await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'the first token');
    await ctx.admin.refresh(ctx.clientId, { reason: 'recorder: signal' });
    const second = await ctx.statusWhere((s) => s.state === 'active' && s.generation === 2, 'the forced refresh');
    await ctx.client.workflow
      .getHandle(workflowIdFor(ctx.clientId))
      .signal('forceRefresh', { rejectedFingerprint: first.fingerprint ?? '', reason: 'recorder: stale' });
    await ctx.admin.refresh(ctx.clientId, { reason: 'recorder: update', wait: true });
    await ctx.statusWhere(
      (s) => s.state === 'active' && s.generation === 3 && s.fingerprint !== second.fingerprint,
      'the refreshNow update',
    );
  },

  /**
   * A `forceRefresh` signal naming no token and a `refreshNow` update, each while a request is in
   * flight (the IAM holds it until the workflow has handled them), then the refreshes that follow.
   */
  async 'forced-refresh-during-attempt'(ctx) {
    ctx.iam.setTokenLifetime(60);
    await ctx.admin.register(ctx.registration({ policy: { minForcedRefreshIntervalMs: 1000 } }));
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'the first token');
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      ctx.iam.inject(
        { kind: 'hold', release: new Promise<void>((r) => (release = r)), onHeld: resolve },
        { clientId: ctx.clientId, times: 1 },
      );
    });
    await ctx.admin.refresh(ctx.clientId, { reason: 'recorder: before' });
    await held;
    await ctx.admin.refresh(ctx.clientId, { reason: 'recorder: in flight' });
    const update = ctx.admin.refresh(ctx.clientId, { reason: 'recorder: update in flight', wait: true });
    // Let both messages reach the workflow while the request is held.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    release();
    await update;
    await ctx.statusWhere((s) => s.state === 'active' && s.generation >= 2 && s.forcedRefreshAt === null, 'the refreshes settled');
  },

  /** A 429 with `Retry-After: 1`, then a token. */
  async 'rate-limited-backoff'(ctx) {
    ctx.iam.setTokenLifetime(60);
    ctx.iam.inject({ kind: 'rate_limit', retryAfter: 1 }, { clientId: ctx.clientId, times: 1 });
    await ctx.admin.register(ctx.registration());
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'recovery after the 429');
    const outcomes = ctx.iam.requestsFor(ctx.clientId).map((r) => r.outcome);
    if (outcomes.join() !== 'fault:rate_limit,issued') throw new Error(`expected a 429 then a token, the IAM saw ${outcomes.join(', ')}`);
  },

  /** Two 503s backing off 0.5 s then 1 s, then a token. */
  async 'server-error-backoff'(ctx) {
    ctx.iam.setTokenLifetime(60);
    ctx.iam.inject({ kind: 'status', status: 503 }, { clientId: ctx.clientId, times: 2 });
    await ctx.admin.register(ctx.registration({ policy: { backoff: { server_error: { baseMs: 500, capMs: 1000 } } } }));
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'recovery after two 503s');
  },

  /** A wrong secret parks the workflow; `reconfigure` with the right one recovers it. */
  async 'credentials-rejected-reconfigure'(ctx) {
    ctx.iam.setTokenLifetime(60);
    await ctx.admin.register(ctx.registration({ secretRef: 'env:RECORDER_WRONG_SECRET' }));
    await ctx.statusWhere((s) => s.state === 'credentials_rejected', 'credentials_rejected');
    await ctx.admin.reconfigure(ctx.clientId, { secretRef: 'env:RECORDER_SECRET' });
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'recovery after reconfigure');
  },

  /** The IAM rejects the secret until it is fixed there; `resume` tries again. */
  async 'credentials-rejected-resume'(ctx) {
    ctx.iam.setTokenLifetime(60);
    ctx.iam.setClientSecret(ctx.clientId, WRONG_SECRET);
    await ctx.admin.register(ctx.registration());
    await ctx.statusWhere((s) => s.state === 'credentials_rejected', 'credentials_rejected');
    ctx.iam.setClientSecret(ctx.clientId, SECRET);
    await ctx.admin.resume(ctx.clientId);
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'recovery after resume');
  },

  /**
   * A registration by issuer (the worker discovers the token endpoint), then `reconfigure` to a
   * token URL removing the issuer with `null`: the fields registrations gained with discovery.
   */
  async 'issuer-reconfigure'(ctx) {
    ctx.iam.setTokenLifetime(60);
    await ctx.admin.register({ ...ctx.registration({ tokenUrl: undefined }), issuer: `${ctx.iam.url}/realms/demo` });
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'a token by issuer');
    await ctx.admin.reconfigure(ctx.clientId, { issuer: null, tokenUrl: ctx.iam.tokenUrl() });
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 2, 'a token by token URL');
    const paths = ctx.iam.requestsFor(ctx.clientId).map((r) => r.path);
    if (paths.length !== 2) throw new Error(`expected two token requests, the IAM saw ${paths.length}`);
  },

  /** `stop` with purge: the token is deleted and the workflow completes. */
  async stop(ctx) {
    ctx.iam.setTokenLifetime(60);
    await ctx.admin.register(ctx.registration());
    await ctx.statusWhere((s) => s.state === 'active' && s.generation === 1, 'the first token');
    const final = await ctx.admin.remove(ctx.clientId, { purge: true });
    if (final.state !== 'stopped') throw new Error(`stop ended in state ${final.state}`);
    if ((await ctx.redis.exists(tokenKey('oauth:', ctx.clientId))) !== 0) throw new Error('stop with purge left the token in Redis');
  },

  /**
   * More renewals in one run than the default bound of cycles per run (docs/design.md,
   * "Continue-as-new"), with the default policy: recorded under the bound of 500, it guards the
   * patch that lowered the bound (a run that began under 500 keeps it when it is replayed).
   */
  async 'many-cycles'(ctx) {
    ctx.iam.setTokenLifetime(1);
    await ctx.admin.register(ctx.registration());
    // In steps of 20 renewals (about 20 s each): every step has the recorder's step timeout.
    for (let generation = 20; ; generation = Math.min(generation + 20, MANY_CYCLES)) {
      await ctx.statusWhere((s) => s.state === 'active' && s.generation >= generation, `${generation} renewals`);
      if (generation === MANY_CYCLES) break;
    }
  },

  /** `policy.maxCyclesPerRun: 2`: the first run continues as new, the second carries on. */
  async 'continue-as-new'(ctx) {
    ctx.iam.setTokenLifetime(2);
    await ctx.admin.register(ctx.registration({ policy: { maxCyclesPerRun: 2 } }));
    const handle = ctx.client.workflow.getHandle(workflowIdFor(ctx.clientId));
    const firstRunId = (await handle.describe()).runId;
    await ctx.statusWhere((s) => s.state === 'active' && s.generation >= 4, 'four generations over two runs');
    const latestRunId = (await handle.describe()).runId;
    if (latestRunId === firstRunId) throw new Error('the workflow did not continue as new');
    return [
      { name: 'continue-as-new-first-run', runId: firstRunId },
      { name: 'continue-as-new-next-run', runId: latestRunId },
    ];
  },
};

/**
 * Scenarios recorded again under the `lean-cycles` patch (workflows/token-lifecycle.ts): the plain
 * ones were recorded before it and guard the old loop; these guard the new one.
 */
SCENARIOS['renewals-lean-cycles'] = SCENARIOS.renewals!;
SCENARIOS['forced-refresh-lean-cycles'] = SCENARIOS['forced-refresh']!;
/** And under the `active-without-times` patch: a renewal that upserts nothing, a backoff that sets the times. */
SCENARIOS['renewals-active-without-times'] = SCENARIOS.renewals!;
SCENARIOS['rate-limited-backoff-active-without-times'] = SCENARIOS['rate-limited-backoff']!;
/** And under the `local-renewals` patch: renewals and a forced refresh as local activities (markers). */
SCENARIOS['renewals-local-renewals'] = SCENARIOS.renewals!;
SCENARIOS['forced-refresh-local-renewals'] = SCENARIOS['forced-refresh']!;

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in SCENARIOS));
  if (unknown.length > 0) {
    console.error(`Unknown scenario(s): ${unknown.join(', ')}. Known: ${Object.keys(SCENARIOS).join(', ')}`);
    process.exit(2);
  }
  const names = wanted.length > 0 ? wanted : Object.keys(SCENARIOS);

  // The activities' expected failures (429, 401…) would drown the recorder's own lines.
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const [server, bundle, redisServer] = await Promise.all([
    startTemporalDevServer({ uiPort: false }),
    bundleWorkflowCode({ ...bundleOptions(), logger: silentLogger }),
    startRedisServer(),
  ]);
  const clientIds = names.map((name) => `record-${name}`);
  const iam = await startIamEmulator({
    tokenLifetimeSeconds: 60,
    clients: clientIds.map((clientId) => ({ clientId, clientSecret: SECRET })),
  });
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  const workerRedis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  const connection = await Connection.connect({ address: server.address });
  const workerConnection = await NativeConnection.connect({ address: server.address });
  const client = new Client({ connection });
  const taskQueue = `record-${randomUUID()}`;
  const admin = new TokenAdmin(client, { taskQueue });
  const workers = await createTokenWorkers({
    connection: workerConnection,
    namespace: 'default',
    taskQueue,
    store: new TokenStore(workerRedis),
    iamMaxRps: 40,
    // The scenarios share one emulator, and two of them are rejected on purpose: those rejections
    // must not hold the next scenarios' new clients back (the budget has tests of its own).
    loginBudget: { maxRejections: 100 },
    workflowBundle: { code: bundle.code },
    env: { RECORDER_SECRET: SECRET, RECORDER_WRONG_SECRET: WRONG_SECRET },
  });
  const running = workers.run();

  const failed: string[] = [];
  try {
    await mkdir(HISTORIES_DIR, { recursive: true });
    for (const name of names) {
      const clientId = `record-${name}`;
      const ctx: ScenarioContext = {
        clientId,
        admin,
        client,
        iam,
        redis,
        registration: (overrides = {}) => ({
          clientId,
          tokenUrl: iam.tokenUrl(),
          authMethod: 'client_secret_post',
          secretRef: 'env:RECORDER_SECRET',
          ...overrides,
        }),
        statusWhere: (predicate, what) => statusWhere(admin, clientId, predicate, what),
      };
      const startedAt = Date.now();
      try {
        const runs = (await SCENARIOS[name]!(ctx)) ?? [{ name }];
        const secrets = [SECRET, WRONG_SECRET, ...iam.issuedTokens.map((t) => t.accessToken)];
        for (const run of runs) {
          const handle: WorkflowHandle = client.workflow.getHandle(workflowIdFor(clientId), run.runId);
          const history = History.fromObject(await handle.fetchHistory());
          const json = `${JSON.stringify(history.toJSON(), null, 2)}\n`;
          assertNoSecret(json, secrets, run.name);
          const file = join(HISTORIES_DIR, `${run.name}.json`);
          await writeFile(`${file}.tmp`, json);
          await rename(`${file}.tmp`, file);
          console.log(`recorded ${run.name} (${history.events.length} events, ${Date.now() - startedAt} ms)`);
        }
      } catch (error) {
        failed.push(name);
        console.error(`scenario ${name} failed: ${errorMessage(error)}`);
      } finally {
        await client.workflow
          .getHandle(workflowIdFor(clientId))
          .terminate('recorded')
          .catch(() => undefined);
        iam.clearFaults();
      }
    }
  } finally {
    workers.shutdown();
    await running;
    await connection.close();
    await workerConnection.close();
    redis.disconnect();
    workerRedis.disconnect();
    await iam.close();
    await redisServer.stop();
    await server.stop();
  }
  if (failed.length > 0) {
    console.error(`failed: ${failed.join(', ')} (their old fixtures were kept)`);
    process.exitCode = 1;
  }
}

async function statusWhere(
  admin: TokenAdmin,
  clientId: string,
  predicate: (status: TokenStatus) => boolean,
  what: string,
): Promise<TokenStatus> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let last: TokenStatus | undefined;
  for (;;) {
    last = await admin.status(clientId).catch(() => undefined);
    if (last !== undefined && predicate(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Refuses a history that holds a secret or a token, verbatim or base64-encoded (payload data is base64 in JSON). */
function assertNoSecret(json: string, secrets: readonly string[], name: string): void {
  for (const secret of secrets) {
    const base64 = Buffer.from(secret).toString('base64');
    // Any 3-byte-aligned run of the secret shows up verbatim in the base64 of a payload holding it.
    const needles = [
      secret,
      base64.slice(0, 16),
      Buffer.from(secret.slice(1)).toString('base64').slice(0, 16),
      Buffer.from(secret.slice(2)).toString('base64').slice(0, 16),
    ];
    if (needles.some((needle) => json.includes(needle)))
      throw new Error(`the history of ${name} holds a secret or token (${secret.slice(0, 6)}…): not written`);
  }
}

const ignore = () => undefined;
const silentLogger = { log: ignore, trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };

await main();
