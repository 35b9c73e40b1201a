/**
 * One trace from a service's `401 invalid_token` to the IAM and back (docs/design.md, "Traces"),
 * with the Go and the Python consumer libraries, read back from a real Jaeger (dev/jaeger). The
 * Node library's is test/integration/traces-jaeger.test.ts; the worker here is the same: the real
 * `worker/main.ts` in a process of its own, exporting through `OTEL_EXPORTER_OTLP_ENDPOINT`.
 *
 * - Go: the service is consumers/go/internal/tracedservice, a program on the OpenTelemetry Go SDK
 *   that exports OTLP to Jaeger itself, its span active while `tokenlifecycle.Transport` calls
 *   the API; the library takes the refresh request's traceparent from that span
 *   (`tokenlifecycleotel.TraceParent`).
 * - Python: no OpenTelemetry SDK can be installed here (Debian has none, PyPI is out of reach), so
 *   the service's span is started by this test (the OpenTelemetry JS SDK, exporting to Jaeger under
 *   the Python service's name) and handed to the Python service (test/fixtures/traced-services/
 *   python_service.py) as an explicit traceparent, which it propagates by hand on its API request;
 *   the library carries the refused request's `traceparent` on to the refresh request.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { Client, Connection } from '@temporalio/client';
import { TokenReader } from 'token-lifecycle';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { RESOURCE_PATH, startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { createRedisClient, type RedisClient } from '../../shared/redis-connection.js';
import { DEFAULT_KEY_PREFIX } from '../../shared/redis-layout.js';
import { TOKEN_REQUEST_SPAN, TOKEN_WRITE_SPAN } from '../../activities/spans.js';
import { REFRESH_REQUEST_SPAN as WORKER_SPAN } from '../../worker/refresh-request-span.js';
import { FORCED_REFRESH_SPAN } from '../../workflows/requester-trace.js';
import { workflowIdFor } from '../../workflows/messages.js';
import { needlesOf } from '../support/history-secrets.js';
import { expectCausalChain, expectStartsAfterEnd, onlySpan, startJaeger, type JaegerServer } from '../support/jaeger.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const execFileAsync = promisify(execFile);

const RUN = randomUUID().slice(0, 8);
const SECRET = `traces-consumers-secret-${randomUUID()}`;
const WORKER_SERVICE = `token-lifecycle-worker-${RUN}`;
const TASK_QUEUE = `traces-consumers-${RUN}`;
const GO = { service: `orders-service-go-${RUN}`, clientId: `traced-go-${RUN}`, span: 'call resource API' };
const PYTHON = { service: `orders-service-python-${RUN}`, clientId: `traced-python-${RUN}`, span: 'GET /orders' };
/** Long enough that every new token in a test is a forced one. */
const LIFETIME_SECONDS = 300;
const MIN_FORCED_INTERVAL_MS = 500;
/** A registration, two tokens and the worker's batched export, on a loaded machine. */
const SCENARIO_TIMEOUT_MS = 180_000;
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const GO_SERVICE_DIR = join(ROOT, 'consumers', 'go', 'internal', 'tracedservice');
const PYTHON_SERVICE = join(ROOT, 'test', 'fixtures', 'traced-services', 'python_service.py');
const PYTHON_LIBRARY = join(ROOT, 'consumers', 'python', 'src');
/** Debian's interpreter, which sees Debian's python3-redis and python3-requests (Makefile, PYTHON). */
const PYTHON_INTERPRETER = '/usr/bin/python3';

