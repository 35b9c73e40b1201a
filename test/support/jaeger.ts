/**
 * Jaeger v1.75.0 (dev/jaeger/ensure.sh), the tracing backend of the trace tests: started per test
 * file on free loopback ports with a YAML config of its own (Jaeger v2 is an OpenTelemetry
 * Collector distribution: an OTLP receiver, in-memory storage, the query extension), and read back
 * through its query API (`/api/traces`, Jaeger's JSON model). {@link JaegerServer.destroy} stops it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { stopChild, waitUntilAnswering } from '../../dev/child-process.js';
import { findFreePorts } from '../../dev/free-port.js';

const execFileAsync = promisify(execFile);

/** A span as Jaeger stores it, flattened: its tags (attributes, kind, status) and logs (events). */
export interface JaegerSpan {
  traceId: string;
  spanId: string;
  /** The span's CHILD_OF reference, if it has one. */
  parentSpanId: string | undefined;
  /** FOLLOWS_FROM references (OTLP links). */
  links: string[];
  name: string;
  service: string;
  /** Microseconds since the epoch. */
  startTime: number;
  /** Microseconds. */
  duration: number;
  /** Every tag: the span's attributes, and `span.kind`, `otel.status_code`, `otel.status_description`, `error`. */
  tags: Record<string, unknown>;
  /** Every log (OTLP event): its fields, `event` being the event's name. */
  logs: Record<string, unknown>[];
}

export interface JaegerServer {
  /** The OTLP/HTTP receiver's base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:<port>`. */
  readonly otlpHttpEndpoint: string;
  /** The OTLP/gRPC receiver: `127.0.0.1:<port>`. */
  readonly otlpGrpcEndpoint: string;
  /** The query service (API and UI): `http://127.0.0.1:<port>`. */
  readonly queryUrl: string;
  /** The services that have sent spans. */
  services(): Promise<string[]>;
  /** The spans of every trace that holds a span of `service` (up to `limit` traces). */
  spansOf(service: string, limit?: number): Promise<JaegerSpan[]>;
  /** Every span of one trace. */
  trace(traceId: string): Promise<JaegerSpan[]>;
  /** Stops Jaeger and removes its config. Idempotent. */
  destroy(): Promise<void>;
}

/** The Jaeger binary, built once by dev/jaeger/ensure.sh (`make jaeger`). */
export async function jaegerBinary(): Promise<string> {
  const ensure = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dev', 'jaeger', 'ensure.sh');
  const { stdout } = await execFileAsync('bash', [ensure], { timeout: 1_800_000 });
  return stdout.trim();
}

/**
 * The config of one run: OTLP in (gRPC and HTTP), memory storage, the query API; no Jaeger
 * receivers, no sampling extension, no metrics endpoint (its fixed port would clash between files).
 */
function jaegerConfig(ports: { otlpGrpc: number; otlpHttp: number; queryHttp: number; queryGrpc: number; health: number }): string {
  return `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:${ports.health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${ports.queryHttp}
    grpc:
      endpoint: 127.0.0.1:${ports.queryGrpc}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${ports.otlpGrpc}
      http:
        endpoint: 127.0.0.1:${ports.otlpHttp}

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`;
}

