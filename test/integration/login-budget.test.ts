/**
 * The failed-login budget per IAM host (docs/design.md, "The failed-login budget"), on a real
 * redis-server: proven credentials pass without asking, unproven ones go one at a time while the
 * host's budget of rejected logins has room, and the proof is a keyed MAC that says nothing about
 * the secret without the workers' key.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RequestHeldBackError } from '../../activities/errors.js';
import { LoginBudget, loginProof, LoginProofKey, type LoginCredentials } from '../../activities/login-budget.js';
import { loginBudgetKey, loginProofKey } from '../../shared/redis-layout.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = new Redis(redisServer.url);
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.stop();
});

const KEY = new LoginProofKey('the-workers-proof-key');
const SECRET = 'orders-secret-0123';
const credentials = (clientId: string, tokenUrl: string, material = SECRET): LoginCredentials => ({
  clientId,
  tokenUrl,
  authMethod: 'client_secret_basic',
  material,
});
const admitOptions = (owner: string) => ({ owner, turnMs: 20_000, maxWaitMs: 0 });

async function heldBack(promise: Promise<unknown>): Promise<RequestHeldBackError> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(RequestHeldBackError);
  return error as RequestHeldBackError;
}

describe('the proof of accepted credentials', () => {
  test('is a keyed MAC: the same for the same credentials, another for another key, secret, method or endpoint, and never a plain hash', () => {
    const proof = loginProof(KEY, credentials('orders', 'https://iam.example/token'));
    expect(proof).toMatch(/^[0-9a-f]{64}$/);
    expect(loginProof(KEY, credentials('orders', 'https://iam.example/token'))).toBe(proof);
    expect(loginProof(new LoginProofKey('another-key'), credentials('orders', 'https://iam.example/token'))).not.toBe(proof);
    expect(loginProof(KEY, credentials('orders', 'https://iam.example/token', 'another-secret'))).not.toBe(proof);
    expect(loginProof(KEY, credentials('orders', 'https://other-iam.example/token'))).not.toBe(proof);
    expect(loginProof(KEY, { ...credentials('orders', 'https://iam.example/token'), authMethod: 'client_secret_post' })).not.toBe(proof);
    for (const plain of [SECRET, `orders:${SECRET}`]) {
      expect(proof).not.toBe(createHash('sha256').update(plain).digest('hex'));
    }
    expect(String(KEY)).toBe('[redacted]');
  });
});

describe('LoginBudget', () => {
  test('unproven credentials take the host’s turn one at a time; once accepted they are proven and pass without it', async () => {
    const budget = new LoginBudget(redis, { prefix: 'turns:' });
    const tokenUrl = 'https://iam.example/realms/a/protocol/openid-connect/token';
    const first = await budget.admit(credentials('a', tokenUrl), KEY, admitOptions('wf-a/1'));
    expect(first.proven).toBe(false);

    // Another unproven request to the same host (another realm too) waits for the turn.
    const waiting = await heldBack(budget.admit(credentials('b', 'https://iam.example/realms/b/token'), KEY, admitOptions('wf-b/1')));
    expect(waiting.kind).toBe('login_budget');
    expect(waiting.details).toEqual({ heldBack: true, retryAfterMs: expect.any(Number) as number });
    expect(waiting.message).toMatch(
      /^No request sent: another client's unproven credentials are being tried at iam\.example; unproven credentials go one at a time/,
    );
    // Another host has a turn of its own.
    expect((await budget.admit(credentials('c', 'https://other-iam.example/token'), KEY, admitOptions('wf-c/1'))).proven).toBe(false);

    await first.accepted();
    const proof = await redis.get(loginProofKey('turns:', 'a'));
    expect(proof).toBe(loginProof(KEY, credentials('a', tokenUrl)));
    // Proven now: passes while b holds the turn.
    const b = await budget.admit(credentials('b', 'https://iam.example/realms/b/token'), KEY, admitOptions('wf-b/1'));
    expect(b.proven).toBe(false);
    expect((await budget.admit(credentials('a', tokenUrl), KEY, admitOptions('wf-a/2'))).proven).toBe(true);
    // A changed secret is unproven again.
    await heldBack(budget.admit(credentials('a', tokenUrl, 'rotated-secret'), KEY, admitOptions('wf-a/3')));
    await b.released();
  });

  test('a retry of the same activity takes back the turn its dead worker held; the turn of a vanished owner ends after turnMs', async () => {
    const budget = new LoginBudget(redis, { prefix: 'retake:' });
    const tokenUrl = 'https://iam.example/token';
    await budget.admit(credentials('a', tokenUrl), KEY, { owner: 'wf-a/1', turnMs: 300, maxWaitMs: 0 });
    // The worker died; the retry has the same owner.
    expect((await budget.admit(credentials('a', tokenUrl), KEY, { owner: 'wf-a/1', turnMs: 300, maxWaitMs: 0 })).proven).toBe(false);
    await heldBack(budget.admit(credentials('b', tokenUrl), KEY, { owner: 'wf-b/1', turnMs: 300, maxWaitMs: 0 }));
    // Waiting for the turn: it frees when the vanished owner's time is up.
    expect((await budget.admit(credentials('b', tokenUrl), KEY, { owner: 'wf-b/1', turnMs: 300, maxWaitMs: 10_000 })).proven).toBe(false);
  });

  test('after maxRejections rejected logins in the window, unproven credentials wait until the oldest leaves it; proven ones never do', async () => {
    const budget = new LoginBudget(redis, { prefix: 'spent:', maxRejections: 2, windowMs: 3_000 });
    const tokenUrl = 'https://iam.example/token';
    const proven = await budget.admit(credentials('good', tokenUrl), KEY, admitOptions('wf-good/1'));
    await proven.accepted();

    for (const clientId of ['wrong-1', 'wrong-2']) {
      const ticket = await budget.admit(credentials(clientId, tokenUrl, 'typo'), KEY, admitOptions(`wf-${clientId}/1`));
      await ticket.rejected();
    }
    const spent = await heldBack(
      budget.admit(credentials('wrong-3', tokenUrl, 'typo'), KEY, { ...admitOptions('wf-wrong-3/1'), maxWaitMs: 10_000 }),
    );
    expect(spent.message).toMatch(
      /^No request sent: 2 rejected logins at iam\.example in the last 3 s; unproven credentials wait; next try in \d+ ms$/,
    );
    expect(spent.details.retryAfterMs).toBeGreaterThan(0);
    expect(spent.details.retryAfterMs).toBeLessThanOrEqual(3_000);
    // A proven renewal goes through a spent budget.
    const renewal = await budget.admit(credentials('good', tokenUrl), KEY, admitOptions('wf-good/2'));
    expect(renewal.proven).toBe(true);
    // A proven credential rejected (rotated at the IAM) spends the budget too, and is unproven after.
    expect(await renewal.rejected()).toBe(3);
    expect(await redis.exists(loginProofKey('spent:', 'good'))).toBe(0);

    // Once the rejections have left the window, the next unproven request goes.
    await new Promise((resolve) => setTimeout(resolve, spent.details.retryAfterMs! + 3_000));
    expect((await budget.admit(credentials('wrong-3', tokenUrl, 'typo'), KEY, admitOptions('wf-wrong-3/2'))).proven).toBe(false);
  });

  test('keeps nothing in Redis from which a secret could be guessed: the budget holds times, the proof a keyed MAC', async () => {
    const budget = new LoginBudget(redis, { prefix: 'scan:' });
    const tokenUrl = 'https://iam.example/token';
    await (await budget.admit(credentials('a', tokenUrl), KEY, admitOptions('wf-a/1'))).accepted();
    await (await budget.admit(credentials('b', tokenUrl, 'typo'), KEY, admitOptions('wf-b/1'))).rejected();
    const keys = await redis.keys('scan:*');
    expect(keys.sort()).toEqual([loginBudgetKey('scan:', 'https://iam.example'), loginProofKey('scan:', 'a')].sort());
    const stored = JSON.stringify([
      await redis.hgetall(loginBudgetKey('scan:', 'https://iam.example')),
      await redis.get(loginProofKey('scan:', 'a')),
    ]);
    for (const secret of [SECRET, 'typo']) {
      for (const derived of [
        secret,
        createHash('sha256').update(secret).digest('hex'),
        createHash('sha256').update(secret).digest('base64'),
      ]) {
        expect(stored).not.toContain(derived);
      }
    }
    expect(await redis.hgetall(loginBudgetKey('scan:', 'https://iam.example'))).toEqual({
      rejections: expect.stringMatching(/^\d{13}$/) as string,
    });
  });
});
