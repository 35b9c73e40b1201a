/** The ACL rules of cli/redis-acl.ts; what Redis makes of them is tested in test/integration/redis-acl.test.ts. */
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  AclRuleError,
  aclFileLine,
  aclPasswordHash,
  aclSetUserArguments,
  consumerAclRules,
  workerAclRules,
  workerCommandsByPurpose,
} from '../../cli/redis-acl.js';

const keyPatterns = (rules: string[]) => rules.filter((rule) => /^(%[RW]+)?~/.test(rule));
const commands = (rules: string[]) => rules.filter((rule) => /^[+-]/.test(rule));

describe('consumerAclRules', () => {
  test('read-only access to the granted token keys, the announcements channel, and no stream without refresh', () => {
    const rules = consumerAclRules({ clientIds: ['orders-api', 'billing-api'], refresh: false, prefix: 'oauth:' });
    expect(rules.slice(0, 2)).toEqual(['resetchannels', '-@all']);
    expect(keyPatterns(rules)).toEqual(['%R~oauth:token:orders-api', '%R~oauth:token:billing-api']);
    expect(rules.filter((rule) => rule.startsWith('&'))).toEqual(['&oauth:token-updated']);
    expect(commands(rules)).toEqual(expect.arrayContaining(['+hget', '+hmget', '+hgetall', '+subscribe']));
    expect(commands(rules)).not.toContain('+xadd');
  });

  test('with refresh: XADD on the refresh-requests stream, write-only', () => {
    const rules = consumerAclRules({ clientIds: ['orders-api'], refresh: true, prefix: 'oauth:' });
    expect(commands(rules)).toContain('+xadd');
    expect(keyPatterns(rules)).toEqual(['%R~oauth:token:orders-api', '%W~oauth:refresh-requests']);
  });

  test('no command that writes, deletes, lists or scripts, and nothing on all keys or channels', () => {
    const rules = consumerAclRules({ clientIds: ['a'], refresh: true, prefix: 'oauth:' });
    for (const risky of [
      '+@all',
      '+hset',
      '+del',
      '+scan',
      '+keys',
      '+eval',
      '+evalsha',
      '+psubscribe',
      '+xread',
      '+xrange',
      '+acl',
      '+config',
    ])
      expect(rules).not.toContain(risky);
    expect(rules.filter((rule) => /^(allkeys|allchannels|~\*|&\*)$/.test(rule))).toEqual([]);
  });

  test.each([
    ['*', '%R~oauth:token:\\*'],
    ['a?', '%R~oauth:token:a\\?'],
    ['[ab]', '%R~oauth:token:\\[ab\\]'],
    ['back\\slash', '%R~oauth:token:back\\\\slash'],
  ])('glob characters of client ID %s match that ID only: %s', (clientId, pattern) => {
    expect(keyPatterns(consumerAclRules({ clientIds: [clientId], refresh: false, prefix: 'oauth:' }))).toEqual([pattern]);
  });

  test("the prefix's glob characters are escaped too", () => {
    const rules = consumerAclRules({ clientIds: ['a'], refresh: true, prefix: 'team*' });
    expect(keyPatterns(rules)).toEqual(['%R~team\\*token:a', '%W~team\\*refresh-requests']);
    expect(rules).toContain('&team\\*token-updated');
  });

  test('a client ID granted twice appears once', () => {
    expect(keyPatterns(consumerAclRules({ clientIds: ['a', 'a'], refresh: false, prefix: 'oauth:' }))).toEqual(['%R~oauth:token:a']);
  });

  test.each([
    [['orders api'], /client ID "orders api" is invalid: 1–200 printable ASCII/],
    [['ok', 'tab\there'], /client ID "tab\\there" is invalid/],
    [['é'], /client ID "é" is invalid/],
    [['x'.repeat(201)], /client ID "x{201}" is invalid/],
    [[], /no client IDs/],
  ])('rejects %j, naming it', (clientIds, message) => {
    const build = () => consumerAclRules({ clientIds, refresh: false, prefix: 'oauth:' });
    expect(build).toThrow(AclRuleError);
    expect(build).toThrow(message);
  });

  test('rejects a prefix with whitespace, which a users.acl line cannot hold', () => {
    expect(() => consumerAclRules({ clientIds: ['a'], refresh: false, prefix: 'my prefix:' })).toThrow(/TOKEN_KEY_PREFIX "my prefix:"/);
  });
});

describe('workerAclRules', () => {
  test('read and write on its own key families only, and the announcements channel', () => {
    const rules = workerAclRules('oauth:');
    expect(keyPatterns(rules)).toEqual([
      '~oauth:token:*',
      '~oauth:breaker:*',
      '~oauth:rate:*',
      '~oauth:login-budget:*',
      '~oauth:login-proof:*',
      '~oauth:listing-lease:*',
      '~oauth:generations',
      '~oauth:refresh-requests',
    ]);
    expect(rules.filter((rule) => rule.startsWith('&'))).toEqual(['&oauth:token-updated']);
    expect(rules).not.toContain('+@all');
    expect(rules).not.toContain('+acl');
  });

  test('every command is listed once, each with the code that runs it', () => {
    const listed = workerCommandsByPurpose().flatMap(({ commands }) => commands);
    expect(commands(workerAclRules('oauth:'))).toEqual(['-@all', ...new Set(listed)]);
    for (const { by } of workerCommandsByPurpose()) expect(by).not.toBe('');
  });

  test("the prefix's glob characters are escaped", () => {
    expect(keyPatterns(workerAclRules('a[1]:'))[0]).toBe('~a\\[1\\]:token:*');
  });
});

describe('users and passwords', () => {
  test('the password hash is the SHA-256 hex Redis stores, and the password appears nowhere', () => {
    const hash = aclPasswordHash('s3cret é');
    expect(hash).toBe(`#${createHash('sha256').update('s3cret é').digest('hex')}`);
    const rules = consumerAclRules({ clientIds: ['a'], refresh: false, prefix: 'oauth:' });
    expect(aclFileLine('orders-api', hash, rules)).toBe(`user orders-api on ${hash} ${rules.join(' ')}`);
    expect(aclSetUserArguments('orders-api', hash, rules)).toEqual(['orders-api', 'reset', 'on', hash, ...rules]);
    expect(aclFileLine('orders-api', hash, rules)).not.toContain('s3cret');
  });

  test.each(['bad name', 'with~tilde', 'star*', '', '-leading-dash', 'x'.repeat(65), 'quote"'])(
    'rejects the user name %j, naming it',
    (user) => {
      expect(() => aclFileLine(user, '#00', [])).toThrow(AclRuleError);
      expect(() => aclSetUserArguments(user, '#00', [])).toThrow(`user name ${JSON.stringify(user)} is invalid`);
    },
  );

  test('refuses the default user, which every connection without a user name is', () => {
    expect(() => aclSetUserArguments('default', '#00', [])).toThrow(/"default" is reserved/);
  });

  test('accepts service-like names', () => {
    for (const user of ['orders-api', 'svc.billing', 'team_a@prod', 'W0rker']) expect(() => aclFileLine(user, '#00', [])).not.toThrow();
  });
});
