import { describe, expect, test } from 'vitest';
import { readRedisSettings } from '../../shared/redis-settings.js';
import { readSettings } from '../../shared/settings.js';
import { SettingsError } from '../../shared/settings-error.js';

describe('settings from the environment', () => {
  test('the defaults of the README settings table when nothing is set; empty values count as unset', () => {
    expect(readSettings({ TEMPORAL_ADDRESS: '', LOG_LEVEL: '' })).toMatchObject({
      TEMPORAL_ADDRESS: 'localhost:7233',
      TEMPORAL_NAMESPACE: 'default',
      TEMPORAL_TASK_QUEUE: 'token-lifecycle',
      REDIS_URL: 'redis://127.0.0.1:6379',
      TOKEN_KEY_PREFIX: 'oauth:',
      IAM_MAX_RPS: 40,
      METRICS_PORT: 9464,
      METRICS_HOST: '127.0.0.1',
      LOG_LEVEL: 'INFO',
      LOG_FORMAT: 'pretty',
    });
    expect(readSettings({}).MAX_CACHED_WORKFLOWS).toBeUndefined();
  });

  test('METRICS_HOST is an IP address: loopback by default, 0.0.0.0 or :: to open it', () => {
    expect(readSettings({ METRICS_HOST: '0.0.0.0' }).METRICS_HOST).toBe('0.0.0.0');
    expect(readSettings({ METRICS_HOST: '::' }).METRICS_HOST).toBe('::');
    expect(() => readSettings({ METRICS_HOST: 'localhost' })).toThrow('METRICS_HOST: must be an IP address, e.g. 127.0.0.1 or 0.0.0.0');
  });

  test('LOG_FORMAT is pretty or json', () => {
    expect(readSettings({ LOG_FORMAT: 'json' }).LOG_FORMAT).toBe('json');
    expect(() => readSettings({ LOG_FORMAT: 'xml' })).toThrow(/LOG_FORMAT: .*"pretty".*"json"/);
  });

  test('MAX_CACHED_WORKFLOWS is 0 (no cache) or at least 2, as the SDK requires', () => {
    expect(readSettings({ MAX_CACHED_WORKFLOWS: '0' }).MAX_CACHED_WORKFLOWS).toBe(0);
    expect(readSettings({ MAX_CACHED_WORKFLOWS: '500' }).MAX_CACHED_WORKFLOWS).toBe(500);
    expect(() => readSettings({ MAX_CACHED_WORKFLOWS: '1' })).toThrow('MAX_CACHED_WORKFLOWS: must be 0 (no cache) or at least 2');
    expect(() => readSettings({ MAX_CACHED_WORKFLOWS: 'many' })).toThrow(/MAX_CACHED_WORKFLOWS: /);
  });

  test('every problem is listed at once, each naming its variable', () => {
    const error = (() => {
      try {
        readSettings({ IAM_MAX_RPS: '0', METRICS_PORT: '70000', LOG_LEVEL: 'LOUD' });
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as SettingsError).problems.map((problem) => problem.split(':')[0])).toEqual(['IAM_MAX_RPS', 'METRICS_PORT', 'LOG_LEVEL']);
  });

  test('mTLS needs both the certificate and the key', () => {
    expect(() => readSettings({ TEMPORAL_TLS_CERT_PATH: '/c.pem' })).toThrow(
      'TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH must be given together (mTLS)',
    );
  });

  test("the Redis settings' problems are listed with the others'", () => {
    expect(() => readSettings({ IAM_MAX_RPS: '0', REDIS_TLS_CA: '-----BEGIN CERTIFICATE-----', REDIS_TLS_KEY: 'file:/k.pem' })).toThrow(
      new SettingsError([
        'IAM_MAX_RPS: Too small: expected number to be >0',
        'REDIS_TLS_CA: must be env:NAME or file:/absolute/path (a reference, never the value itself)',
        'REDIS_TLS_CERT and REDIS_TLS_KEY must be given together (a client certificate and its key)',
        'REDIS_TLS_CA, REDIS_TLS_KEY need a TLS REDIS_URL: rediss://, rediss+sentinel:// or rediss+cluster://',
      ]),
    );
  });
});

describe('the Redis settings alone (tokenctl token, the consumer library)', () => {
  test('are the same as in the whole settings, and other variables do not matter', () => {
    const env = {
      REDIS_URL: 'rediss://cache.internal:6380',
      REDIS_TLS_CA: 'file:/run/tls/ca.pem',
      TOKEN_KEY_PREFIX: 'tokens:',
      IAM_MAX_RPS: 'many',
    };
    const redis = readRedisSettings(env);

    expect(redis).toEqual({ REDIS_URL: 'rediss://cache.internal:6380', REDIS_TLS_CA: 'file:/run/tls/ca.pem', TOKEN_KEY_PREFIX: 'tokens:' });
    expect(readSettings({ ...env, IAM_MAX_RPS: '10' })).toMatchObject(redis);
  });

  test('have the defaults, an empty value counting as unset', () => {
    expect(readRedisSettings({ REDIS_URL: '', TOKEN_KEY_PREFIX: '' })).toEqual({
      REDIS_URL: 'redis://127.0.0.1:6379',
      TOKEN_KEY_PREFIX: 'oauth:',
    });
  });

  test('a client certificate needs its key and a TLS URL', () => {
    expect(() => readRedisSettings({ REDIS_URL: 'rediss+sentinel://s1:26379/mymaster', REDIS_TLS_CERT: 'env:CERT' })).toThrow(
      new SettingsError(['REDIS_TLS_CERT and REDIS_TLS_KEY must be given together (a client certificate and its key)']),
    );
    expect(
      readRedisSettings({ REDIS_URL: 'rediss+cluster://c1:6379', REDIS_TLS_CERT: 'env:CERT', REDIS_TLS_KEY: 'env:KEY' }),
    ).toMatchObject({
      REDIS_TLS_CERT: 'env:CERT',
      REDIS_TLS_KEY: 'env:KEY',
    });
  });
});
