/**
 * Assertions minted for named Kubernetes service accounts (`assertionRef:
 * serviceaccount:<namespace>/<name>`; docs/design.md, "Service-account assertions"): the worker
 * asks the API server's TokenRequest API for a token of the account, with the audience the IAM
 * expects, as a pod does: at `KUBERNETES_SERVICE_HOST`:`KUBERNETES_SERVICE_PORT`, with the pod's
 * own token and CA from its service-account directory. Each client gets a subject of its own
 * (`system:serviceaccount:<namespace>:<name>`), where the pod's projected token has one for all.
 *
 * A minted token is kept per process until 80 % of its lifetime, or until it was sent once (an IAM
 * may refuse a `jti` it has seen, RFC 7523 §3): the several reads of one token request share it,
 * the next request gets a new one. It is a credential: it never reaches Temporal, a log line or an
 * error message.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import got, { RequestError } from 'got';
import { Secret, type Environment } from '../shared/references.js';
import { SecretUnavailableError } from '../shared/secret-unavailable-error.js';

/** Where a pod finds its own service-account token, CA and namespace (Kubernetes' projected volume). */
export const DEFAULT_SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The setting that overrides {@link DEFAULT_SERVICE_ACCOUNT_DIR}: tests, and a worker run outside the cluster. */
export const SERVICE_ACCOUNT_DIR_SETTING = 'KUBERNETES_SERVICE_ACCOUNT_DIR';

/** The lifetime asked for: the TokenRequest API's minimum (a leaked assertion is good for no longer). */
export const SERVICE_ACCOUNT_TOKEN_SECONDS = 600;

/** The share of its lifetime after which a kept token is minted anew, so none is sent near its end. */
const RENEW_AT_SHARE = 0.8;

/** How long the API server may take to answer one TokenRequest. */
const TOKEN_REQUEST_TIMEOUT_MS = 10_000;

/** Why a token could not be minted, as a stable code. */
export type ServiceAccountTokenFailure =
  'not_in_cluster' | 'unreadable_pod_credentials' | 'unauthorized' | 'forbidden' | 'not_found' | 'refused' | 'unreachable';

/**
 * The API server did not mint the token. A `secret_unavailable` failure (the worker sends nothing
 * to the IAM, and the workflow tries again with its backoff, so RBAC fixed later heals the client);
 * the message names the account and what to fix, never a token.
 */
export class ServiceAccountTokenError extends SecretUnavailableError {
  override name = 'ServiceAccountTokenError';

  constructor(
    readonly reason: ServiceAccountTokenFailure,
    message: string,
  ) {
    super(message);
  }
}

/** A service account, as `serviceaccount:<namespace>/<name>` names it. */
export interface ServiceAccount {
  namespace: string;
  name: string;
}

/** A minted token, and the call that drops it from the cache once it was sent. */
export interface MintedServiceAccountToken {
  token: Secret;
  /** Forget this token: the next request for the account and audience mints a new one. */
  readonly spend: () => void;
}

export interface ServiceAccountTokensOptions {
  /** The clock the 80 % point is judged by. @default Date.now */
  now?: () => number;
}

interface Kept {
  minted: Promise<{ token: Secret; renewAt: number }>;
}

/**
 * The per-process cache and minter of service-account tokens. One per worker process: every
 * client's token request goes through it.
 */
export class ServiceAccountTokens {
  private readonly now: () => number;
  private readonly kept = new Map<string, Kept>();

  constructor({ now = Date.now }: ServiceAccountTokensOptions = {}) {
    this.now = now;
  }

  /**
   * A token of `account` whose `aud` is `audience`: the kept one while it is before its 80 % point
   * and not spent, else a new one from the TokenRequest API.
   *
   * @param env - Where `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT` and
   *   `KUBERNETES_SERVICE_ACCOUNT_DIR` are read.
   * @throws {@link ServiceAccountTokenError} naming the account and what failed.
   * @see https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/
   */
  async token(account: ServiceAccount, audience: string, env: Environment): Promise<MintedServiceAccountToken> {
    const key = JSON.stringify([account.namespace, account.name, audience]);
    let kept = this.kept.get(key);
    if (kept !== undefined) {
      const minted = await kept.minted.catch(() => undefined);
      if (minted === undefined || minted.renewAt <= this.now()) {
        if (this.kept.get(key) === kept) this.kept.delete(key);
        kept = undefined;
      }
    }
    if (kept === undefined) {
      kept = { minted: this.mint(account, audience, env) };
      this.kept.set(key, kept);
      // A failure is not kept: the next request asks again.
      const failed = kept;
      kept.minted.catch(() => {
        if (this.kept.get(key) === failed) this.kept.delete(key);
      });
    }
    const { token } = await kept.minted;
    const spent = kept;
    return {
      token,
      spend: () => {
        if (this.kept.get(key) === spent) this.kept.delete(key);
      },
    };
  }