/** Starts Jaeger and waits until its health check and query API answer. */
export async function startJaeger(): Promise<JaegerServer> {
  const binary = await jaegerBinary();
  const [otlpGrpc, otlpHttp, queryHttp, queryGrpc, health] = (await findFreePorts(5)) as [number, number, number, number, number];
  const dir = await mkdtemp(join(tmpdir(), 'jaeger-'));
  const configPath = join(dir, 'config.yaml');
  await writeFile(configPath, jaegerConfig({ otlpGrpc, otlpHttp, queryHttp, queryGrpc, health }));
  const queryUrl = `http://127.0.0.1:${queryHttp}`;

  const child: ChildProcess = spawn(binary, ['--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => (output = `${output}${chunk.toString('utf8')}`.slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  try {
    await waitUntilAnswering([`http://127.0.0.1:${health}/status`, `${queryUrl}/api/services`], {
      what: 'Jaeger',
      child,
      output: () => output,
    });
  } catch (err) {
    await stopChild(child, { signal: 'SIGKILL' });
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  const get = async (path: string): Promise<unknown> => {
    const response = await fetch(`${queryUrl}${path}`);
    const text = await response.text();
    if (!response.ok) throw new Error(`Jaeger GET ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text) as unknown;
  };

  let destroyed: Promise<void> | undefined;
  return {
    otlpHttpEndpoint: `http://127.0.0.1:${otlpHttp}`,
    otlpGrpcEndpoint: `127.0.0.1:${otlpGrpc}`,
    queryUrl,
    async services() {
      const { data } = (await get('/api/services')) as { data: string[] | null };
      return data ?? [];
    },
    async spansOf(service, limit = 100) {
      const { data } = (await get(`/api/traces?service=${encodeURIComponent(service)}&limit=${limit}&lookback=1h`)) as {
        data: JaegerTrace[] | null;
      };
      return (data ?? []).flatMap(flattenTrace);
    },
    async trace(traceId) {
      const { data } = (await get(`/api/traces/${traceId}`)) as { data: JaegerTrace[] | null };
      return (data ?? []).flatMap(flattenTrace);
    },
    destroy() {
      destroyed ??= (async () => {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      })();
      return destroyed;
    },
  };
}

/** A trace in Jaeger's JSON model (the query API's `/api/traces`). */
interface JaegerTrace {
  traceID: string;
  spans: {
    traceID: string;
    spanID: string;
    operationName: string;
    references: { refType: 'CHILD_OF' | 'FOLLOWS_FROM'; traceID: string; spanID: string }[] | null;
    startTime: number;
    duration: number;
    tags: { key: string; value: unknown }[] | null;
    logs: { timestamp: number; fields: { key: string; value: unknown }[] }[] | null;
    processID: string;
  }[];
  processes: Record<string, { serviceName: string }>;
}

function flattenTrace(trace: JaegerTrace): JaegerSpan[] {
  return trace.spans.map((span) => {
    const references = span.references ?? [];
    return {
      traceId: span.traceID,
      spanId: span.spanID,
      parentSpanId: references.find((reference) => reference.refType === 'CHILD_OF')?.spanID,
      links: references.filter((reference) => reference.refType === 'FOLLOWS_FROM').map((reference) => reference.spanID),
      name: span.operationName,
      service: trace.processes[span.processID]?.serviceName ?? '',
      startTime: span.startTime,
      duration: span.duration,
      tags: Object.fromEntries((span.tags ?? []).map((tag) => [tag.key, tag.value])),
      logs: (span.logs ?? []).map((log) => Object.fromEntries(log.fields.map((field) => [field.key, field.value]))),
    };
  });
}

/** The one span named `name` that `service` exported; fails the test unless there is exactly one. */
export function onlySpan(spans: JaegerSpan[], name: string, service: string): JaegerSpan {
  const found = spans.filter((span) => span.name === name && span.service === service);
  expect(
    found.map((span) => `${span.service}: ${span.name}`),
    `one "${name}" of ${service}`,
  ).toHaveLength(1);
  return found[0]!;
}

/**
 * Checks that each span of `chain` is the child of the one before it and starts no earlier.
 * Order is checked to the millisecond: not every span's start is finer than a millisecond (a token
 * write's was seen on a whole one), so a span that begins in the millisecond its predecessor began
 * or ended may show an earlier start.
 */
export function expectCausalChain(chain: JaegerSpan[]): void {
  for (const [parent, child] of chain.slice(0, -1).map((span, index) => [span, chain[index + 1]!] as const)) {
    expect(child.parentSpanId, `${child.name}'s parent is ${parent.name}`).toBe(parent.spanId);
    expect(child.startTime, `${child.name} starts after ${parent.name}`).toBeGreaterThanOrEqual(millisecondOf(parent.startTime));
  }
}

/** Checks that `later` starts no earlier than `earlier` ended, to the millisecond (see {@link expectCausalChain}). */
export function expectStartsAfterEnd(later: JaegerSpan, earlier: JaegerSpan): void {
  expect(later.startTime, `${later.name} follows ${earlier.name}`).toBeGreaterThanOrEqual(
    millisecondOf(earlier.startTime + earlier.duration),
  );
}

function millisecondOf(microseconds: number): number {
  return Math.floor(microseconds / 1000) * 1000;
}
