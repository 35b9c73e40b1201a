import { describe, expect, test } from 'vitest';
import { readSettings, SettingsError } from '../../shared/settings.js';

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
      LOG_LEVEL: 'INFO',
      LOG_FORMAT: 'pretty',
    });
    expect(readSettings({}).MAX_CACHED_WORKFLOWS).toBeUndefined();
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
});
