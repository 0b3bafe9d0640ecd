/**
 * The RCPT answers an SMTP worker keeps (src/smtp/worker/recipient-cache.ts): only an answer that
 * depends on the address alone, for at most its time, bounded; refusals and answers that read a
 * quota always go to the owner.
 */
import { test } from 'node:test';
import { strict as assert } from 'node:assert';
import { asAccountId } from '../../src/lib/brand.js';
import type { RecipientAnswer } from '../../src/delivery/local.js';
import { RecipientCache } from '../../src/smtp/worker/recipient-cache.js';

function owner(answers: Record<string, RecipientAnswer>) {
  const asked: string[] = [];
  const ask = async (domain: string, address: string, size: number | null): Promise<RecipientAnswer> => {
    asked.push(`${address} ${size}`);
    const a = answers[address];
    if (a === undefined) throw new Error(`no answer for ${address}`);
    return a;
  };
  return { asked, ask };
}

const OK: RecipientAnswer = { kind: 'ok', accounts: [asAccountId(1)], forwards: [], quotaChecked: false };

test('an ok without quota is kept for its time, counted from the question, then asked again', async () => {
  let now = 1000;
  const o = owner({ 'bob@example.com': OK });
  const cache = new RecipientCache(o.ask, { ttlMs: 1000, now: () => now });
  assert.deepEqual(await cache.lookup('example.com', 'bob@example.com', 100), OK);
  now += 999;
  assert.deepEqual(await cache.lookup('example.com', 'bob@example.com', 5000), OK);
  assert.deepEqual(o.asked, ['bob@example.com 100']);
  assert.deepEqual(cache.stats, { hits: 1, asked: 1 });
  now += 1;
  await cache.lookup('example.com', 'bob@example.com', 100);
  assert.equal(o.asked.length, 2);
  // Another spelling is another question.
  o.asked.length = 0;
  await assert.rejects(cache.lookup('example.com', 'Bob@example.com', 100), /no answer/);
  assert.deepEqual(o.asked, ['Bob@example.com 100']);
});

test('refusals, answers that read a quota and failures are never kept', async () => {
  const o = owner({
    'quota@example.com': { kind: 'ok', accounts: [asAccountId(2)], forwards: [], quotaChecked: true },
    'nobody@example.com': { kind: 'unknown' },
    'off@example.com': { kind: 'disabled' },
    'full@example.com': { kind: 'over-quota' },
    'x@elsewhere.example': { kind: 'not-local' },
  });
  const cache = new RecipientCache(o.ask, { ttlMs: 60_000 });
  for (const address of ['quota@example.com', 'nobody@example.com', 'off@example.com', 'full@example.com', 'x@elsewhere.example', 'boom@example.com']) {
    for (let i = 0; i < 2; i++) await cache.lookup(address.split('@')[1]!, address, 10).catch(() => null);
  }
  assert.equal(o.asked.length, 12);
  assert.equal(cache.stats.hits, 0);
});

test('bounded: past maxEntries the least recently used answer is dropped', async () => {
  const o = owner({ 'a@example.com': OK, 'b@example.com': OK, 'c@example.com': OK });
  const cache = new RecipientCache(o.ask, { ttlMs: 60_000, maxEntries: 2 });
  await cache.lookup('example.com', 'a@example.com', null);
  await cache.lookup('example.com', 'b@example.com', null);
  await cache.lookup('example.com', 'a@example.com', null); // a is now the most recent
  await cache.lookup('example.com', 'c@example.com', null); // drops b
  await cache.lookup('example.com', 'a@example.com', null);
  await cache.lookup('example.com', 'b@example.com', null);
  assert.deepEqual(o.asked, ['a@example.com null', 'b@example.com null', 'c@example.com null', 'b@example.com null']);
});
