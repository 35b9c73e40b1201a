/**
 * The worker reaches an HTTPS IAM with a private CA through a real HTTP proxy (Debian's tinyproxy),
 * as behind an enterprise egress: `HTTPS_PROXY` and `NO_PROXY` of the worker process, and a
 * registration's own `proxyUrl` (docs/design.md, "Network"). A proxy that is gone is `blocked`,
 * named in the message without its credentials, and the client recovers once it is back. The
 * worker is the real worker process: proxy settings are its environment.
 */
import { Client, Connection } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { TokenAdmin } from '../../client/admin.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';
import { tokenKey } from '../../shared/redis-layout.js';
import { workflowIdFor } from '../../workflows/messages.js';
import type { ClientRegistration } from '../../workflows/registration.js';
import { expectNoSecretsInHistories } from '../support/history-secrets.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { createTestPki, type TestPki } from '../support/test-pki.js';
import { startTinyproxy, type Tinyproxy } from '../support/tinyproxy.js';
import { eventually } from '../support/token-stack.js';
import { startWorkerProcess, type WorkerProcess } from '../support/worker-process.js';

const SECRET = 'egress-client-secret-4c5d6e';
/** Credentials in HTTPS_PROXY: tinyproxy ignores them, and no message, log or history may show them. */
const PROXY_PASSWORD = 'proxy-pa55word-never-shown';
/** Short backoffs, so recovery after the proxy returns takes seconds (docs/design.md, "Failures"). */
const POLICY = { backoff: { blocked: { baseMs: 500, capMs: 1_000 } } };

let pki: TestPki;
let proxied: IamEmulator;
let bypassed: IamEmulator;
let proxy: Tinyproxy;
let redisServer: RedisServer;
let redis: Redis;
let connection: Connection;
let admin: TokenAdmin;
let worker: WorkerProcess;
const tokens: string[] = [];

beforeAll(async () => {
  pki = await createTestPki();
  const server = await pki.serverCertificate({ ip: ['127.0.0.1', '127.0.0.2'] });
  const tls = { cert: server.cert, key: server.key };
  const clients = [
    { clientId: 'via-env-proxy', clientSecret: SECRET },
    { clientId: 'no-proxy', clientSecret: SECRET },
    { clientId: 'via-registration-proxy', clientSecret: SECRET },
  ];
  // Two IAM addresses: NO_PROXY names the second one.
  proxied = await startIamEmulator({ host: '127.0.0.1', tls, tokenLifetimeSeconds: 300, clients });
  bypassed = await startIamEmulator({ host: '127.0.0.2', tls, tokenLifetimeSeconds: 300, clients });
  proxy = await startTinyproxy();
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  connection = await Connection.connect({ address: inject('temporalAddress') });
  const taskQueue = `test-${randomUUID()}`;
  admin = new TokenAdmin(new Client({ connection }), { taskQueue });
  worker = await startWorkerProcess({
    temporalAddress: inject('temporalAddress'),
    taskQueue,
    redisUrl: redisServer.url,
    workflowBundlePath: inject('workflowBundlePath'),
    env: {
      EGRESS_SECRET: SECRET,
      HTTPS_PROXY: `http://egress-user:${PROXY_PASSWORD}@127.0.0.1:${proxy.port}`,
      NO_PROXY: '127.0.0.2',
    },
  });
});

afterAll(async () => {
  for (const clientId of ['via-env-proxy', 'no-proxy', 'via-registration-proxy']) {
    await admin?.client.workflow
      .getHandle(workflowIdFor(clientId))
      .terminate('test finished')
      .catch(() => undefined);
  }
  await worker?.kill9();
  await connection?.close();
  redis?.disconnect();
  await redisServer?.stop();
  await proxy?.remove();
  await proxied?.close();
  await bypassed?.close();
  await pki?.remove();
});

