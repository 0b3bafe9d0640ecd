import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { cpuTime } from './check.js';
import { MAX_ADDRESSES, decodeAddressList, parseAddressList, parseMailbox } from '../../src/mail/address.js';

test('parseAddressList gives ENVELOPE addresses with group markers (RFC 9051 §7.5.2)', () => {
  assert.deepEqual(parseAddressList('"Doe, J" <j.doe@Example.com>, undisclosed-recipients:;'), [
    { name: 'Doe, J', adl: null, mailbox: 'j.doe', host: 'Example.com' },
    { name: null, adl: null, mailbox: 'undisclosed-recipients', host: null },
    { name: null, adl: null, mailbox: null, host: null },
  ]);
  assert.deepEqual(parseAddressList('=?utf-8?q?J=C3=B6?= <j@x.org>')[0]?.name, '=?utf-8?q?J=C3=B6?=');
  assert.deepEqual(parseAddressList('a@b (comment)'), [{ name: 'comment', adl: null, mailbox: 'a', host: 'b' }]);
  assert.deepEqual(parseAddressList('<@relay.example:user@example.com>'), [
    { name: null, adl: '@relay.example', mailbox: 'user', host: 'example.com' },
  ]);
  assert.deepEqual(parseAddressList('nodomain'), [{ name: null, adl: null, mailbox: 'nodomain', host: '' }]);
  assert.deepEqual(parseAddressList(''), []);
});

test('decodeAddressList flattens groups and decodes display names', () => {
  assert.deepEqual(decodeAddressList('=?utf-8?q?J=C3=B6rg?= <j@x.org>, Team: a@x.org, "B" <b@x.org>;'), [
    { name: 'Jörg', address: 'j@x.org' },
    { name: '', address: 'a@x.org' },
    { name: 'B', address: 'b@x.org' },
  ]);
});

test('parseMailbox normalises the domain and keeps the local part (RFC 5321 §2.4)', () => {
  assert.deepEqual(parseMailbox('Local@Domain.'), { localPart: 'Local', domain: 'domain', address: 'Local@domain' });
  assert.deepEqual(parseMailbox('<User@EXAMPLE.org>')?.address, 'User@example.org');
  assert.deepEqual(parseMailbox('<@a.example,@b.example:u@c.example>')?.address, 'u@c.example');
  assert.deepEqual(parseMailbox('"john"@example.com')?.localPart, 'john');
  assert.deepEqual(parseMailbox('"john doe"@example.com')?.localPart, '"john doe"');
  assert.deepEqual(parseMailbox('"a\\"b"@example.com')?.localPart, '"a\\"b"');
  assert.deepEqual(parseMailbox('u@[192.0.2.1]')?.domain, '[192.0.2.1]');
  assert.deepEqual(parseMailbox('ü@bücher.example')?.domain, 'xn--bcher-kva.example');
  for (const bad of ['', 'a', '@b.c', 'a@', 'a..b@c.d', '.a@b.c', 'a@b..c', 'a@-b.c', 'a b@c.d', 'a@b_c.d', `${'x'.repeat(65)}@a.b`, '"unterminated@a.b']) {
    assert.equal(parseMailbox(bad), null, bad);
  }
});

test('a 1 MB address header is parsed in bounded time', () => {
  const big = Array.from({ length: 40_000 }, (_, i) => `user${i}@example.com`).join(', ');
  const { value: list, ms } = cpuTime(() => parseAddressList(big));
  assert.ok(list.length > 1000);
  assert.ok(ms < 3000, `took ${ms} ms`);
});

test('a header of tiny addresses is cut at MAX_ADDRESSES', () => {
  const list = parseAddressList('a@b,'.repeat(60_000));
  assert.equal(list.length, MAX_ADDRESSES);
});

test('an empty group holding only a comment has no member; comments inside an angle address are dropped', () => {
  assert.deepEqual(parseAddressList('group:;, group2: (foo) ;'), [
    { name: null, adl: null, mailbox: 'group', host: null },
    { name: null, adl: null, mailbox: null, host: null },
    { name: null, adl: null, mailbox: 'group2', host: null },
    { name: null, adl: null, mailbox: null, host: null },
  ]);
  assert.deepEqual(parseAddressList('<user-from (comment)@ (comment) domain.org>'), [
    { name: null, adl: null, mailbox: 'user-from', host: 'domain.org' },
  ]);
  assert.deepEqual(parseAddressList('user@domain (Real Name)'), [{ name: 'Real Name', adl: null, mailbox: 'user', host: 'domain' }]);
  assert.deepEqual(parseAddressList('(just a comment)'), []);
});
