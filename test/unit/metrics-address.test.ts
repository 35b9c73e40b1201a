/** Where /metrics listens and how the health check on the same machine reaches it (worker/metrics-address.ts). */
import { expect, test } from 'vitest';
import { metricsListenAddress, metricsLocalUrl } from '../../worker/metrics-address.js';

test('listens on METRICS_HOST, an IPv6 address in brackets', () => {
  expect(metricsListenAddress('127.0.0.1', 9464)).toBe('127.0.0.1:9464');
  expect(metricsListenAddress('::', 9464)).toBe('[::]:9464');
});

test('is reached on loopback when it listens on every interface, else where it listens', () => {
  expect(metricsLocalUrl('0.0.0.0', 9464)).toBe('http://127.0.0.1:9464/metrics');
  expect(metricsLocalUrl('::', 9464)).toBe('http://[::1]:9464/metrics');
  expect(metricsLocalUrl('127.0.0.1', 9464)).toBe('http://127.0.0.1:9464/metrics');
});