let dir: string;
let goService: string;
let jaeger: JaegerServer;
let iam: IamEmulator;
let redisServer: RedisServer;
let redis: RedisClient;
let connection: Connection;
let worker: WorkerProcess | undefined;
let admin: TokenAdmin;
let reader: TokenReader;
/** The Python service's tracer: this process's SDK, exporting under the Python service's name. */
let pythonProvider: TracerProvider;
let pythonTracer: Tracer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'traces-consumers-'));
  goService = join(dir, 'tracedservice');
  [jaeger, iam, redisServer] = await Promise.all([
    startJaeger(),
    startIamEmulator({
      tokenLifetimeSeconds: LIFETIME_SECONDS,
      clients: [GO.clientId, PYTHON.clientId].map((clientId) => ({ clientId, clientSecret: SECRET })),
    }),
    startRedisServer(),
    // `make test` builds it beforehand (make traced-go-service): then this is a cache hit.
    execFileAsync('go', ['build', '-o', goService, '.'], { cwd: GO_SERVICE_DIR, timeout: 1_800_000 }),
  ]);
  redis = createRedisClient(redisServer.url);
  reader = new TokenReader({ redis, cache: false });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  admin = new TokenAdmin(new Client({ connection }), { taskQueue: TASK_QUEUE });
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue: TASK_QUEUE,
    redisUrl: redisServer.url,
    workflowBundlePath: inject('tracedWorkflowBundlePath'),
    env: { TRACES_SECRET: SECRET, OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint, OTEL_SERVICE_NAME: WORKER_SERVICE },
  });
  pythonProvider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': PYTHON.service }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${jaeger.otlpHttpEndpoint}/v1/traces` }) })],
  });
  pythonTracer = pythonProvider.getTracer('orders-service-python');
}, 1_800_000);

