/**
 * A backend service calling an OAuth-protected API with the token the worker keeps in Redis. While
 * `make demo` runs, in this folder, with the variables the demo prints:
 *
 *   npx tsx consumers/node/examples/got-with-token.ts
 *
 * API_URL (the demo's resource API by default), CLIENT_ID, REDIS_URL and TOKEN_KEY_PREFIX move it.
 * In an application, the imports are the same: `npm install token-lifecycle got`.
 */
import got, { RequestError } from 'got';
import { createRedisClient, RedisUnavailableError, TokenReader, TokenUnavailableError } from 'token-lifecycle';
import { withBearerAuth } from 'token-lifecycle/got';

const apiUrl = process.env.API_URL ?? 'http://127.0.0.1:8180/api/resource';
const redis = createRedisClient(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
// One reader per process: it caches tokens (dropped when the worker announces a new one) and
// makes concurrent requests refused with the same token share one refresh request.
const reader = new TokenReader({ redis, cache: true, prefix: process.env.TOKEN_KEY_PREFIX ?? 'oauth:' });
const api = withBearerAuth(got, { reader, clientId: process.env.CLIENT_ID ?? 'orders-service' });

try {
  // Authorization: Bearer <token>; on 401 invalid_token: one refresh, one retry, never a loop.
  const body = await api.get(apiUrl).json();
  console.log(body);
} catch (error) {
  // got wraps errors thrown in hooks in its RequestError; the reader's error is the cause.
  const cause = error instanceof RequestError ? error.cause : error;
  if (cause instanceof TokenUnavailableError)
    console.error(`No token yet for ${cause.clientId}: is the client registered (tokenctl status)?`);
  else if (cause instanceof RedisUnavailableError) console.error(`${cause.message}: is REDIS_URL the worker's Redis?`);
  else if (error instanceof RequestError && error.code === 'ECONNREFUSED')
    console.error(`Nothing answers at ${apiUrl}: is make demo running? (API_URL moves it)`);
  else throw error;
  process.exitCode = 1;
} finally {
  await reader.close();
  redis.disconnect();
}
