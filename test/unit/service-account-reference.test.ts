/**
 * The `serviceaccount:<namespace>/<name>` reference kind (workflows/registration.ts,
 * client/registration-schema.ts): how it parses, that only `assertionRef` takes it, and the
 * audience it is minted for. The minting itself runs against a real API server
 * (test/conformance/service-account-token-hydra.test.ts).
 */
import { describe, expect, test } from 'vitest';
import { InvalidRegistrationError, parseRegistration } from '../../client/registration-schema.js';
import { resolveRequestCredentials } from '../../activities/request-credentials.js';
import { ServiceAccountTokenError } from '../../activities/service-account-tokens.js';
import { readSettings } from '../../shared/settings.js';
import { isServiceAccountRef, parseServiceAccountRef } from '../../workflows/registration.js';

const TOKEN_URL = 'https://iam.example.com/oauth2/token';

function problems(input: unknown): string[] {
  try {
    parseRegistration(input);
  } catch (error) {
    if (error instanceof InvalidRegistrationError) return error.problems;
    throw error;
  }
  return [];
}

describe('parseServiceAccountRef', () => {
  test('takes a namespace and a name', () => {
    expect(parseServiceAccountRef('serviceaccount:payments/orders')).toEqual({ namespace: 'payments', name: 'orders' });
    expect(parseServiceAccountRef('serviceaccount:kube-system/billing.v2-sa')).toEqual({ namespace: 'kube-system', name: 'billing.v2-sa' });
    expect(isServiceAccountRef('serviceaccount:a/b')).toBe(true);
  });

  test('is undefined for the other kinds of reference', () => {
    expect(parseServiceAccountRef('file:/var/run/secrets/token')).toBeUndefined();
    expect(parseServiceAccountRef('env:TOKEN')).toBeUndefined();
    expect(isServiceAccountRef('file:/x')).toBe(false);
  });

  test.each([
    ['serviceaccount:orders', 'must be serviceaccount:<namespace>/<name>'],
    ['serviceaccount:payments/orders/extra', 'must be serviceaccount:<namespace>/<name>'],
    ['serviceaccount:/orders', 'the namespace "" is not a Kubernetes namespace name'],
    ['serviceaccount:Payments/orders', 'the namespace "Payments" is not a Kubernetes namespace name'],
    ['serviceaccount:pay.ments/orders', 'the namespace "pay.ments" is not a Kubernetes namespace name'],
    [`serviceaccount:${'n'.repeat(64)}/orders`, 'is not a Kubernetes namespace name'],
    ['serviceaccount:payments/', 'the service account "" is not a Kubernetes name'],
    ['serviceaccount:payments/Orders', 'the service account "Orders" is not a Kubernetes name'],
    ['serviceaccount:payments/-orders', 'the service account "-orders" is not a Kubernetes name'],
    [`serviceaccount:payments/${'n'.repeat(254)}`, 'is not a Kubernetes name'],
  ])('%s is refused: %s', (ref, problem) => {
    const parsed = parseServiceAccountRef(ref);
    expect(parsed).toMatchObject({ problem: expect.stringContaining(problem) as unknown });
    expect(isServiceAccountRef(ref)).toBe(false);
  });
});

