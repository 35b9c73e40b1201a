/**
 * The IAM emulator's configuration file: what `make demo` starts it with.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { basicAuthorization } from '../../dev/iam-emulator/clients.js';
import { EmulatorConfigError, loadEmulatorConfig, parseEmulatorConfig } from '../../dev/iam-emulator/config.js';
import { startIamEmulator, type IamEmulator } from '../../dev/iam-emulator/emulator.js';

const DEMO_CONFIG = fileURLToPath(new URL('../../dev/iam-emulator/demo-clients.yaml', import.meta.url));

/** The problems an invalid config reports, or a failure when it is accepted. */
function problemsOf(text: string): readonly string[] {
  try {
    parseEmulatorConfig(text, 'test.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(EmulatorConfigError);
    return (error as EmulatorConfigError).issues;
  }
  throw new Error('expected the config to be refused');
}

describe('emulator config', () => {
  let iam: IamEmulator | undefined;
  afterEach(async () => {
    await iam?.close();
    iam = undefined;
  });

  test('a YAML config becomes the emulator options', () => {
    const config = parseEmulatorConfig(
      [
        'realm: prod',
        'port: 8180',
        'tokenLifetimeSeconds: 60',
        'clients:',
        '  - clientId: a',
        '    clientSecret: s',
        '    scopes: [x, y]',
        '    enabled: false',
      ].join('\n'),
      'test.yaml',
    );

    expect(config).toEqual({
      realm: 'prod',
      port: 8180,
      tokenLifetimeSeconds: 60,
      clients: [{ clientId: 'a', clientSecret: 's', scopes: ['x', 'y'], enabled: false }],
    });
  });

  test('a JSON config is read the same way', () => {
    const config = parseEmulatorConfig(
      JSON.stringify({ clients: [{ clientId: 'a', clientSecret: 's' }], omitExpiresIn: true }),
      'test.json',
    );

    expect(config).toEqual({ clients: [{ clientId: 'a', clientSecret: 's' }], omitExpiresIn: true });
  });

  test('every problem is reported at once, each naming its path', () => {
    const problems = problemsOf(
      [
        'port: 70000',
        'tokenLifetme: 60',
        'clients:',
        '  - clientId: a',
        '  - clientId: b',
        '    clientSecret: 3',
        '    scopes: ["has space"]',
      ].join('\n'),
    );

    expect(problems).toEqual([
      'port: Too big: expected number to be <=65535',
      'clients[0].clientSecret: is required unless authMethod is private_key_jwt, tls_client_auth, self_signed_tls_client_auth',
      'clients[1].clientSecret: Invalid input: expected string, received number',
      'clients[1].scopes[0]: must be a scope token (RFC 6749 §3.3): no spaces, quotes or backslashes',
      'tokenLifetme: unknown field',
    ]);
  });

  test('a duplicate client ID is refused by its path', () => {
    const problems = problemsOf(['clients:', '  - { clientId: a, clientSecret: s }', '  - { clientId: a, clientSecret: t }'].join('\n'));

    expect(problems).toEqual(["clients[1].clientId: duplicate client ID 'a'"]);
  });

  test('text that is not YAML is refused with the file name', () => {
    expect(() => parseEmulatorConfig('clients: [', 'broken.yaml')).toThrow(
      /^Invalid IAM emulator config broken.yaml:\n {2}- not valid YAML or JSON: /,
    );
  });

  test('a missing file is refused with its path', async () => {
    await expect(loadEmulatorConfig('/nonexistent/clients.yaml')).rejects.toThrow(
      /^Invalid IAM emulator config \/nonexistent\/clients.yaml:\n {2}- cannot be read: ENOENT/,
    );
  });

  test('the demo clients start an emulator that issues tokens, the special-character secret included', async () => {
    const config = await loadEmulatorConfig(DEMO_CONFIG);
    iam = await startIamEmulator({ ...config, port: 0 });
    const billing = config.clients.find((client) => client.clientId === 'billing-service');
    expect(billing?.clientSecret).toMatch(/[:+% ]/);

    const res = await fetch(iam.tokenUrl(), {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Authorization: basicAuthorization('billing-service', billing?.clientSecret ?? ''),
      },
      body: 'grant_type=client_credentials&scope=billing',
    });

    expect(res.status).toBe(200);
    expect(((await res.json()) as { scope: string }).scope).toBe('billing');
    expect(config.clients.map((client) => client.clientId)).toEqual([
      'orders-service',
      'billing-service',
      'reporting-service',
      'legacy-batch',
      'shipping-service',
    ]);
  });
});
