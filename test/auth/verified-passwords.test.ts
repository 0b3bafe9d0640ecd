import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { VerifiedPasswords } from '../../src/auth/verified-passwords.js';

test('entries are per account, stored hash and exact password, and expire', () => {
  let t = 0;
  const v = new VerifiedPasswords({ ttlMs: 1000, now: () => t });
  v.add(1, '$scrypt$a', 'secret');
  assert.equal(v.has(1, '$scrypt$a', 'secret'), true);
  assert.equal(v.has(2, '$scrypt$a', 'secret'), false);
  assert.equal(v.has(1, '$scrypt$b', 'secret'), false);
  assert.equal(v.has(1, '$scrypt$a', 'Secret'), false);
  assert.equal(v.has(1, '$scrypt$a', 'secret\0'), false);
  // The separator cannot be forged by moving bytes between the fields.
  v.add(1, 'x', 'y\0z');
  assert.equal(v.has(1, 'x\0y', 'z'), false);
  t = 999;
  assert.equal(v.has(1, '$scrypt$a', 'secret'), true);
  t = 1000;
  assert.equal(v.has(1, '$scrypt$a', 'secret'), false);
});

test('the cache is bounded, oldest first out', () => {
  const v = new VerifiedPasswords({ ttlMs: 60_000, maxEntries: 3 });
  for (let i = 0; i < 5; i++) v.add(i, 'h', 'p');
  assert.equal(v.size, 3);
  assert.equal(v.has(0, 'h', 'p'), false);
  assert.equal(v.has(1, 'h', 'p'), false);
  assert.equal(v.has(4, 'h', 'p'), true);
  // Re-verifying moves an entry to the young end.
  v.add(2, 'h', 'p');
  v.add(5, 'h', 'p');
  assert.equal(v.has(2, 'h', 'p'), true);
  assert.equal(v.has(3, 'h', 'p'), false);
});

test('a TTL of 0 caches nothing', () => {
  const v = new VerifiedPasswords({ ttlMs: 0 });
  v.add(1, 'h', 'p');
  assert.equal(v.has(1, 'h', 'p'), false);
  assert.equal(v.size, 0);
});