describe('a registration with a service-account assertion', () => {
  const grant = {
    clientId: 'orders',
    tokenUrl: TOKEN_URL,
    authMethod: 'client_secret_basic',
    secretRef: 'env:ORDERS_SECRET',
    grant: 'jwt-bearer',
    assertionRef: 'serviceaccount:payments/orders',
  };

  test('is accepted as the jwt-bearer grant’s assertion and as private_key_jwt’s client assertion', () => {
    expect(parseRegistration(grant)).toMatchObject({ assertionRef: 'serviceaccount:payments/orders' });
    expect(
      parseRegistration({
        clientId: 'orders',
        tokenUrl: TOKEN_URL,
        authMethod: 'private_key_jwt',
        assertionRef: 'serviceaccount:payments/orders',
      }),
    ).toMatchObject({ assertionRef: 'serviceaccount:payments/orders' });
  });

  test('may name the audience to mint for; with issuer instead of tokenUrl it must', () => {
    expect(parseRegistration({ ...grant, assertionAudience: 'https://iam.example.com' })).toMatchObject({
      assertionAudience: 'https://iam.example.com',
    });
    const { tokenUrl: _tokenUrl, ...byIssuer } = grant;
    expect(problems({ ...byIssuer, issuer: 'https://iam.example.com' })).toEqual([
      'assertionAudience: is required with issuer: the audience of the serviceaccount:<namespace>/<name> assertion (by default the tokenUrl, RFC 7523 §3)',
    ]);
    expect(problems({ ...byIssuer, issuer: 'https://iam.example.com', assertionAudience: TOKEN_URL })).toEqual([]);
  });

  test('a file: assertion still may not name an audience: the platform chose it', () => {
    expect(problems({ ...grant, assertionRef: 'file:/run/assertion', assertionAudience: TOKEN_URL })).toEqual([
      'assertionAudience: assertionRef names an assertion the platform signed: the worker signs nothing, remove it',
    ]);
  });

  test('a malformed one is named with what is wrong', () => {
    expect(problems({ ...grant, assertionRef: 'serviceaccount:payments' })).toEqual([
      'assertionRef: serviceaccount:payments: must be serviceaccount:<namespace>/<name>',
    ]);
    expect(problems({ ...grant, assertionRef: 'serviceaccount:Payments/orders' })).toEqual([
      `assertionRef: serviceaccount:Payments/orders: the namespace "Payments" is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)`,
    ]);
  });

  test('only assertionRef takes one', () => {
    expect(problems({ ...grant, secretRef: 'serviceaccount:payments/orders' })).toEqual([
      'secretRef: serviceaccount:<namespace>/<name> names an assertion to mint: only assertionRef takes it',
    ]);
    expect(problems({ ...grant, secretRef: undefined, secretRefs: ['file:/a', 'serviceaccount:payments/orders'] })).toEqual([
      'secretRefs[1]: serviceaccount:<namespace>/<name> names an assertion to mint: only assertionRef takes it',
    ]);
  });

  test('outside a pod, the worker says the Kubernetes API is not there, and sends nothing', async () => {
    const registration = parseRegistration(grant);
    const failure = resolveRequestCredentials(registration, { ORDERS_SECRET: 'x' });
    await expect(failure).rejects.toThrow(ServiceAccountTokenError);
    await expect(failure).rejects.toThrow(
      'assertionRef: serviceaccount:payments/orders needs the Kubernetes API: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (the worker is not in a pod)',
    );
  });

  test('without its own token and CA, the worker names the directory and the setting', async () => {
    const registration = parseRegistration(grant);
    const env = {
      ORDERS_SECRET: 'x',
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: '1',
      KUBERNETES_SERVICE_ACCOUNT_DIR: '/nonexistent/serviceaccount',
    };
    await expect(resolveRequestCredentials(registration, env)).rejects.toMatchObject({
      reason: 'unreadable_pod_credentials',
      kind: 'secret_unavailable',
      message:
        "assertionRef: serviceaccount:payments/orders: the worker's own service-account token and CA could not be read from /nonexistent/serviceaccount (ENOENT); mount them, or set KUBERNETES_SERVICE_ACCOUNT_DIR",
    });
  });
});

describe('KUBERNETES_SERVICE_ACCOUNT_DIR', () => {
  test('is an absolute path, checked when the worker starts', () => {
    expect(readSettings({ KUBERNETES_SERVICE_ACCOUNT_DIR: '/run/kube' }).KUBERNETES_SERVICE_ACCOUNT_DIR).toBe('/run/kube');
    expect(readSettings({}).KUBERNETES_SERVICE_ACCOUNT_DIR).toBeUndefined();
    expect(() => readSettings({ KUBERNETES_SERVICE_ACCOUNT_DIR: 'run/kube' })).toThrow(
      'KUBERNETES_SERVICE_ACCOUNT_DIR: must be an absolute path',
    );
  });
});
