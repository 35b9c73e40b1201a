import { ApplicationFailure } from '@temporalio/common';
import { LogTimestamp } from '@temporalio/worker';
import { describe, expect, test } from 'vitest';
import { AccessToken } from '../../activities/access-token.js';
import { Secret } from '../../shared/references.js';
import { createWorkerLogger } from '../../worker/logger.js';

function jsonLogger(level: 'DEBUG' | 'INFO' = 'INFO') {
  const lines: string[] = [];
  const logger = createWorkerLogger({ level, format: 'json', writeLine: (line) => lines.push(line) });
  return { logger, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>), lines };
}

describe('LOG_FORMAT=json', () => {
  test('one JSON object per line: time, level, message first, then the metadata', () => {
    const { logger, lines, records } = jsonLogger();
    logger.warn('Token request failed', { clientId: 'orders', kind: 'rate_limited', [LogTimestamp]: 1_764_374_400_123_000_000n });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('}\n')).toBe(true);
    expect(lines[0]!.indexOf('\n')).toBe(lines[0]!.length - 1);
    expect(Object.keys(records()[0]!)).toEqual(['time', 'level', 'message', 'clientId', 'kind']);
    expect(records()[0]).toEqual({
      time: '2025-11-29T00:00:00.123Z',
      level: 'WARN',
      message: 'Token request failed',
      clientId: 'orders',
      kind: 'rate_limited',
    });
  });

  test('a metadata field cannot overwrite time, level or message', () => {
    const { logger, records } = jsonLogger();
    logger.info('the real message', { message: 'spoofed', level: 'ERROR' });
    expect(records()[0]).toMatchObject({ level: 'INFO', message: 'the real message' });
  });

  test('errors keep their name, message, stack and own fields; bigints print as strings', () => {
    const { logger, records } = jsonLogger();
    const failure = ApplicationFailure.create({
      type: 'credentials_rejected',
      message: 'Token endpoint answered 401',
      nonRetryable: true,
      cause: new Error('underneath'),
    });
    logger.warn('Activity failed', { error: failure, taskQueue: 'token-lifecycle-iam', attempt: 3n });
    const error = records()[0]!.error as Record<string, unknown>;
    expect(error).toMatchObject({
      name: 'ApplicationFailure',
      message: 'Token endpoint answered 401',
      type: 'credentials_rejected',
      nonRetryable: true,
    });
    expect(error.stack).toContain('ApplicationFailure: Token endpoint answered 401');
    expect(error.cause).toMatchObject({ name: 'Error', message: 'underneath' });
    expect(records()[0]!.attempt).toBe('3');
  });

  test('a secret or token that slipped into metadata prints as [redacted]', () => {
    const { logger, lines } = jsonLogger();
    logger.error('oops', { secret: new Secret('s3cr3t-value'), token: new AccessToken('eyJ-token-value') });
    expect(lines[0]).toContain('"secret":"[redacted]"');
    expect(lines[0]).not.toContain('s3cr3t-value');
    expect(lines[0]).not.toContain('eyJ-token-value');
  });

  test('the level filters, and the SDK warning the IAM worker causes on purpose is debug', () => {
    const { logger, records } = jsonLogger('INFO');
    logger.debug('not shown');
    logger.warn('No workflows registered, not polling for workflow tasks', { taskQueue: 'token-lifecycle-iam' });
    logger.warn('another warning');
    expect(records().map((r) => r.message)).toEqual(['another warning']);

    const debug = jsonLogger('DEBUG');
    debug.logger.warn('No workflows registered, not polling for workflow tasks');
    expect(debug.records()).toMatchObject([{ level: 'DEBUG' }]);
  });
});
