/**
 * The control API of the consumer stack (consumer-stack.ts): plain HTTP and JSON on loopback, so
 * tests in any language can steer the stack and see what happened in it.
 *
 * | request | answer |
 * |---|---|
 * | `POST /clients` `{ "minForcedRefreshIntervalMs"?: n }` | registers a fresh client with the worker: `{ "clientId" }` |
 * | `POST /revoke` `{ "accessToken" }` | the emulator revokes it: `{ "revoked": bool }` |
 * | `POST /tokens` `{ "clientId", "generation", "lifetimeMs", "scope"? }` | stores a token through the worker's write script (expiry, announcement): the stored token |
 * | `GET /clients/<id>/token-requests` | the emulator's token requests for the client: `[{ "outcome" }]` |
 * | `GET /clients/<id>/resource-requests` | resource API requests made with the client's tokens: `[{ "outcome", "status", "fingerprint" }]` |
 * | `GET /clients/<id>/force-refresh-signals` | the `forceRefresh` signals in the client's workflow history: `[{ "rejectedFingerprint"?, "reason"? }]` |
 * | `GET /clients/<id>/node-token` | the client's token as the Node library reads it (`CurrentToken`), or 404 `{ "code" }` |
 *
 * Errors are `{ "error": message }` with status 400 (bad request), 404 or 500.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import type { Redis } from 'ioredis';
import { tokenFingerprint } from '../../activities/access-token.js';
import { TokenStore } from '../../shared/token-store.js';
import type { TokenAdmin } from '../../client/admin.js';
import { TokenReader } from 'token-lifecycle';
import type { IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { workflowIdFor, type ForceRefreshRequest } from '../../workflows/messages.js';
import type { CredentialRef } from '../../workflows/registration.js';

export interface ControlServerOptions {
  iam: IamEmulator;
  client: Client;
  admin: TokenAdmin;
  redis: Redis;
  prefix: string;
  /** Client IDs the emulator knows, handed out in order by `POST /clients`. */
  clientPool: readonly string[];
  /** Where the worker finds the pool's secret. */
  secretRef: CredentialRef;
}

export interface ControlServer {
  readonly url: string;
  close(): Promise<void>;
}

class BadRequest extends Error {}

export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { iam, client, admin, redis, prefix } = options;
  const free = [...options.clientPool];
  const store = new TokenStore(redis, { prefix });
  const reader = new TokenReader({ redis, prefix });

  const routes: Array<
    [
      method: string,
      path: RegExp,
      handle: (match: RegExpExecArray, body: Record<string, unknown>) => Promise<[number, unknown]> | [number, unknown],
    ]
  > = [
    [
      'POST',
      /^\/clients$/,
      async (_match, body) => {
        const clientId = free.shift();
        if (clientId === undefined)
          throw new Error(
            `All ${options.clientPool.length} clients of the stack are registered: raise CLIENT_POOL_SIZE in consumer-stack.ts`,
          );
        const minForcedRefreshIntervalMs = optionalInteger(body, 'minForcedRefreshIntervalMs');
        await admin.register({
          clientId,
          tokenUrl: iam.tokenUrl(),
          authMethod: 'client_secret_post',
          secretRef: options.secretRef,
          ...(minForcedRefreshIntervalMs !== undefined && { policy: { minForcedRefreshIntervalMs } }),
        });
        return [201, { clientId }];
      },
    ],
    ['POST', /^\/revoke$/, (_match, body) => [200, { revoked: iam.revoke(requiredString(body, 'accessToken')) }]],
    [
      'POST',
      /^\/tokens$/,
      async (_match, body) => {
        const clientId = requiredString(body, 'clientId');
        const generation = requiredInteger(body, 'generation');
        const obtainedAt = Date.now();
        const accessToken = `stack.${clientId}.${generation}.${obtainedAt}`;
        const token = {
          clientId,
          accessToken,
          tokenType: 'Bearer',
          scope: typeof body.scope === 'string' ? body.scope : '',
          generation,
          obtainedAt,
          expiresAt: obtainedAt + requiredInteger(body, 'lifetimeMs'),
          fingerprint: tokenFingerprint(accessToken),
        };
        const result = await store.write(token);
        if (!result.written) throw new BadRequest(`the token store refused generation ${generation} of ${clientId}: ${result.reason}`);
        return [201, token];
      },
    ],
    [
      'GET',
      /^\/clients\/([^/]+)\/token-requests$/,
      ([, clientId]) => [200, iam.requestsFor(decodeURIComponent(clientId!)).map((entry) => ({ outcome: entry.outcome }))],
    ],
    [
      'GET',
      /^\/clients\/([^/]+)\/resource-requests$/,
      ([, clientId]) => [
        200,
        iam.resourceRequests
          .filter((entry) => entry.clientId === decodeURIComponent(clientId!))
          .map((entry) => ({
            outcome: entry.outcome,
            status: entry.status,
            fingerprint: entry.accessToken === undefined ? null : tokenFingerprint(entry.accessToken),
          })),
      ],
    ],
    [
      'GET',
      /^\/clients\/([^/]+)\/force-refresh-signals$/,
      async ([, clientId]) => [200, await forceRefreshSignals(client, decodeURIComponent(clientId!))],
    ],
    [
      'GET',
      /^\/clients\/([^/]+)\/node-token$/,
      async ([, clientId]) => {
        try {
          return [200, await reader.getToken(decodeURIComponent(clientId!))];
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          if (typeof code === 'string') return [404, { code, error: (error as Error).message }];
          throw error;
        }
      },
    ],
  ];

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) =>
      send(response, 500, { error: error instanceof Error ? error.message : String(error) }),
    );
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://control').pathname;
    const body = await readJson(request);
    for (const [method, pattern, handleRoute] of routes) {
      const match = pattern.exec(path);
      if (match === null || method !== request.method) continue;
      try {
        const [status, answer] = await handleRoute(match, body);
        return send(response, status, answer);
      } catch (error) {
        if (error instanceof BadRequest) return send(response, 400, { error: error.message });
        throw error;
      }
    }
    send(response, 404, { error: `No control route ${request.method} ${path}` });
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await reader.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The inputs of the `forceRefresh` signals in the workflow's history: what reached the workflow. */
async function forceRefreshSignals(client: Client, clientId: string): Promise<ForceRefreshRequest[]> {
  const history = await client.workflow.getHandle(workflowIdFor(clientId)).fetchHistory();
  return (history.events ?? [])
    .map((event) => event.workflowExecutionSignaledEventAttributes)
    .filter((signal) => signal?.signalName === 'forceRefresh')
    .map((signal) => JSON.parse(Buffer.from(signal!.input!.payloads![0]!.data!).toString('utf8')) as ForceRefreshRequest);
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadRequest('the body is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BadRequest('the body must be a JSON object');
  return value as Record<string, unknown>;
}

function requiredString(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '') throw new BadRequest(`"${name}" must be a non-empty string`);
  return value;
}

function requiredInteger(body: Record<string, unknown>, name: string): number {
  const value = optionalInteger(body, name);
  if (value === undefined) throw new BadRequest(`"${name}" is required`);
  return value;
}

function optionalInteger(body: Record<string, unknown>, name: string): number | undefined {
  const value = body[name];
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new BadRequest(`"${name}" must be a non-negative integer`);
  return value as number;
}

function send(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
}