afterAll(async () => {
  const client = connection === undefined ? undefined : new Client({ connection });
  for (const clientId of [GO.clientId, PYTHON.clientId]) {
    await client?.workflow
      .getHandle(workflowIdFor(clientId))
      .terminate('test finished')
      .catch(() => undefined);
  }
  await worker?.kill9();
  await reader?.close();
  await pythonProvider?.shutdown();
  await connection?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await iam?.close();
  await jaeger?.destroy();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Registers `clientId`, waits for its first token and revokes it: the next call gets 401 invalid_token. */
async function registerAndRevoke(clientId: string): Promise<void> {
  await admin.register({
    clientId,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:TRACES_SECRET',
    policy: { minForcedRefreshIntervalMs: MIN_FORCED_INTERVAL_MS },
  });
  const first = await eventually(async () => await reader.getToken(clientId).catch(() => undefined), 60_000, `first token of ${clientId}`);
  iam.revoke(first.accessToken);
  // The first token's request counts towards the minimum interval between forced refreshes.
  await new Promise((resolve) => setTimeout(resolve, MIN_FORCED_INTERVAL_MS + 200));
}

/** The environment of a service program: the stack's Redis, the client, the API. */
function serviceEnv(clientId: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: redisServer.url,
    TOKEN_KEY_PREFIX: DEFAULT_KEY_PREFIX,
    CLIENT_ID: clientId,
    API_URL: new URL(RESOURCE_PATH, iam.url).href,
  };
}

/**
 * Waits for trace `traceId` in Jaeger, then checks that it holds the service's span, the worker's
 * stream read, the workflow's forced refresh, the IAM request and the Redis write, each the child
 * of the one before (through the activity's spans), in causal order.
 */
async function expectOneTrace(traceId: string, service: { service: string; clientId: string; span: string }): Promise<void> {
  const wanted = [service.span, WORKER_SPAN, FORCED_REFRESH_SPAN, TOKEN_REQUEST_SPAN, TOKEN_WRITE_SPAN];
  // The worker batches its spans (every 5 s by default).
  const spans = await eventually(
    async () => {
      const found = await jaeger.trace(traceId).catch(() => []);
      return wanted.every((name) => found.some((span) => span.name === name)) ? found : undefined;
    },
    60_000,
    `the spans of trace ${traceId} in Jaeger`,
  );

  const serviceSpan = onlySpan(spans, service.span, service.service);
  const streamRead = onlySpan(spans, WORKER_SPAN, WORKER_SERVICE);
  const forcedRefresh = onlySpan(spans, FORCED_REFRESH_SPAN, WORKER_SERVICE);
  const startActivity = onlySpan(spans, 'StartActivity:acquireToken', WORKER_SERVICE);
  const runActivity = onlySpan(spans, 'RunActivity:acquireToken', WORKER_SERVICE);
  const request = onlySpan(spans, TOKEN_REQUEST_SPAN, WORKER_SERVICE);
  const write = onlySpan(spans, TOKEN_WRITE_SPAN, WORKER_SERVICE);
  expect(serviceSpan.parentSpanId, 'the service span is the root').toBeUndefined();
  const chain = [serviceSpan, streamRead, forcedRefresh, startActivity, runActivity, request];
  expectCausalChain(chain);
  expect(write.parentSpanId, 'the Redis write is part of the activity').toBe(runActivity.spanId);
  expectStartsAfterEnd(write, request);
  expect(streamRead.tags).toMatchObject({
    'messaging.destination.name': `${DEFAULT_KEY_PREFIX}refresh-requests`,
    'token_lifecycle.client_id': service.clientId,
    'token_lifecycle.request_outcome': 'signalled',
  });
  expect(request.tags).toMatchObject({ 'token_lifecycle.outcome': 'issued' });
  expect(write.tags).toMatchObject({ 'token_lifecycle.generation': 2, 'token_lifecycle.written': true });
}

describe('a refresh asked for by a consumer library after 401 invalid_token is one trace in Jaeger', () => {
  test(
    'Go: the service on the OpenTelemetry Go SDK, tokenlifecycleotel.TraceParent',
    async () => {
      await registerAndRevoke(GO.clientId);

      const { stdout } = await execFileAsync(goService, [], {
        env: { ...serviceEnv(GO.clientId), OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint, OTEL_SERVICE_NAME: GO.service },
        timeout: 120_000,
      });

      const { traceId, status } = JSON.parse(stdout) as { traceId: string; status: number };
      expect(status).toBe(200);
      await expectOneTrace(traceId, GO);
    },
    SCENARIO_TIMEOUT_MS,
  );

  test(
    'Python: the service propagates by hand a traceparent this test started',
    async () => {
      await registerAndRevoke(PYTHON.clientId);

      const traceId = await pythonTracer.startActiveSpan(PYTHON.span, async (span) => {
        try {
          const service = span.spanContext();
          const traceparent = `00-${service.traceId}-${service.spanId}-${service.traceFlags.toString(16).padStart(2, '0')}`;
          const { stdout } = await execFileAsync(PYTHON_INTERPRETER, [PYTHON_SERVICE], {
            env: { ...serviceEnv(PYTHON.clientId), PYTHONPATH: PYTHON_LIBRARY, TRACEPARENT: traceparent },
            timeout: 120_000,
          });
          expect(JSON.parse(stdout)).toStrictEqual({ status: 200 });
          return service.traceId;
        } finally {
          span.end();
        }
      });
      await pythonProvider.forceFlush();

      await expectOneTrace(traceId, PYTHON);
    },
    SCENARIO_TIMEOUT_MS,
  );

  test('no span of any service holds a secret or token', async () => {
    const all = (await Promise.all((await jaeger.services()).map((service) => jaeger.spansOf(service, 1000)))).flat();
    expect([...new Set(all.map((span) => span.service))]).toEqual(expect.arrayContaining([WORKER_SERVICE, GO.service, PYTHON.service]));
    const text = JSON.stringify(all.map((span) => ({ name: span.name, tags: span.tags, logs: span.logs })));
    const secrets = [SECRET, ...iam.issuedTokens.map((token) => token.accessToken)];
    expect(secrets.length, 'two tokens per client were issued').toBeGreaterThanOrEqual(5);
    for (const secret of secrets) {
      for (const needle of needlesOf(secret)) expect(text.includes(needle), `a span holds a secret (${secret.slice(0, 6)}…)`).toBe(false);
    }
  });
});
