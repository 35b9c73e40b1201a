/**
 * A backend service calling an OAuth-protected API with the token the worker keeps in Redis.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 CLIENT_ID=orders-service API_URL=http://127.0.0.1:8080/api/resource \
 *     npx tsx consumers/node/examples/got-with-token.ts
 *
 * In an application, the imports are the same: `npm install token-lifecycle got`.
 */
import got, { RequestError } from 'got';
import { createRedisClient, TokenReader, TokenUnavailableError } from 'token-lifecycle';
import { withBearerAuth } from 'token-lifecycle/got';

const redis = createRedisClient(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
// One reader per process: it caches tokens (dropped when the worker announces a new one) and
// makes concurrent requests refused with the same token share one refresh request.
const reader = new TokenReader({ redis, cache: true });
const api = withBearerAuth(got, { reader, clientId: process.env.CLIENT_ID ?? 'orders-service' });

try {
  // Authorization: Bearer <token>; on 401 invalid_token: one refresh, one retry, never a loop.
  const body = await api.get(process.env.API_URL ?? 'http://127.0.0.1:8080/api/resource').json();
  console.log(body);
} catch (error) {
  // got wraps errors thrown in hooks in its RequestError; the reader's error is the cause.
  const cause = error instanceof RequestError ? error.cause : error;
  if (cause instanceof TokenUnavailableError)
    console.error(`No token yet for ${cause.clientId}: is the client registered (tokenctl status)?`);
  else throw error;
} finally {
  await reader.close();
  redis.disconnect();
}
