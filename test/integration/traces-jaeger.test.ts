/**
 * One trace from a service's `401 invalid_token` to the IAM and back (docs/design.md, "Traces"),
 * read back from a real Jaeger (dev/jaeger). The "service" is this test process: the OpenTelemetry
 * SDK exporting to Jaeger, the Node library's `fetchWithBearerAuth` calling the IAM emulator's
 * resource API with a revoked token. The worker is a process of its own (the real `worker/main.ts`)
 * exporting to the same Jaeger through `OTEL_EXPORTER_OTLP_ENDPOINT`; a second one without any
 * `OTEL_*` setting must export nothing and load no OpenTelemetry SDK.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { context, propagation, trace, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { Client, Connection } from '@temporalio/client';
import { fetchWithBearerAuth, TokenReader } from 'token-lifecycle';
import { REFRESH_REQUEST_SPAN as LIBRARY_SPAN } from '../../consumers/node/src/refresh-request-trace.js';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { RESOURCE_PATH, startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { createRedisClient, type RedisClient } from '../../shared/redis-connection.js';
import { TOKEN_REQUEST_SPAN, TOKEN_WRITE_SPAN } from '../../activities/spans.js';
import { REFRESH_REQUEST_SPAN as WORKER_SPAN } from '../../worker/refresh-request-span.js';
import { FORCED_REFRESH_SPAN } from '../../workflows/requester-trace.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { needlesOf } from '../support/history-secrets.js';
import { expectCausalChain, expectStartsAfterEnd, onlySpan, startJaeger, type JaegerServer, type JaegerSpan } from '../support/jaeger.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

/**
 * The worker as it ships (`npm run build`; `npm test` builds first): its lazy import of the SDK is
 * what the test without OTEL_* checks, and a bundle of the sources would inline it.
 */
const BUILT_WORKER = join(import.meta.dirname, '..', '..', 'dist', 'worker', 'main.js');
const RUN = randomUUID().slice(0, 8);
const SECRET = `traces-secret-${randomUUID()}`;
const SERVICE = `orders-service-${RUN}`;
const WORKER_SERVICE = `token-lifecycle-worker-${RUN}`;
const TRACED_CLIENT = `traced-${RUN}`;
const UNTRACED_CLIENT = `untraced-${RUN}`;
/** Long enough that every new token in a test is a forced one. */
const LIFETIME_SECONDS = 300;
const MIN_FORCED_INTERVAL_MS = 500;

/** Prints the module of any OpenTelemetry SDK package the process loads (the API alone is fine: it is a no-op). */
const SDK_LOAD_REPORTER = `
import { registerHooks } from 'node:module';
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    if (/@opentelemetry\\/(sdk-|exporter-|context-async-hooks|resources)/.test(result.url)) process.stderr.write('OTEL-SDK-LOADED ' + result.url + '\\n');
    return result;
  },
});
`;

let dir: string;
let jaeger: JaegerServer;
let iam: IamEmulator;
let redisServer: RedisServer;
let redis: RedisClient;
let connection: Connection;
let provider: TracerProvider;
let tracer: Tracer;
/** One per worker, each on its own key prefix: the two workers must not read each other's refresh requests. */
const readers: Partial<Record<'traced' | 'untraced', TokenReader>> = {};
const PREFIXES = { traced: 'oauth:', untraced: 'untraced:' } as const;
const workers: Record<'traced' | 'untraced', WorkerProcess | undefined> = { traced: undefined, untraced: undefined };
const admins: Partial<Record<'traced' | 'untraced', TokenAdmin>> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'traces-jaeger-'));
  const reporter = join(dir, 'report-sdk-loads.mjs');
  await writeFile(reporter, SDK_LOAD_REPORTER);
  [jaeger, iam, redisServer] = await Promise.all([
    startJaeger(),
    startIamEmulator({
      tokenLifetimeSeconds: LIFETIME_SECONDS,
      clients: [TRACED_CLIENT, UNTRACED_CLIENT].map((clientId) => ({ clientId, clientSecret: SECRET })),
    }),
    startRedisServer(),
  ]);
  redis = createRedisClient(redisServer.url);
  connection = await Connection.connect({ address: inject('temporalAddress') });

  // The "service": this process, tracing as an application does.
  provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': SERVICE }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${jaeger.otlpHttpEndpoint}/v1/traces` }) })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  tracer = trace.getTracer('orders-service');
  readers.traced = new TokenReader({ redis, prefix: PREFIXES.traced, cache: false });
  readers.untraced = new TokenReader({ redis, prefix: PREFIXES.untraced, cache: false });

  const nodeOptions = `--import=${pathToFileURL(reporter).href}`;
  const [traced, untraced] = await Promise.all([
    startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue: `traces-traced-${RUN}`,
      redisUrl: redisServer.url,
      workflowBundlePath: inject('tracedWorkflowBundlePath'),
      script: BUILT_WORKER,
      env: {
        TRACES_SECRET: SECRET,
        NODE_OPTIONS: nodeOptions,
        OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint,
        OTEL_SERVICE_NAME: WORKER_SERVICE,
      },
    }),
    startWorkerProcess({
      temporalAddress: inject('temporalAddress'),
      taskQueue: `traces-untraced-${RUN}`,
      redisUrl: redisServer.url,
      workflowBundlePath: inject('workflowBundlePath'),
      script: BUILT_WORKER,
      env: { TRACES_SECRET: SECRET, NODE_OPTIONS: nodeOptions, TOKEN_KEY_PREFIX: PREFIXES.untraced },
    }),
  ]);
  workers.traced = traced;
  workers.untraced = untraced;
  const client = new Client({ connection });
  admins.traced = new TokenAdmin(client, { taskQueue: `traces-traced-${RUN}` });
  admins.untraced = new TokenAdmin(client, { taskQueue: `traces-untraced-${RUN}` });
}, 300_000);

