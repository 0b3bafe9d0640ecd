import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { createRateLimiter } from '../../src/auth/rate-limit.js';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

test('hits within the window are counted and reach the limit', () => {
  const c = clock();
  const rl = createRateLimiter({ limit: 3, windowMs: 1000, now: c.now });
  assert.equal(rl.hit('a'), 1);
  assert.equal(rl.hit('a'), 2);
  assert.equal(rl.limited('a'), false);
  assert.equal(rl.hit('a'), 3);
  assert.equal(rl.limited('a'), true);
  assert.equal(rl.count('b'), 0, 'keys are independent');
});

test('the window slides: each hit leaves it windowMs after it happened', () => {
  const c = clock();
  const rl = createRateLimiter({ limit: 10, windowMs: 1000, now: c.now });
  rl.hit('k');
  c.advance(400);
  rl.hit('k');
  c.advance(599);
  assert.equal(rl.count('k'), 2);
  c.advance(1); // the first hit is now exactly windowMs old
  assert.equal(rl.count('k'), 1);
  c.advance(400);
  assert.equal(rl.count('k'), 0);
  assert.equal(rl.size, 0, 'an empty key is forgotten');
});

test('retryAfter says when the limit is no longer reached', () => {
  const c = clock();
  const rl = createRateLimiter({ limit: 2, windowMs: 1000, now: c.now });
  rl.hit('k');
  c.advance(300);
  assert.equal(rl.retryAfter('k'), 0);
  rl.hit('k');
  assert.equal(rl.retryAfter('k'), 700);
  c.advance(700);
  assert.equal(rl.limited('k'), false);
});

test('a key hit far past its limit keeps only limit timestamps and stays limited for the window', () => {
  const c = clock();
  const rl = createRateLimiter({ limit: 5, windowMs: 1000, now: c.now });
  for (let i = 0; i < 1000; i++) {
    rl.hit('flood');
    c.advance(0.5);
  }
  assert.equal(rl.count('flood'), 5);
  assert.equal(rl.limited('flood'), true);
  // The newest five hits happened 2.5 .. 0.5 ms before the loop ended.
  c.advance(997);
  assert.equal(rl.limited('flood'), true, 'the newest hits are still in the window');
  c.advance(3);
  assert.equal(rl.count('flood'), 0);
});

test('reset forgets a key', () => {
  const rl = createRateLimiter({ limit: 2, windowMs: 1000 });
  rl.hit('k');
  rl.hit('k');
  rl.reset('k');
  assert.equal(rl.count('k'), 0);
  assert.equal(rl.limited('k'), false);
});

test('memory is bounded: past maxKeys the least recently hit key is dropped', () => {
  const c = clock();
  const rl = createRateLimiter({ limit: 5, windowMs: 60_000, now: c.now, maxKeys: 3 });
  rl.hit('a');
  rl.hit('b');
  rl.hit('c');
  rl.hit('a'); // a is now the most recent
  rl.hit('d'); // evicts b
  assert.equal(rl.size, 3);
  assert.equal(rl.count('b'), 0);
  assert.equal(rl.count('a'), 2);
  assert.equal(rl.count('c'), 1);
  assert.equal(rl.count('d'), 1);
  for (let i = 0; i < 10_000; i++) rl.hit(`spray-${i}`);
  assert.equal(rl.size, 3);
});

test('the default cap is 100,000 keys', () => {
  const rl = createRateLimiter({ limit: 1, windowMs: 60_000 });
  for (let i = 0; i < 100_050; i++) rl.hit(`k${i}`);
  assert.equal(rl.size, 100_000);
  assert.equal(rl.count('k0'), 0);
  assert.equal(rl.count('k100049'), 1);
});

test('nonsensical limits are refused at construction', () => {
  assert.throws(() => createRateLimiter({ limit: 0, windowMs: 1000 }), RangeError);
  assert.throws(() => createRateLimiter({ limit: 1.5, windowMs: 1000 }), RangeError);
  assert.throws(() => createRateLimiter({ limit: 1, windowMs: 0 }), RangeError);
});