  private async mint(account: ServiceAccount, audience: string, env: Environment): Promise<{ token: Secret; renewAt: number }> {
    const subject = `serviceaccount:${account.namespace}/${account.name}`;
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT;
    if (host === undefined || host === '' || port === undefined || port === '') {
      throw new ServiceAccountTokenError(
        'not_in_cluster',
        `assertionRef: ${subject} needs the Kubernetes API: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (the worker is not in a pod)`,
      );
    }
    const dir = env[SERVICE_ACCOUNT_DIR_SETTING] ?? DEFAULT_SERVICE_ACCOUNT_DIR;
    let podToken: string;
    let ca: string;
    try {
      // Read for every mint: the kubelet rotates the pod's token in place.
      [podToken, ca] = await Promise.all([readFile(join(dir, 'token'), 'utf8'), readFile(join(dir, 'ca.crt'), 'utf8')]);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw new ServiceAccountTokenError(
        'unreadable_pod_credentials',
        `assertionRef: ${subject}: the worker's own service-account token and CA could not be read from ${dir} (${typeof code === 'string' ? code : 'unknown error'}); mount them, or set ${SERVICE_ACCOUNT_DIR_SETTING}`,
      );
    }

    const apiServer = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const path = `/api/v1/namespaces/${encodeURIComponent(account.namespace)}/serviceaccounts/${encodeURIComponent(account.name)}/token`;
    const requestedAt = this.now();
    let response;
    try {
      response = await got.post(`${apiServer}${path}`, {
        headers: { authorization: `Bearer ${podToken.trim()}`, accept: 'application/json' },
        json: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { audiences: [audience], expirationSeconds: SERVICE_ACCOUNT_TOKEN_SECONDS },
        },
        https: { certificateAuthority: ca },
        throwHttpErrors: false,
        followRedirect: false,
        // The workflow retries with its backoff: no loop of our own against the API server.
        retry: { limit: 0 },
        timeout: { request: TOKEN_REQUEST_TIMEOUT_MS },
      });
    } catch (error) {
      const code = error instanceof RequestError ? error.code : 'unknown error';
      throw new ServiceAccountTokenError(
        'unreachable',
        `assertionRef: ${subject}: the Kubernetes API at ${apiServer} did not answer (${code})`,
      );
    }

    if (response.statusCode !== 201) throw refusal(subject, response.statusCode, response.body);
    let token: unknown;
    let expiration: unknown;
    try {
      const body = JSON.parse(response.body) as { status?: { token?: unknown; expirationTimestamp?: unknown } };
      token = body.status?.token;
      expiration = body.status?.expirationTimestamp;
    } catch {
      // Reported below: no token.
    }
    if (typeof token !== 'string' || token === '') {
      throw new ServiceAccountTokenError('refused', `assertionRef: ${subject}: the TokenRequest answer holds no status.token`);
    }
    const expiresAt = typeof expiration === 'string' ? Date.parse(expiration) : Number.NaN;
    const lifetimeMs = Number.isFinite(expiresAt) ? expiresAt - requestedAt : SERVICE_ACCOUNT_TOKEN_SECONDS * 1000;
    return { token: new Secret(token), renewAt: requestedAt + lifetimeMs * RENEW_AT_SHARE };
  }
}

/** The API server's refusal, as what to fix; its `message` is a Status, never a token. */
function refusal(subject: string, status: number, body: string): ServiceAccountTokenError {
  let message = '';
  try {
    const parsed = (JSON.parse(body) as { message?: unknown }).message;
    if (typeof parsed === 'string') message = `: ${parsed}`;
  } catch {
    // Not a Status: the code says enough.
  }
  switch (status) {
    case 401:
      return new ServiceAccountTokenError(
        'unauthorized',
        `assertionRef: ${subject}: the Kubernetes API refused the worker's own service-account token (401): is it expired or from another cluster?`,
      );
    case 403:
      return new ServiceAccountTokenError(
        'forbidden',
        `assertionRef: ${subject}: the worker may not mint its tokens (403): its service account needs RBAC permission to create serviceaccounts/token for this account${message}`,
      );
    case 404:
      return new ServiceAccountTokenError('not_found', `assertionRef: ${subject}: no such service account (404)${message}`);
    default:
      return new ServiceAccountTokenError('refused', `assertionRef: ${subject}: the TokenRequest was refused (${status})${message}`);
  }
}