afterAll(async () => {
  const client = connection === undefined ? undefined : new Client({ connection });
  for (const clientId of [TRACED_CLIENT, UNTRACED_CLIENT]) {
    await client?.workflow
      .getHandle(workflowIdFor(clientId))
      .terminate('test finished')
      .catch(() => undefined);
  }
  for (const worker of Object.values(workers)) await worker?.kill9();
  for (const reader of Object.values(readers)) await reader.close();
  await provider?.shutdown();
  await connection?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
  await jaeger?.destroy();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/**
 * Registers `clientId` with the worker of `which`, waits for its first token, revokes it, and calls
 * the resource API as the service does, in a span of its own: the library sees `401 invalid_token`,
 * asks for a refresh and retries once. Returns the service span's trace ID.
 */
async function serviceCallAfterRevocation(which: 'traced' | 'untraced', clientId: string): Promise<string> {
  await admins[which]!.register({
    clientId,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:TRACES_SECRET',
    policy: { minForcedRefreshIntervalMs: MIN_FORCED_INTERVAL_MS },
  });
  const reader = readers[which]!;
  const first = await eventually(async () => await reader.getToken(clientId).catch(() => undefined), 60_000, `first token of ${clientId}`);
  iam.revoke(first.accessToken);
  // The first token's request counts towards the minimum interval between forced refreshes.
  await new Promise((resolve) => setTimeout(resolve, MIN_FORCED_INTERVAL_MS + 200));

  const call = fetchWithBearerAuth({ reader, clientId, refreshTimeoutMs: 30_000 });
  return tracer.startActiveSpan('GET /orders', async (span) => {
    try {
      const response = await call(new URL(RESOURCE_PATH, iam.url));
      expect(response.status).toBe(200);
      expect(await response.json()).toStrictEqual({ ok: true, clientId });
      return span.spanContext().traceId;
    } finally {
      span.end();
    }
  });
}

describe('a refresh asked for after 401 invalid_token', () => {
  let traceId: string;
  let spans: JaegerSpan[] = [];

  test(
    'is one trace: the service, its library, the stream read, the forced refresh, the IAM request and the Redis write, in causal order',
    { timeout: 240_000 },
    async () => {
      traceId = await serviceCallAfterRevocation('traced', TRACED_CLIENT);
      await provider.forceFlush();
      const wanted = [TOKEN_WRITE_SPAN, TOKEN_REQUEST_SPAN, FORCED_REFRESH_SPAN, WORKER_SPAN, LIBRARY_SPAN, 'GET /orders'];
      // The worker batches its spans (every 5 s by default).
      const deadline = Date.now() + 90_000;
      do {
        spans = await jaeger.trace(traceId).catch(() => []);
        if (wanted.every((name) => spans.some((span) => span.name === name))) break;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      } while (Date.now() < deadline);
      // Named in the failure: which of the wanted spans never arrived.
      const names = new Set(spans.map((span) => span.name));
      expect(
        wanted.filter((name) => !names.has(name)),
        `spans of trace ${traceId} missing from Jaeger`,
      ).toStrictEqual([]);

      const service = onlySpan(spans, 'GET /orders', SERVICE);
      const library = onlySpan(spans, LIBRARY_SPAN, SERVICE);
      const streamRead = onlySpan(spans, WORKER_SPAN, WORKER_SERVICE);
      const forcedRefresh = onlySpan(spans, FORCED_REFRESH_SPAN, WORKER_SERVICE);
      const startActivity = onlySpan(spans, 'StartActivity:acquireToken', WORKER_SERVICE);
      const runActivity = onlySpan(spans, 'RunActivity:acquireToken', WORKER_SERVICE);
      const request = onlySpan(spans, TOKEN_REQUEST_SPAN, WORKER_SERVICE);
      const write = onlySpan(spans, TOKEN_WRITE_SPAN, WORKER_SERVICE);
      const chain = [service, library, streamRead, forcedRefresh, startActivity, runActivity, request];
      expectCausalChain(chain);
      expect(write.parentSpanId, 'the Redis write is part of the activity').toBe(runActivity.spanId);
      expectStartsAfterEnd(write, request);

      // What the spans say.
      expect(streamRead.tags).toMatchObject({
        'messaging.system': 'redis',
        'messaging.destination.name': 'oauth:refresh-requests',
        'token_lifecycle.client_id': TRACED_CLIENT,
        'token_lifecycle.request_outcome': 'signalled',
      });
      expect(request.tags).toMatchObject({
        'http.request.method': 'POST',
        'server.address': new URL(iam.tokenUrl()).hostname,
        'token_lifecycle.outcome': 'issued',
      });
      expect(request.tags['token_lifecycle.admission_wait_ms']).toEqual(expect.any(Number));
      expect(write.tags).toMatchObject({ 'db.system.name': 'redis', 'token_lifecycle.generation': 2, 'token_lifecycle.written': true });
      // The signal carried the stream read's span, as the workflow's history shows.
      const history = await new Client({ connection }).workflow.getHandle(workflowIdFor(TRACED_CLIENT)).fetchHistory();
      const signal = history.events?.find((event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'forceRefresh');
      const input = JSON.parse(
        Buffer.from(signal!.workflowExecutionSignaledEventAttributes!.input!.payloads![0]!.data!).toString('utf8'),
      ) as {
        traceparent?: string;
      };
      expect(input.traceparent).toBe(`00-${traceId}-${streamRead.spanId}-01`);
    },
  );

  test('no span of any service holds a secret or token: every attribute, event and status message', { timeout: 120_000 }, async () => {
    expect(spans.length, 'the scenario above ran').toBeGreaterThan(0);
    const all = (await Promise.all((await jaeger.services()).map((service) => jaeger.spansOf(service, 1000)))).flat();
    expect(all.filter((span) => span.service === WORKER_SERVICE).length).toBeGreaterThan(5);
    const text = JSON.stringify(all.map((span) => ({ name: span.name, tags: span.tags, logs: span.logs })));
    const secrets = [SECRET, ...iam.issuedTokens.map((token) => token.accessToken)];
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    for (const secret of secrets) {
      for (const needle of needlesOf(secret)) expect(text.includes(needle), `a span holds a secret (${secret.slice(0, 6)}…)`).toBe(false);
    }
  });
});

describe('without any OTEL_* setting', () => {
  test(
    'the worker loads no OpenTelemetry SDK and exports nothing; the service trace ends at the library',
    { timeout: 180_000 },
    async () => {
      const traceId = await serviceCallAfterRevocation('untraced', UNTRACED_CLIENT);
      await provider.forceFlush();
      const spans = await eventually(
        async () => {
          const found = await jaeger.trace(traceId).catch(() => []);
          return found.some((span) => span.name === LIBRARY_SPAN) ? found : undefined;
        },
        30_000,
        `the service's spans of trace ${traceId}`,
      );
      // A traced worker's batch would have left within 5 s: wait that long, then look again.
      await new Promise((resolve) => setTimeout(resolve, 7_000));
      const again = await jaeger.trace(traceId);
      expect(new Set(again.map((span) => span.service))).toStrictEqual(new Set([SERVICE]));
      expect(spans.length).toBe(again.length);
      expect(workers.untraced!.output()).not.toContain('OTEL-SDK-LOADED');
      expect(workers.untraced!.output()).toMatch(/tracing.{0,4}off/);
      // The reporter works: the traced worker did load the SDK.
      expect(workers.traced!.output()).toContain('OTEL-SDK-LOADED');
    },
  );
});