function registration(clientId: string, iam: IamEmulator, extra: Partial<ClientRegistration> = {}): ClientRegistration {
  return {
    clientId,
    tokenUrl: iam.tokenUrl(),
    authMethod: 'client_secret_post',
    secretRef: 'env:EGRESS_SECRET',
    caRef: `file:${pki.ca.certPath}`,
    policy: POLICY,
    ...extra,
  };
}

async function tokenWithGenerationAbove(clientId: string, generation: number): Promise<Record<string, string>> {
  const token = await eventually(
    async () => {
      const hash = await redis.hgetall(tokenKey('oauth:', clientId));
      return Number(hash.generation ?? 0) > generation ? hash : undefined;
    },
    60_000,
    `${clientId} generation > ${generation}`,
  );
  tokens.push(token.access_token!);
  return token;
}

const iamHost = (iam: IamEmulator) => new URL(iam.url).host;

describe('through an HTTP proxy', () => {
  test('HTTPS_PROXY tunnels the token request to an HTTPS IAM whose private CA the registration trusts by caRef', async () => {
    await admin.register(registration('via-env-proxy', proxied));
    await tokenWithGenerationAbove('via-env-proxy', 0);

    expect(proxied.requestsFor('via-env-proxy').map((entry) => entry.outcome)).toEqual(['issued']);
    expect(await proxy.connects()).toContain(iamHost(proxied));
  });

  test('NO_PROXY sends the request to its host directly', async () => {
    await admin.register(registration('no-proxy', bypassed));
    await tokenWithGenerationAbove('no-proxy', 0);

    expect(bypassed.requestsFor('no-proxy').map((entry) => entry.outcome)).toEqual(['issued']);
    expect(await proxy.connects()).not.toContain(iamHost(bypassed));
  });

  test("a registration's proxyUrl is used even for a host NO_PROXY exempts", async () => {
    await admin.register(registration('via-registration-proxy', bypassed, { proxyUrl: proxy.url }));
    await tokenWithGenerationAbove('via-registration-proxy', 0);

    expect(await proxy.connects()).toContain(iamHost(bypassed));
  });

  test('a stopped proxy is blocked, named without its credentials, while direct clients go on; the client recovers when it is back', async () => {
    await proxy.stop();
    const before = proxied.requestsFor('via-env-proxy').length;
    await admin.refresh('via-env-proxy', { reason: 'proxy test' });
    await admin.refresh('no-proxy', { reason: 'proxy test' });

    const blocked = await eventually(
      async () => {
        const status = await admin.status('via-env-proxy');
        return status.lastError?.kind === 'blocked' ? status : undefined;
      },
      60_000,
      'via-env-proxy blocked',
    );
    expect(blocked.lastError!.message).toContain(`Proxy http://127.0.0.1:${proxy.port} could not be reached`);
    expect(blocked.lastError!.message).not.toContain(PROXY_PASSWORD);
    expect(blocked.lastError!.message).not.toContain('egress-user');
    // Nothing reached the IAM, and the client that needs no proxy was served.
    expect(proxied.requestsFor('via-env-proxy')).toHaveLength(before);
    await tokenWithGenerationAbove('no-proxy', 1);

    await proxy.start();
    await tokenWithGenerationAbove('via-env-proxy', 1);
    // The activity stores the token, then the workflow records the outcome: a moment later.
    await eventually(
      async () => {
        const status = await admin.status('via-env-proxy');
        return status.state === 'active' && status.consecutiveFailures === 0 ? status : undefined;
      },
      30_000,
      'via-env-proxy active again',
    );
    expect(worker.output()).not.toContain(PROXY_PASSWORD);
  });
});

test('no workflow history holds the secret, a token or the proxy credentials', async () => {
  await expectNoSecretsInHistories(admin.client, ['via-env-proxy', 'no-proxy', 'via-registration-proxy'].map(workflowIdFor), [
    SECRET,
    PROXY_PASSWORD,
    ...tokens,
  ]);
});
